//! The control plane under `/_sim/`: inspect and steer the sandbox.
//!
//! Plain JSON with ordinary HTTP statuses (this part is not WeChat): 400 with
//! `{"error"}` for a bad request, 404 for an unknown app or person. See the
//! README's simulator section for curl examples.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::faults::Fault;
use super::world::World;
use super::{KindMix, SimConfig, SimState, Simulator, quota, sns};

/// The `/_sim` routes (but `/_sim/push`, which `super::push` serves).
pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route("/_sim/apps", get(apps))
        .route("/_sim/config", get(config))
        .route("/_sim/calls", get(calls).delete(clear_calls))
        .route(
            "/_sim/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_sim/reset", post(reset))
        .route("/_sim/follows", post(follow).delete(unfollow))
        .route("/_sim/tokens/invalidate", post(invalidate_tokens))
        .route("/_sim/quota/exhaust", post(exhaust_quota))
        .route("/_sim/quota/reset", post(reset_quotas))
        .route("/_sim/clock", get(clock))
        .route("/_sim/clock/advance", post(advance_clock))
        .route("/_sim/codes", post(codes))
        .route("/_sim/people/{index}", get(person))
        .route("/_sim/apps/{appid}/aes_key", post(set_aes_key))
}

/// A control-plane refusal.
pub(crate) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A refusal travelling through `Result` (boxed: responses are large).
pub(crate) type Refused = Box<Response>;

/// Parses a JSON body; an empty body is the type's default.
fn parse<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, Refused> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(refuse(StatusCode::BAD_REQUEST, e.to_string())))
}

/// Who a control request is about: an app and one of its people.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Target {
    /// The app.
    #[serde(default)]
    pub appid: String,
    /// A person by index.
    #[serde(default)]
    pub person: Option<u32>,
    /// Or a person by their openid in `appid`.
    #[serde(default)]
    pub openid: Option<String>,
}

impl Target {
    /// Resolves to `(app index, person index)`.
    pub(crate) fn resolve(&self, world: &World) -> Result<(usize, u32), Refused> {
        let app = world
            .app_index(&self.appid)
            .ok_or_else(|| Box::new(refuse(StatusCode::NOT_FOUND, "unknown appid")))?;
        let person = match (&self.person, &self.openid) {
            (Some(p), _) if *p < world.people => *p,
            (Some(_), _) => return Err(Box::new(refuse(StatusCode::NOT_FOUND, "no such person"))),
            (None, Some(openid)) => world.person_of(app, openid).ok_or_else(|| {
                Box::new(refuse(StatusCode::NOT_FOUND, "not an openid of this app"))
            })?,
            (None, None) => {
                return Err(Box::new(refuse(
                    StatusCode::BAD_REQUEST,
                    "give `person` or `openid`",
                )));
            }
        };
        Ok((app, person))
    }
}

async fn apps(State(sim): State<Simulator>) -> Response {
    Json(sim.apps()).into_response()
}

async fn config(State(sim): State<Simulator>) -> Response {
    Json(json!({ "config": sim.config(), "summary": sim.summary() })).into_response()
}

async fn calls(State(sim): State<Simulator>) -> Response {
    Json(sim.calls()).into_response()
}

