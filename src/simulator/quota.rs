//! Daily API quotas per app and endpoint, and `POST /cgi-bin/openapi/quota/get`.
//!
//! Counters start from zero when the simulated clock passes midnight Beijing
//! time (or on `POST /_sim/reset`). A call past the limit gets 45009, the
//! signal a well-behaved client must stop on rather than hot-loop.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::clock::beijing_day;
use super::{Simulator, token};

/// The daily limits WeChat applies per app (dashboard figures).
const LIMITS: &[(&str, u64)] = &[
    ("/cgi-bin/token", 2_000),
    ("/cgi-bin/stable_token", 500_000),
    ("/cgi-bin/user/info", 500_000),
    ("/cgi-bin/user/info/batchget", 500_000),
    ("/cgi-bin/user/get", 500),
];

/// The daily limit of an endpoint, and its canonical path.
pub(crate) fn limit(path: &str) -> Option<(&'static str, u64)> {
    LIMITS.iter().copied().find(|(p, _)| *p == path)
}

/// Calls used today per (app, endpoint).
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    day: u64,
    used: HashMap<(usize, &'static str), u64>,
}

impl Quotas {
    fn roll(&mut self, now: u64) {
        let day = beijing_day(now);
        if day != self.day {
            self.day = day;
            self.used.clear();
        }
    }

    /// Counts one call, or 45009 when the day's quota is spent.
    pub(crate) fn take(&mut self, app: usize, path: &str, now: u64) -> Result<(), i64> {
        self.roll(now);
        let Some((path, limit)) = limit(path) else {
            return Ok(());
        };
        let used = self.used.entry((app, path)).or_default();
        if *used >= limit {
            return Err(45009);
        }
        *used += 1;
        Ok(())
    }

    /// `(daily_limit, used)` of an endpoint, or `None` for a path without a quota.
    pub(crate) fn get(&mut self, app: usize, path: &str, now: u64) -> Option<(u64, u64)> {
        self.roll(now);
        let (path, limit) = limit(path)?;
        Some((limit, self.used.get(&(app, path)).copied().unwrap_or(0)))
    }

    /// Spends the whole day's quota of an endpoint; false for a path without one.
    pub(crate) fn exhaust(&mut self, app: usize, path: &str, now: u64) -> bool {
        self.roll(now);
        match limit(path) {
            Some((path, limit)) => {
                self.used.insert((app, path), limit);
                true
            }
            None => false,
        }
    }

    /// Forgets every counter (a new day for all apps).
    pub(crate) fn reset(&mut self) {
        self.used.clear();
    }
}

/// The `access_token` of a POST endpoint's query.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenParam {
    /// The caller's token.
    pub access_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QuotaBody {
    cgi_path: Option<String>,
}

/// `POST /cgi-bin/openapi/quota/get`.
pub(crate) async fn quota_get(
    State(sim): State<Simulator>,
    Query(q): Query<TokenParam>,
    body: Bytes,
) -> Response {
    let path = "/cgi-bin/openapi/quota/get";
    token::serve_authorized(
        &sim,
        q.access_token.as_deref(),
        None,
        path,
        |st, app, now| {
            let body: QuotaBody = serde_json::from_slice(&body).map_err(|_| 47001)?;
            let path = body.cgi_path.ok_or(47001)?;
            let (daily_limit, used) = st.quotas.get(app, &path, now).ok_or(76021)?;
            Ok(serde_json::json!({
                "errcode": 0,
                "errmsg": "ok",
                "quota": {
                    "daily_limit": daily_limit,
                    "used": used,
                    "remain": daily_limit.saturating_sub(used),
                }
            }))
        },
    )
    .await
}
