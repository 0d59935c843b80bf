//! Injected faults and per-endpoint call counters.
//!
//! A fault names an endpoint path and optionally an appid; it can answer an
//! errcode, add latency, or hang until the client gives up, with a
//! probability (`rate`) and for a number of matches (`count`). Faults are
//! tried in the order they were added; the first that matches and fires
//! applies. Counters count every call that reached a WeChat endpoint,
//! failed ones included, so tests can assert how many calls a client made.

use std::time::Duration;

use axum::extract::MatchedPath;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Simulator, wire};

fn one() -> f64 {
    1.0
}

/// One injected fault (the body of `POST /_sim/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Fault {
    /// The endpoint path, e.g. `/cgi-bin/user/info/batchget`.
    pub path: String,
    /// Only calls of this app (by appid, or the app of the token used).
    #[serde(default)]
    pub appid: Option<String>,
    /// Answer this errcode instead of the real response.
    #[serde(default)]
    pub errcode: Option<i64>,
    /// The chance (0..1) that a matching call is hit.
    #[serde(default = "one")]
    pub rate: f64,
    /// Delay the answer by this many milliseconds.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Never answer (until the client gives up).
    #[serde(default)]
    pub hang: bool,
    /// Hit at most this many calls, then retire.
    #[serde(default)]
    pub count: Option<u64>,
}

/// Applies the first matching fault: sleeps, hangs, or returns the error answer.
/// `None` when the call should proceed normally.
pub(crate) async fn apply(sim: &Simulator, path: &str, appid: Option<String>) -> Option<Response> {
    let fault = {
        let mut guard = sim.lock();
        let st = &mut *guard;
        let mut hit = None;
        for (i, fault) in st.faults.iter_mut().enumerate() {
            let matches = fault.path == path
                && fault
                    .appid
                    .as_ref()
                    .is_none_or(|a| appid.as_ref() == Some(a));
            if !matches || st.rng.r#gen::<f64>() >= fault.rate {
                continue;
            }
            if let Some(n) = fault.count.as_mut() {
                *n = n.saturating_sub(1);
            }
            hit = Some((i, fault.clone()));
            break;
        }
        let (i, fault) = hit?;
        if fault.count == Some(0) {
            st.faults.remove(i);
        }
        fault
    };
    if let Some(ms) = fault.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if fault.hang {
        std::future::pending::<()>().await;
    }
    fault.errcode.map(wire::error)
}

/// Middleware: counts every call of a WeChat endpoint by its path.
pub(crate) async fn count_calls(
    State(sim): State<Simulator>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(path) = req.extensions().get::<MatchedPath>() {
        *sim.lock()
            .calls
            .entry(path.as_str().to_owned())
            .or_default() += 1;
    }
    next.run(req).await
}
