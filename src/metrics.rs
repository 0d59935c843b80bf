//! Prometheus metrics, served at `GET /metrics`.
//!
//! Counters and histograms are recorded with the `metrics` facade where the
//! work happens and rendered in the Prometheus text format on request.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `union360_refresh_requested_total` | counter | accounts a request wanted refreshed |
//! | `union360_refresh_coalesced_total` | counter | accounts that joined a refresh in flight |
//! | `union360_refresh_fetched_total` | counter | accounts fetched from WeChat and written |
//! | `union360_refresh_failed_total` | counter | `class` (the WeChat error class) |
//! | `union360_refresh_served_stale_total` | counter | accounts served stale (budget missed) |
//! | `union360_wechat_request_duration_seconds` | histogram | `api`, `outcome` (`ok` or an error class) |
//! | `union360_wechat_token_fetches_total` | counter | `api` |
//! | `union360_sql_statements` | gauge | SQL statements run since start |

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .ok()
                .and_then(|builder| builder.install_recorder().ok())
        })
        .as_ref()
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}
