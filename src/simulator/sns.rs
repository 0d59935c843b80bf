//! Sign-in flows: web/app OAuth (`sns/oauth2/access_token`, `sns/userinfo`)
//! and mini-program `sns/jscode2session`.
//!
//! Codes are minted by the control plane (`POST /_sim/codes`) standing in for
//! a user who taps "allow". They are single use (40163 the second time),
//! expire after five minutes (42003), and belong to one app (40029
//! elsewhere). A snapshot-page visit yields a virtual OpenID and UnionID with
//! `is_snapshotuser: 1`. `sns/userinfo` carries the real nickname (raw control
//! characters included) and, for some people, `sex` as a string.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Response;
use base64::Engine as _;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::codec::ALPHABET;
use super::token::TOKEN_TTL;
use super::world::SimKind;
use super::{SimState, Simulator, faults, wire};

/// How long a code lives.
const CODE_TTL: u64 = 300;
/// Mini-program code exchanges allowed per user and minute.
const JSCODE_PER_MINUTE: u32 = 100;

/// Codes, OAuth tokens and the per-minute code counters.
#[derive(Debug, Default)]
pub(crate) struct SnsBook {
    codes: HashMap<String, Code>,
    tokens: HashMap<String, Grant>,
    per_minute: HashMap<(usize, u32), (u64, u32)>,
}

#[derive(Debug, Clone)]
struct Code {
    app: usize,
    person: u32,
    scope: String,
    snapshot: bool,
    issued_at: u64,
    used: bool,
}

#[derive(Debug, Clone)]
struct Grant {
    app: usize,
    person: u32,
    scope: String,
    snapshot: bool,
    expires_at: u64,
}

fn random(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..62)]))
        .collect()
}

/// The scope a sign-in of `kind` gets when none is asked for.
fn default_scope(kind: SimKind) -> &'static str {
    match kind {
        SimKind::OfficialAccount => "snsapi_base",
        SimKind::Website => "snsapi_login",
        SimKind::MobileApp => "snsapi_userinfo",
        SimKind::MiniProgram => "",
    }
}

/// Scopes that reveal the UnionID and allow `sns/userinfo`.
fn is_userinfo_scope(scope: &str) -> bool {
    matches!(scope, "snsapi_userinfo" | "snsapi_login")
}

/// Mints a sign-in code for `person` in `app` (the control plane's `/_sim/codes`).
pub(crate) fn mint_code(
    st: &mut SimState,
    app: usize,
    person: u32,
    scope: Option<String>,
    snapshot: bool,
    now: u64,
) -> String {
    if st.sns.codes.len() > 100_000 {
        st.sns.codes.retain(|_, c| c.issued_at + 86_400 > now);
    }
    let kind = st.world.apps[app].kind;
    let scope = if snapshot {
        "snsapi_base".to_owned()
    } else {
        scope.unwrap_or_else(|| default_scope(kind).to_owned())
    };
    let code = random(&mut st.rng, 32);
    st.sns.codes.insert(
        code.clone(),
        Code {
            app,
            person,
            scope,
            snapshot,
            issued_at: now,
            used: false,
        },
    );
    code
}

/// Looks up an unused, unexpired code of `app`.
fn check_code(st: &SimState, app: usize, code: Option<&str>, now: u64) -> Result<Code, i64> {
    let code = code.filter(|c| !c.is_empty()).ok_or(41008)?;
    let found = st
        .sns
        .codes
        .get(code)
        .filter(|c| c.app == app)
        .ok_or(40029)?;
    if found.used {
        return Err(40163);
    }
    if now >= found.issued_at + CODE_TTL {
        return Err(42003);
    }
    Ok(found.clone())
}

fn app_and_secret(
    st: &SimState,
    appid: Option<&str>,
    secret: Option<&str>,
    grant_type: Option<&str>,
    allowed: &[SimKind],
) -> Result<usize, i64> {
    let appid = appid.filter(|a| !a.is_empty()).ok_or(41002)?;
    let secret = secret.filter(|s| !s.is_empty()).ok_or(41004)?;
    let app = st.world.app_index(appid).ok_or(40013)?;
    if !allowed.contains(&st.world.apps[app].kind) {
        return Err(40013);
    }
    if st.world.apps[app].secret != secret {
        return Err(40125);
    }
    if grant_type != Some("authorization_code") {
        return Err(40002);
    }
    Ok(app)
}

/// Query of `GET /sns/oauth2/access_token` and `GET /sns/jscode2session`.
#[derive(Debug, Deserialize)]
pub(crate) struct CodeQuery {
    appid: Option<String>,
    secret: Option<String>,
    code: Option<String>,
    js_code: Option<String>,
    grant_type: Option<String>,
}

