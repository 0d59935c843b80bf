//! Access tokens: `/cgi-bin/token`, `/cgi-bin/stable_token` and the checks
//! every data endpoint makes.
//!
//! The two issuers are independent, as on WeChat. `/cgi-bin/token` mints a
//! new token on every call and gives the previous one five more minutes
//! before it reads "not latest" (40001): the multi-instance race. The stable
//! token is shared: every caller gets the same one with its remaining
//! lifetime until fewer than 300 s are left, when a successor is minted while
//! the old one lives out its time. `force_refresh` replaces it at once, at
//! most 20 times a day and 30 s apart.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use rand::Rng;
use serde::Deserialize;

use super::clock::beijing_day;
use super::codec::ALPHABET;
use super::world::SimKind;
use super::{SimState, Simulator, faults, wire};

/// Token lifetime in seconds.
pub(crate) const TOKEN_TTL: u64 = 7200;
/// How long a superseded `/cgi-bin/token` token keeps working.
const GRACE: u64 = 300;
/// A stable token is renewed when fewer seconds than this remain.
const STABLE_OVERLAP: u64 = 300;
/// Forced stable-token refreshes allowed per app and day.
const FORCE_PER_DAY: u32 = 20;
/// Minimum seconds between forced refreshes.
const FORCE_SPACING: u64 = 30;

/// Every token issued, and the current one of each issuer per app.
#[derive(Debug, Default)]
pub(crate) struct TokenBook {
    records: HashMap<String, Record>,
    latest_plain: HashMap<usize, String>,
    stable: HashMap<usize, String>,
    force: HashMap<usize, Force>,
}

#[derive(Debug)]
struct Record {
    app: usize,
    expires_at: u64,
    /// When a superseded token stops working.
    dies_at: Option<u64>,
    revoked: bool,
}

#[derive(Debug, Default)]
struct Force {
    day: u64,
    used: u32,
    last: Option<u64>,
}

impl TokenBook {
    /// The app a token belongs to, valid or not.
    pub(crate) fn app_of(&self, token: &str) -> Option<usize> {
        self.records.get(token).map(|r| r.app)
    }

    /// The app of a valid token, or the errcode WeChat gives for it.
    pub(crate) fn validate(&self, token: &str, now: u64) -> Result<usize, i64> {
        let record = self.records.get(token).ok_or(40014)?;
        if now >= record.expires_at {
            return Err(42001);
        }
        if record.revoked || record.dies_at.is_some_and(|t| now >= t) {
            return Err(40001);
        }
        Ok(record.app)
    }

    /// Invalidates every token (of one app, or of all).
    pub(crate) fn invalidate(&mut self, app: Option<usize>) -> usize {
        let mut n = 0;
        for record in self.records.values_mut() {
            if app.is_none_or(|a| a == record.app) && !record.revoked {
                record.revoked = true;
                n += 1;
            }
        }
        self.stable.retain(|a, _| app.is_some_and(|x| x != *a));
        n
    }

    fn mint(&mut self, app: usize, now: u64, rng: &mut impl Rng) -> String {
        if self.records.len() > 100_000 {
            self.records.retain(|_, r| r.expires_at + 86_400 > now);
        }
        let mut token = format!("{}_", rng.gen_range(70..90));
        token.extend((0..133).map(|_| char::from(ALPHABET[rng.gen_range(0..64)])));
        self.records.insert(
            token.clone(),
            Record {
                app,
                expires_at: now + TOKEN_TTL,
                dies_at: None,
                revoked: false,
            },
        );
        token
    }

    fn issue_plain(&mut self, app: usize, now: u64, rng: &mut impl Rng) -> String {
        let token = self.mint(app, now, rng);
        if let Some(previous) = self.latest_plain.insert(app, token.clone())
            && let Some(record) = self.records.get_mut(&previous)
        {
            let dies = now + GRACE;
            record.dies_at = Some(record.dies_at.map_or(dies, |d| d.min(dies)));
        }
        token
    }

