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
//! | `union360_http_requests_total` | counter | `route`, `method`, `status` |
//! | `union360_http_request_duration_seconds` | histogram | `route`, `method`, `status` |
//! | `union360_graphql_operations_total` | counter | `operation` (name), `type`, `outcome` |
//! | `union360_graphql_operation_duration_seconds` | histogram | `type`, `outcome` |
//! | `union360_graphql_errors_total` | counter | `code` (`extensions.code`) |
//! | `union360_db_pool_connections` | gauge | `state` (`idle`, `in_use`) |
//! | `union360_db_pool_max_connections` | gauge | the pool's size limit |
//! | `process_*` | various | CPU, memory, open files, threads, start time |
//!
//! Label values are bounded: routes are the service's own, operation names
//! are the first [`MAX_OPERATION_NAMES`] distinct ones seen of at most
//! [`MAX_OPERATION_NAME_LEN`] bytes (others are counted as `(other)`), codes
//! are [`ErrorCode::ALL`].
//!
//! Every family has its HELP text, and the failure counters are present at
//! zero from the start, so an alert on their rate works before the first
//! failure.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_process::Collector;

use crate::error::ErrorCode;

/// How many distinct GraphQL operation names get a series of their own.
pub const MAX_OPERATION_NAMES: usize = 100;
/// The longest operation name that gets a series of its own.
pub const MAX_OPERATION_NAME_LEN: usize = 64;

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
    describe_counter!(
        "union360_http_requests_total",
        "HTTP requests answered, by route, method and status."
    );
    describe_histogram!(
        "union360_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request (until its headers), by route, method and status."
    );
    describe_counter!(
        "union360_graphql_operations_total",
        "GraphQL operations, by operation name, type (query, mutation, none when the document did not parse) and outcome (ok, partial: data with field errors, error: no data)."
    );
    describe_histogram!(
        "union360_graphql_operation_duration_seconds",
        Unit::Seconds,
        "Time to run a GraphQL operation, by type and outcome."
    );
    describe_counter!(
        "union360_graphql_errors_total",
        "Errors sent to clients, by extensions.code."
    );
    for code in ErrorCode::ALL {
        metrics::counter!("union360_graphql_errors_total", "code" => code.as_str()).absolute(0);
    }
    describe_counter!(
        "union360_callback_pushes_total",
        "WeChat pushes to the callback, by outcome: applied, duplicate (a retry of one applied before), superseded (older than what is stored), ignored (no account change), refused (bad input), failed (not stored; WeChat retries)."
    );
    for outcome in [
        "applied",
        "duplicate",
        "superseded",
        "ignored",
        "refused",
        "failed",
    ] {
        metrics::counter!("union360_callback_pushes_total", "outcome" => outcome).absolute(0);
    }
    describe_counter!(
        "union360_callback_refresh_dropped_total",
        "Pushed accounts not queued for a profile refresh because the queue was full (refreshed when next read)."
    );
    metrics::counter!("union360_callback_refresh_dropped_total").absolute(0);
    describe_gauge!(
        "union360_subscriptions_active",
        "GraphQL subscriptions running over /graphql/ws."
    );
    metrics::gauge!("union360_subscriptions_active").set(0.0);
    describe_counter!(
        "union360_subscribers_dropped_total",
        "WebSocket subscribers disconnected, by reason: slow (fell behind the events, or their stream was interrupted), not_reading (a message waited past the send timeout)."
    );
    for reason in ["slow", "not_reading"] {
        metrics::counter!("union360_subscribers_dropped_total", "reason" => reason).absolute(0);
    }
    describe_counter!(
        "union360_events_dropped_total",
        "Batches of account events this instance could not publish (PostgreSQL: the publishing queue was full or NOTIFY failed)."
    );
    metrics::counter!("union360_events_dropped_total").absolute(0);
    describe_gauge!(
        "union360_db_pool_connections",
        "Database connections held by the pool, idle or in use."
    );
    describe_gauge!(
        "union360_db_pool_max_connections",
        "The most connections the pool may hold."
    );
    process().describe();
}