async fn clear_calls(State(sim): State<Simulator>) -> Response {
    sim.lock().calls.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn list_faults(State(sim): State<Simulator>) -> Response {
    Json(sim.lock().faults.clone()).into_response()
}

async fn add_fault(State(sim): State<Simulator>, body: Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if !fault.path.starts_with('/') {
        return refuse(StatusCode::BAD_REQUEST, "`path` must start with /");
    }
    if !(0.0..=1.0).contains(&fault.rate) {
        return refuse(StatusCode::BAD_REQUEST, "`rate` must be within 0..1");
    }
    let mut st = sim.lock();
    st.faults.push(fault);
    Json(json!({ "faults": st.faults.len() })).into_response()
}

async fn clear_faults(State(sim): State<Simulator>) -> Response {
    sim.lock().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sim/reset`: rebuilds the world; fields left out keep their value.
async fn reset(State(sim): State<Simulator>, body: Bytes) -> Response {
    let changes: Value = match parse::<Option<Value>>(&body) {
        Ok(v) => v.unwrap_or_else(|| json!({})),
        Err(r) => return *r,
    };
    let Value::Object(mut changes) = changes else {
        return refuse(StatusCode::BAD_REQUEST, "expected a JSON object");
    };
    if let Some(Value::String(mix)) = changes.get("kinds") {
        match mix.parse::<KindMix>() {
            Ok(mix) => {
                changes.insert("kinds".into(), json!(mix));
            }
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
        }
    }
    let mut merged = json!(sim.config());
    if let Value::Object(current) = &mut merged {
        current.extend(changes);
    }
    let config: SimConfig = match serde_json::from_value(merged) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let fresh = SimState::new(config);
    *sim.lock() = fresh;
    Json(json!({ "summary": sim.summary(), "apps": sim.apps() })).into_response()
}

async fn follow(State(sim): State<Simulator>, body: Bytes) -> Response {
    change_follow(&sim, &body, true)
}

async fn unfollow(State(sim): State<Simulator>, body: Bytes) -> Response {
    change_follow(&sim, &body, false)
}

fn change_follow(sim: &Simulator, body: &Bytes, on: bool) -> Response {
    let target: Target = match parse(body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let now = sim.now();
    let mut st = sim.lock();
    let (app, person) = match target.resolve(&st.world) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let openid = st.world.openid(app, person);
    let Some(follows) = st.world.follows.get_mut(app) else {
        return refuse(StatusCode::NOT_FOUND, "unknown appid");
    };
    let changed = if on {
        follows.add(person, now)
    } else {
        follows.remove(person)
    };
    Json(json!({ "openid": openid, "changed": changed, "total": follows.total() })).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct AppOnly {
    #[serde(default)]
    appid: Option<String>,
}

async fn invalidate_tokens(State(sim): State<Simulator>, body: Bytes) -> Response {
    let req: AppOnly = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let mut st = sim.lock();
    let app = match req.appid.as_deref().map(|a| st.world.app_index(a)) {
        None => None,
        Some(Some(app)) => Some(app),
        Some(None) => return refuse(StatusCode::NOT_FOUND, "unknown appid"),
    };
    let n = st.tokens.invalidate(app);
    Json(json!({ "invalidated": n })).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct AesKeyBody {
    aes_key: String,
}

/// Changes an official account's EncodingAESKey, as its administrator does
/// in the console: pushes are sealed with the new one from now on.
async fn set_aes_key(
    State(sim): State<Simulator>,
    Path(appid): Path<String>,
    body: Bytes,
) -> Response {
    let req: AesKeyBody = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if crate::crypto::decode_encoding_aes_key(&req.aes_key).is_none() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "aes_key must be 43 base64 characters encoding 32 bytes",
        );
    }
    let mut st = sim.lock();
    let Some(app) = st.world.app_index(&appid) else {
        return refuse(StatusCode::NOT_FOUND, "unknown appid");
    };
    let def = &mut st.world.apps[app];
    if def.aes_key.is_none() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "only official accounts have an EncodingAESKey",
        );
    }
    def.aes_key = Some(req.aes_key);
    Json(json!({ "appid": appid })).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct ExhaustBody {
    appid: String,
    path: String,
}

async fn exhaust_quota(State(sim): State<Simulator>, body: Bytes) -> Response {
    let req: ExhaustBody = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let now = sim.now();
    let mut st = sim.lock();
    let Some(app) = st.world.app_index(&req.appid) else {
        return refuse(StatusCode::NOT_FOUND, "unknown appid");
    };
    if !st.quotas.exhaust(app, &req.path, now) {
        return refuse(StatusCode::BAD_REQUEST, "no daily quota on that path");
    }
    let limit = quota::limit(&req.path).map(|l| l.1);
    Json(json!({ "appid": req.appid, "path": req.path, "daily_limit": limit, "remain": 0 }))
        .into_response()
}

async fn reset_quotas(State(sim): State<Simulator>) -> Response {
    sim.lock().quotas.reset();
    StatusCode::NO_CONTENT.into_response()
}

async fn clock(State(sim): State<Simulator>) -> Response {
    Json(json!({ "now": sim.now() })).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct AdvanceBody {
    secs: u64,
}

async fn advance_clock(State(sim): State<Simulator>, body: Bytes) -> Response {
    let req: AdvanceBody = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    sim.advance_clock(req.secs);
    Json(json!({ "now": sim.now() })).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct CodeBody {
    #[serde(flatten)]
    target: Target,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    snapshot: bool,
}

async fn codes(State(sim): State<Simulator>, body: Bytes) -> Response {
    let req: CodeBody = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let now = sim.now();
    let mut guard = sim.lock();
    let st = &mut *guard;
    let (app, person) = match req.target.resolve(&st.world) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let code = sns::mint_code(st, app, person, req.scope, req.snapshot, now);
    Json(json!({ "code": code })).into_response()
}

/// `GET /_sim/people/{index}`: everything about one person, for tests.
async fn person(State(sim): State<Simulator>, Path(index): Path<u32>) -> Response {
    let st = sim.lock();
    let w = &st.world;
    if index >= w.people {
        return refuse(StatusCode::NOT_FOUND, "no such person");
    }
    let profile = w.profile(index);
    let apps: Vec<Value> = w
        .apps
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let following = w.follows.get(i).is_some_and(|f| f.contains(index));
            let mut app = json!({
                "appid": a.appid,
                "kind": a.kind.as_str(),
                "openid": w.openid(i, index),
                "following": following,
            });
            if following {
                let sub = w.subscription(i, index);
                app["subscription"] = json!({
                    "subscribe_time": sub.time,
                    "subscribe_scene": sub.scene,
                    "qr_scene": sub.qr_scene,
                    "tagid_list": sub.tags,
                });
            }
            app
        })
        .collect();
    Json(json!({
        "index": index,
        "unionid": w.unionid(index),
        "profile": {
            "nickname": profile.nickname,
            "sex": profile.sex,
            "sex_as_string": profile.sex_as_string,
            "language": profile.language,
            "city": profile.city,
            "province": profile.province,
            "country": profile.country,
            "headimgurl": profile.headimgurl,
        },
        "apps": apps,
    }))
    .into_response()
}