    fn issue_stable(
        &mut self,
        app: usize,
        force: bool,
        now: u64,
        rng: &mut impl Rng,
    ) -> Result<(String, u64), i64> {
        if force {
            let day = beijing_day(now);
            let f = self.force.entry(app).or_default();
            if f.day != day {
                *f = Force {
                    day,
                    ..Force::default()
                };
            }
            if f.used >= FORCE_PER_DAY {
                return Err(45009);
            }
            if f.last.is_some_and(|last| now < last + FORCE_SPACING) {
                return Err(45011);
            }
            f.used += 1;
            f.last = Some(now);
            if let Some(old) = self.stable.remove(&app)
                && let Some(record) = self.records.get_mut(&old)
            {
                record.revoked = true;
            }
        }
        if let Some(current) = self.stable.get(&app)
            && let Some(record) = self.records.get(current)
            && !record.revoked
            && record.expires_at > now + STABLE_OVERLAP
        {
            return Ok((current.clone(), record.expires_at - now));
        }
        let token = self.mint(app, now, rng);
        self.stable.insert(app, token.clone());
        Ok((token, TOKEN_TTL))
    }
}

/// Query of `GET /cgi-bin/token`.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
}

/// Body of `POST /cgi-bin/stable_token`.
#[derive(Debug, Default, Deserialize)]
struct StableBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    force_refresh: Option<bool>,
}

/// Checks appid and secret; the app index or an errcode.
fn credentials(
    st: &SimState,
    grant_type: Option<&str>,
    appid: Option<&str>,
    secret: Option<&str>,
    bad_secret: i64,
) -> Result<usize, i64> {
    let appid = appid.filter(|a| !a.is_empty()).ok_or(41002)?;
    let secret = secret.filter(|s| !s.is_empty()).ok_or(41004)?;
    if grant_type != Some("client_credential") {
        return Err(40002);
    }
    let app = st.world.app_index(appid).ok_or(40013)?;
    if st.world.apps[app].secret != secret {
        return Err(bad_secret);
    }
    Ok(app)
}

/// `GET /cgi-bin/token`: a new token on every call.
pub(crate) async fn token(State(sim): State<Simulator>, Query(q): Query<TokenQuery>) -> Response {
    const PATH: &str = "/cgi-bin/token";
    if let Some(r) = faults::apply(&sim, PATH, q.appid.clone()).await {
        return r;
    }
    let now = sim.now();
    let mut guard = sim.lock();
    let st = &mut *guard;
    let outcome = credentials(
        st,
        q.grant_type.as_deref(),
        q.appid.as_deref(),
        q.secret.as_deref(),
        40001,
    )
    .and_then(|app| st.quotas.take(app, PATH, now).map(|()| app));
    match outcome {
        Ok(app) => {
            let token = st.tokens.issue_plain(app, now, &mut st.rng);
            wire::json(&serde_json::json!({"access_token": token, "expires_in": TOKEN_TTL}))
        }
        Err(code) => wire::error(code),
    }
}

/// `POST /cgi-bin/stable_token`: the shared token.
pub(crate) async fn stable_token(State(sim): State<Simulator>, body: Bytes) -> Response {
    const PATH: &str = "/cgi-bin/stable_token";
    let parsed = if body.is_empty() {
        Err(44002)
    } else {
        serde_json::from_slice::<StableBody>(&body).map_err(|_| 47001)
    };
    let appid = parsed.as_ref().ok().and_then(|b| b.appid.clone());
    if let Some(r) = faults::apply(&sim, PATH, appid).await {
        return r;
    }
    let now = sim.now();
    let mut guard = sim.lock();
    let st = &mut *guard;
    let outcome = parsed.and_then(|b| {
        let app = credentials(
            st,
            b.grant_type.as_deref(),
            b.appid.as_deref(),
            b.secret.as_deref(),
            40125,
        )?;
        st.quotas.take(app, PATH, now)?;
        st.tokens
            .issue_stable(app, b.force_refresh.unwrap_or(false), now, &mut st.rng)
    });
    match outcome {
        Ok((token, expires_in)) => {
            wire::json(&serde_json::json!({"access_token": token, "expires_in": expires_in}))
        }
        Err(code) => wire::error(code),
    }
}