fn process() -> &'static Collector {
    static PROCESS: OnceLock<Collector> = OnceLock::new();
    PROCESS.get_or_init(Collector::default)
}

/// Counts an HTTP request to `route` answered with `status` after `elapsed`.
pub fn http_request(route: &'static str, method: &'static str, status: u16, elapsed: Duration) {
    let status = status.to_string();
    metrics::counter!(
        "union360_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => status.clone()
    )
    .increment(1);
    metrics::histogram!(
        "union360_http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => status
    )
    .record(elapsed.as_secs_f64());
}

/// How a GraphQL request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Data and no errors.
    Ok,
    /// Data with field errors.
    Partial,
    /// No data: a request error, or execution stopped.
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Partial => "partial",
            Self::Error => "error",
        }
    }
}

/// Counts a GraphQL operation: its name (`None`: anonymous), its type
/// (`None`: the document did not parse or name an operation), and how it ended.
pub fn graphql_operation(
    name: Option<&str>,
    kind: Option<&'static str>,
    outcome: Outcome,
    elapsed: Duration,
) {
    let kind = kind.unwrap_or("none");
    metrics::counter!(
        "union360_graphql_operations_total",
        "operation" => operation_label(name),
        "type" => kind,
        "outcome" => outcome.as_str()
    )
    .increment(1);
    metrics::histogram!(
        "union360_graphql_operation_duration_seconds",
        "type" => kind,
        "outcome" => outcome.as_str()
    )
    .record(elapsed.as_secs_f64());
}

/// The label of operation `name`: itself while fewer than
/// [`MAX_OPERATION_NAMES`] distinct names were seen (clients choose names,
/// and every label value is a series held in memory until restart).
fn operation_label(name: Option<&str>) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let Some(name) = name else {
        return "(anonymous)".to_owned();
    };
    if name.len() > MAX_OPERATION_NAME_LEN {
        return "(other)".to_owned();
    }
    let mut seen = SEEN
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if seen.contains(name) {
        return name.to_owned();
    }
    if seen.len() < MAX_OPERATION_NAMES {
        seen.insert(name.to_owned());
        return name.to_owned();
    }
    "(other)".to_owned()
}

/// Counts errors sent to a client, by code (an unknown code as `INTERNAL`).
pub fn graphql_errors<'a>(codes: impl IntoIterator<Item = Option<&'a str>>) {
    for code in codes {
        let code = ErrorCode::ALL
            .into_iter()
            .map(ErrorCode::as_str)
            .find(|known| Some(*known) == code)
            .unwrap_or(ErrorCode::Internal.as_str());
        metrics::counter!("union360_graphql_errors_total", "code" => code).increment(1);
    }
}

/// Sets the database pool's gauges.
pub fn db_pool(idle: usize, size: u32, max: u32) {
    let size = size as f64;
    let idle = idle as f64;
    metrics::gauge!("union360_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("union360_db_pool_connections", "state" => "in_use")
        .set((size - idle).max(0.0));
    metrics::gauge!("union360_db_pool_max_connections").set(max as f64);
}

/// The metrics in the Prometheus text format, the process's read now.
pub fn render() -> String {
    install()
        .map(|handle| {
            process().collect();
            handle.render()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_bounded() {
        let labels: Vec<String> = (0..MAX_OPERATION_NAMES + 50)
            .map(|i| operation_label(Some(&format!("Op{i}"))))
            .collect();
        assert_eq!(labels[0], "Op0");
        assert_eq!(labels.last().map(String::as_str), Some("(other)"));
        // A name seen before keeps its series.
        assert_eq!(operation_label(Some("Op0")), "Op0");
        assert_eq!(operation_label(None), "(anonymous)");
        assert_eq!(operation_label(Some(&"Q".repeat(65))), "(other)");
    }
}
