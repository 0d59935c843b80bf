//! Prometheus metrics, served at `GET /metrics`.
//!
//! Counters and histograms are recorded with the `metrics` facade where the
//! work happens and rendered in the Prometheus text format on request.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `union360_build_info` | gauge (1) | `version` |
//! | `union360_refresh_requested_total` | counter | accounts a request wanted refreshed |
//! | `union360_refresh_coalesced_total` | counter | accounts that joined a refresh in flight |
//! | `union360_refresh_fetched_total` | counter | accounts fetched from WeChat and written |
//! | `union360_refresh_failed_total` | counter | `class` (the WeChat error class) |
//! | `union360_refresh_served_stale_total` | counter | accounts served stale (budget missed) |
//! | `union360_refresh_round_incomplete_total` | counter | refresh rounds cut short |
//! | `union360_wechat_request_duration_seconds` | histogram | `api`, `outcome` (`ok` or an error class) |
//! | `union360_wechat_token_fetches_total` | counter | `api` |
//! | `union360_sql_statements_total` | counter | SQL statements run since start |
//!
//! Every family has its HELP text, and the failure counters are present at
//! zero from the start, so an alert on their rate works before the first
//! failure.

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
                .inspect(|_| describe())
        })
        .as_ref()
}

/// HELP texts, and the series an operator alerts on, at zero.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "union360_build_info",
        "The running union360: always 1, its version as a label."
    );
    metrics::gauge!("union360_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_counter!(
        "union360_refresh_requested_total",
        "Accounts that reads wanted refreshed from WeChat."
    );
    describe_counter!(
        "union360_refresh_coalesced_total",
        "Accounts whose refresh joined one already in flight."
    );
    describe_counter!(
        "union360_refresh_fetched_total",
        "Accounts fetched from WeChat and written."
    );
    describe_counter!(
        "union360_refresh_failed_total",
        "Accounts whose refresh failed, by WeChat error class."
    );
    for class in crate::wechat::error::ErrorClass::ALL {
        metrics::counter!("union360_refresh_failed_total", "class" => class.as_str()).absolute(0);
    }
    describe_counter!(
        "union360_refresh_served_stale_total",
        "Accounts served from the store, stale, because their refresh missed the read's budget."
    );
    metrics::counter!("union360_refresh_served_stale_total").absolute(0);
    describe_counter!(
        "union360_refresh_round_incomplete_total",
        "Refresh rounds of a request cut short by its budget."
    );
    metrics::counter!("union360_refresh_round_incomplete_total").absolute(0);
    describe_histogram!(
        "union360_wechat_request_duration_seconds",
        Unit::Seconds,
        "WeChat API calls and their duration, by API and outcome (ok or the error class)."
    );
    describe_counter!(
        "union360_wechat_token_fetches_total",
        "Access tokens fetched from WeChat, by API."
    );
    describe_counter!(
        "union360_sql_statements_total",
        "SQL statements run since the process started."
    );
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}