/// `GET /sns/oauth2/access_token`: exchanges an OAuth code.
pub(crate) async fn oauth_access_token(
    State(sim): State<Simulator>,
    Query(q): Query<CodeQuery>,
) -> Response {
    const PATH: &str = "/sns/oauth2/access_token";
    if let Some(r) = faults::apply(&sim, PATH, q.appid.clone()).await {
        return r;
    }
    let now = sim.now();
    let mut guard = sim.lock();
    let st = &mut *guard;
    let allowed = [
        SimKind::OfficialAccount,
        SimKind::MobileApp,
        SimKind::Website,
    ];
    let outcome = app_and_secret(
        st,
        q.appid.as_deref(),
        q.secret.as_deref(),
        q.grant_type.as_deref(),
        &allowed,
    )
    .and_then(|app| check_code(st, app, q.code.as_deref(), now));
    let code = match outcome {
        Ok(code) => code,
        Err(e) => return wire::error(e),
    };
    if let Some(c) = q.code.as_deref().and_then(|c| st.sns.codes.get_mut(c)) {
        c.used = true;
    }
    let access_token = random(&mut st.rng, 86);
    let refresh_token = random(&mut st.rng, 86);
    st.sns.tokens.insert(
        access_token.clone(),
        Grant {
            app: code.app,
            person: code.person,
            scope: code.scope.clone(),
            snapshot: code.snapshot,
            expires_at: now + TOKEN_TTL,
        },
    );
    let world = &st.world;
    let bound = world.apps[code.app].bound;
    let mut out = Map::new();
    out.insert("access_token".into(), json!(access_token));
    out.insert("expires_in".into(), json!(TOKEN_TTL));
    out.insert("refresh_token".into(), json!(refresh_token));
    if code.snapshot {
        out.insert(
            "openid".into(),
            json!(world.snapshot_openid(code.app, code.person)),
        );
        out.insert("scope".into(), json!(code.scope));
        out.insert("is_snapshotuser".into(), json!(1));
        if bound {
            out.insert("unionid".into(), json!(world.snapshot_unionid(code.person)));
        }
    } else {
        out.insert("openid".into(), json!(world.openid(code.app, code.person)));
        out.insert("scope".into(), json!(code.scope));
        if bound && is_userinfo_scope(&code.scope) {
            out.insert("unionid".into(), json!(world.unionid(code.person)));
        }
    }
    wire::json(&Value::Object(out))
}

/// Query of `GET /sns/userinfo`.
#[derive(Debug, Deserialize)]
pub(crate) struct UserinfoQuery {
    access_token: Option<String>,
    openid: Option<String>,
}

/// `GET /sns/userinfo`: the signed-in user's profile.
pub(crate) async fn userinfo(
    State(sim): State<Simulator>,
    Query(q): Query<UserinfoQuery>,
) -> Response {
    const PATH: &str = "/sns/userinfo";
    let appid = {
        let st = sim.lock();
        q.access_token
            .as_deref()
            .and_then(|t| st.sns.tokens.get(t))
            .and_then(|g| st.world.apps.get(g.app))
            .map(|a| a.appid.clone())
    };
    if let Some(r) = faults::apply(&sim, PATH, appid).await {
        return r;
    }
    let now = sim.now();
    let st = sim.lock();
    let outcome = (|| {
        let token = q
            .access_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or(41001)?;
        let grant = st.sns.tokens.get(token).ok_or(40001)?;
        if now >= grant.expires_at {
            return Err(42001);
        }
        if !is_userinfo_scope(&grant.scope) || grant.snapshot {
            return Err(48001);
        }
        if q.openid.as_deref() != Some(st.world.openid(grant.app, grant.person).as_str()) {
            return Err(40003);
        }
        Ok(grant.clone())
    })();
    let grant = match outcome {
        Ok(grant) => grant,
        Err(code) => return wire::error(code),
    };
    let world = &st.world;
    let profile = world.profile(grant.person);
    let sex = if profile.sex_as_string {
        json!(profile.sex.to_string())
    } else {
        json!(profile.sex)
    };
    let mut out = Map::new();
    out.insert(
        "openid".into(),
        json!(world.openid(grant.app, grant.person)),
    );
    out.insert("nickname".into(), json!(profile.nickname));
    out.insert("sex".into(), sex);
    out.insert("province".into(), json!(profile.province));
    out.insert("city".into(), json!(profile.city));
    out.insert("country".into(), json!(profile.country));
    out.insert("headimgurl".into(), json!(profile.headimgurl));
    out.insert("privilege".into(), json!([]));
    if world.apps[grant.app].bound {
        out.insert("unionid".into(), json!(world.unionid(grant.person)));
    }
    wire::json(&Value::Object(out))
}

/// `GET /sns/jscode2session`: a mini program's sign-in.
pub(crate) async fn jscode2session(
    State(sim): State<Simulator>,
    Query(q): Query<CodeQuery>,
) -> Response {
    const PATH: &str = "/sns/jscode2session";
    if let Some(r) = faults::apply(&sim, PATH, q.appid.clone()).await {
        return r;
    }
    let now = sim.now();
    let mut guard = sim.lock();
    let st = &mut *guard;
    let outcome = app_and_secret(
        st,
        q.appid.as_deref(),
        q.secret.as_deref(),
        q.grant_type.as_deref(),
        &[SimKind::MiniProgram],
    )
    .and_then(|app| check_code(st, app, q.js_code.as_deref(), now))
    .and_then(|code| {
        let minute = now / 60;
        let counter = st
            .sns
            .per_minute
            .entry((code.app, code.person))
            .or_insert((minute, 0));
        if counter.0 != minute {
            *counter = (minute, 0);
        }
        if counter.1 >= JSCODE_PER_MINUTE {
            return Err(45011);
        }
        counter.1 += 1;
        Ok(code)
    });
    let code = match outcome {
        Ok(code) => code,
        Err(e) => return wire::error(e),
    };
    if let Some(c) = q.js_code.as_deref().and_then(|c| st.sns.codes.get_mut(c)) {
        c.used = true;
    }
    let key: [u8; 16] = st.rng.r#gen();
    let world = &st.world;
    let mut out = Map::new();
    out.insert("openid".into(), json!(world.openid(code.app, code.person)));
    out.insert(
        "session_key".into(),
        json!(base64::engine::general_purpose::STANDARD.encode(key)),
    );
    if world.apps[code.app].bound {
        out.insert("unionid".into(), json!(world.unionid(code.person)));
    }
    wire::json(&Value::Object(out))
}
