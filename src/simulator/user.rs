//! Official-account user APIs: `user/info`, `user/info/batchget`, `user/get`.
//!
//! Profiles follow WeChat's present rules: non-followers get little more
//! than `subscribe: 0`; followers get the full object, but with the 2021
//! blanking (on by default) nickname, avatar, sex and places are empty while
//! their keys stay; the UnionID appears only for apps bound to the open
//! platform. `user/get` pages through followers in follow order, 10,000 at a
//! time, with WeChat's ambiguous end: the last page still names a
//! `next_openid`, and the call after it has `count: 0` and no `data`.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::world::{SimKind, World};
use super::{SimConfig, Simulator, quota::TokenParam, token};

/// Openids per `user/get` page.
const PAGE: usize = 10_000;
/// Entries per `batchget` call.
const BATCH: usize = 100;

/// The `user/info` object of `person` as `app` sees them.
pub(crate) fn user_object(world: &World, config: &SimConfig, app: usize, person: u32) -> Value {
    let openid = world.openid(app, person);
    let bound = world.apps.get(app).is_some_and(|a| a.bound);
    let following = world.follows.get(app).is_some_and(|f| f.contains(person));
    if !following {
        let mut out = Map::new();
        out.insert("subscribe".into(), json!(0));
        out.insert("openid".into(), json!(openid));
        if bound && config.unionid_for_non_followers {
            out.insert("unionid".into(), json!(world.unionid(person)));
        }
        return Value::Object(out);
    }
    let profile = world.profile(person);
    let sub = world.subscription(app, person);
    let blank = config.blank_profiles;
    let text = |s: &str| if blank { String::new() } else { s.to_owned() };
    let mut out = Map::new();
    out.insert("subscribe".into(), json!(1));
    out.insert("openid".into(), json!(openid));
    out.insert("nickname".into(), json!(text(&profile.nickname)));
    out.insert("sex".into(), json!(if blank { 0 } else { profile.sex }));
    out.insert("language".into(), json!(profile.language));
    out.insert("city".into(), json!(text(profile.city)));
    out.insert("province".into(), json!(text(profile.province)));
    out.insert("country".into(), json!(text(profile.country)));
    out.insert("headimgurl".into(), json!(text(&profile.headimgurl)));
    out.insert("subscribe_time".into(), json!(sub.time));
    if bound {
        out.insert("unionid".into(), json!(world.unionid(person)));
    }
    out.insert("remark".into(), json!(""));
    out.insert("groupid".into(), json!(0));
    out.insert("tagid_list".into(), json!(sub.tags));
    out.insert("subscribe_scene".into(), json!(sub.scene));
    out.insert("qr_scene".into(), json!(sub.qr_scene));
    out.insert("qr_scene_str".into(), json!(sub.qr_scene_str));
    Value::Object(out)
}

/// Query of `GET /cgi-bin/user/info`.
#[derive(Debug, Deserialize)]
pub(crate) struct InfoQuery {
    access_token: Option<String>,
    openid: Option<String>,
}

/// `GET /cgi-bin/user/info`.
pub(crate) async fn info(State(sim): State<Simulator>, Query(q): Query<InfoQuery>) -> Response {
    let kind = Some(SimKind::OfficialAccount);
    token::serve_authorized(
        &sim,
        q.access_token.as_deref(),
        kind,
        "/cgi-bin/user/info",
        |st, app, _| {
            let person = q
                .openid
                .as_deref()
                .and_then(|o| st.world.person_of(app, o))
                .ok_or(40003)?;
            Ok(user_object(&st.world, &st.config, app, person))
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct BatchBody {
    user_list: Vec<BatchEntry>,
}

#[derive(Debug, Deserialize)]
struct BatchEntry {
    openid: String,
}

/// `POST /cgi-bin/user/info/batchget`: at most 100; one bad openid fails all.
pub(crate) async fn batchget(
    State(sim): State<Simulator>,
    Query(q): Query<TokenParam>,
    body: Bytes,
) -> Response {
    let path = "/cgi-bin/user/info/batchget";
    let kind = Some(SimKind::OfficialAccount);
    token::serve_authorized(&sim, q.access_token.as_deref(), kind, path, |st, app, _| {
        if body.is_empty() {
            return Err(44002);
        }
        let body: BatchBody = serde_json::from_slice(&body).map_err(|_| 47001)?;
        if body.user_list.is_empty() || body.user_list.len() > BATCH {
            return Err(40032);
        }
        let people = body
            .user_list
            .iter()
            .map(|e| st.world.person_of(app, &e.openid).ok_or(40003))
            .collect::<Result<Vec<u32>, i64>>()?;
        let list: Vec<Value> = people
            .into_iter()
            .map(|p| user_object(&st.world, &st.config, app, p))
            .collect();
        Ok(json!({ "user_info_list": list }))
    })
    .await
}

/// Query of `GET /cgi-bin/user/get`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    access_token: Option<String>,
    next_openid: Option<String>,
}

/// `GET /cgi-bin/user/get`: followers in follow order, 10,000 per page.
pub(crate) async fn list(State(sim): State<Simulator>, Query(q): Query<ListQuery>) -> Response {
    let kind = Some(SimKind::OfficialAccount);
    token::serve_authorized(
        &sim,
        q.access_token.as_deref(),
        kind,
        "/cgi-bin/user/get",
        |st, app, _| {
            let after = match q.next_openid.as_deref().filter(|o| !o.is_empty()) {
                None => None,
                Some(openid) => Some(st.world.person_of(app, openid).ok_or(40003)?),
            };
            let follows = &st.world.follows[app];
            let page = follows.page(after, PAGE).ok_or(40003)?;
            let total = follows.total();
            if page.is_empty() {
                // The call after the last page: no `data` at all.
                return Ok(json!({"total": total, "count": 0, "next_openid": ""}));
            }
            let openids: Vec<String> = page.iter().map(|p| st.world.openid(app, *p)).collect();
            let next = openids.last().cloned().unwrap_or_default();
            Ok(json!({
                "total": total,
                "count": openids.len(),
                "data": { "openid": openids },
                "next_openid": next,
            }))
        },
    )
    .await
}