/// The checks of a data endpoint: a valid token of an app of `kind`, within
/// its daily quota. The app index, or the errcode to answer.
pub(crate) fn authorize(
    st: &mut SimState,
    token: Option<&str>,
    kind: Option<SimKind>,
    path: &'static str,
    now: u64,
) -> Result<usize, i64> {
    let token = token.filter(|t| !t.is_empty()).ok_or(41001)?;
    let app = st.tokens.validate(token, now)?;
    if kind.is_some_and(|k| st.world.apps.get(app).map(|a| a.kind) != Some(k)) {
        return Err(48001);
    }
    st.quotas.take(app, path, now)?;
    Ok(app)
}

/// The appid behind a token, for matching faults.
/// Serves one token-authenticated endpoint the way every one of them starts:
/// injected faults first, then the token (and app kind) check and the daily
/// quota, then `answer` under the state lock with the caller's app. An
/// `Err(errcode)` from any step becomes WeChat's error body.
pub(crate) async fn serve_authorized(
    sim: &Simulator,
    token: Option<&str>,
    kind: Option<SimKind>,
    path: &'static str,
    answer: impl FnOnce(&mut SimState, usize, u64) -> Result<serde_json::Value, i64>,
) -> axum::response::Response {
    let appid = appid_of(sim, token);
    if let Some(r) = super::faults::apply(sim, path, appid).await {
        return r;
    }
    let now = sim.now();
    let mut guard = sim.lock();
    let st = &mut *guard;
    match authorize(st, token, kind, path, now).and_then(|app| answer(st, app, now)) {
        Ok(body) => super::wire::json(&body),
        Err(code) => super::wire::error(code),
    }
}

pub(crate) fn appid_of(sim: &Simulator, token: Option<&str>) -> Option<String> {
    let st = sim.lock();
    let app = st.tokens.app_of(token?)?;
    st.world.apps.get(app).map(|a| a.appid.clone())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn plain_tokens_supersede_after_grace() {
        let mut book = TokenBook::default();
        let mut rng = StdRng::seed_from_u64(1);
        let first = book.issue_plain(0, 1000, &mut rng);
        let second = book.issue_plain(0, 1010, &mut rng);
        assert_eq!(book.validate(&first, 1100), Ok(0));
        assert_eq!(book.validate(&first, 1310), Err(40001));
        assert_eq!(book.validate(&second, 1310), Ok(0));
        assert_eq!(book.validate(&second, 1010 + TOKEN_TTL), Err(42001));
        assert_eq!(book.validate("nope", 1000), Err(40014));
    }

    #[test]
    fn stable_tokens_are_shared_and_overlap() {
        let mut book = TokenBook::default();
        let mut rng = StdRng::seed_from_u64(1);
        let (a, ttl) = book.issue_stable(0, false, 0, &mut rng).unwrap_or_default();
        assert_eq!(ttl, TOKEN_TTL);
        let (b, ttl) = book
            .issue_stable(0, false, 100, &mut rng)
            .unwrap_or_default();
        assert_eq!((a.as_str(), ttl), (b.as_str(), TOKEN_TTL - 100));
        let (c, _) = book
            .issue_stable(0, false, 6950, &mut rng)
            .unwrap_or_default();
        assert_ne!(a, c);
        assert_eq!(book.validate(&a, 7000), Ok(0));
        assert_eq!(
            book.issue_stable(0, true, 7000, &mut rng).map(|t| t.1),
            Ok(TOKEN_TTL)
        );
        assert_eq!(book.validate(&c, 7001), Err(40001));
        assert_eq!(book.issue_stable(0, true, 7010, &mut rng), Err(45011));
    }
}
