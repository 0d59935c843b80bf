//! `signIn`: the code exchange of each kind of app, against the simulator
//! over real HTTP: who signs in lands in the identity graph, snapshot-page
//! users never join a person, and each code error is a coded, typed error.

use serde_json::{Value, json};
use union360::clock::Clock;
use union360::keys::{Scope, Scopes};
use union360::simulator::{KindMix, SimApp, SimConfig};

use crate::helpers::{
    Backend, SimControl, TestApp, client_with_key, codes, create_key, spawn_app_in,
};

const SIGN_IN: &str = "mutation SignIn($appid: String!, $code: String!) {
    signIn(appid: $appid, code: $code) {
        snapshotUser
        account { openid unionid snapshotUser nickname avatarUrl person { unionid accounts { openid } } }
    } }";

fn world() -> SimConfig {
    SimConfig {
        seed: 5,
        people: 40,
        apps: 8,
        unbound_share: 0.0,
        kinds: KindMix {
            oa: 0.25,
            mp: 0.25,
            app: 0.25,
            web: 0.25,
        },
        ..SimConfig::default()
    }
}

/// Registers one app of each kind with its real secret; returns them by kind.
async fn start(backend: Backend) -> (TestApp, Vec<(String, SimApp)>) {
    let app = spawn_app_in(backend, Clock::system(), world(), |_| {}).await;
    let mut chosen = Vec::new();
    for kind in ["OFFICIAL_ACCOUNT", "WEBSITE", "MOBILE_APP", "MINI_PROGRAM"] {
        let found = app
            .sim
            .sim
            .apps()
            .into_iter()
            .find(|a| a.kind == kind && a.bound)
            .unwrap_or_else(|| panic!("the world has a bound {kind}"));
        app.register(&found.appid, kind, &found.secret).await;
        chosen.push((kind.to_owned(), found));
    }
    (app, chosen)
}

async fn code(app: &TestApp, appid: &str, person: u32, extra: Value) -> String {
    let mut body = json!({ "appid": appid, "person": person });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let minted = app
        .sim
        .control(reqwest::Method::POST, "/_sim/codes", body)
        .await;
    minted["code"].as_str().expect("a code").to_owned()
}

async fn sign_in(app: &TestApp, appid: &str, code: &str) -> Value {
    app.graphql(SIGN_IN, json!({ "appid": appid, "code": code }))
        .await
}

fn openid_in(person: &crate::helpers::SimPerson, appid: &str) -> String {
    person
        .accounts
        .iter()
        .find(|(a, _, _)| a == appid)
        .map(|(_, openid, _)| openid.clone())
        .unwrap()
}

on_each_backend!(each_kind_of_app_signs_a_user_in);
async fn each_kind_of_app_signs_a_user_in(backend: Backend) {
    let (app, apps) = start(backend).await;
    let person = app.sim.person(3).await;
    for (kind, sim_app) in &apps {
        let code = code(&app, &sim_app.appid, 3, json!({})).await;
        let body = sign_in(&app, &sim_app.appid, &code).await;
        assert!(body.get("errors").is_none(), "{kind}: {body:#}");
        let signed = &body["data"]["signIn"];
        assert_eq!(signed["snapshotUser"], false, "{kind}");
        let account = &signed["account"];
        assert_eq!(
            account["openid"],
            openid_in(&person, &sim_app.appid),
            "{kind}"
        );
        // An official account's page signs in with snsapi_base: the openid
        // alone. The others reveal the UnionID, which links the person.
        if kind == "OFFICIAL_ACCOUNT" {
            assert!(account["unionid"].is_null(), "{kind}: {account:#}");
            assert!(account["person"].is_null(), "{kind}: {account:#}");
        } else {
            assert_eq!(account["unionid"], person.unionid.as_str(), "{kind}");
            assert_eq!(
                account["person"]["unionid"],
                person.unionid.as_str(),
                "{kind}"
            );
        }
        // sns/userinfo carries the nickname and avatar (not the mini program's code).
        if kind == "WEBSITE" || kind == "MOBILE_APP" {
            assert!(account["nickname"].is_string(), "{kind}: {account:#}");
            assert!(account["avatarUrl"].is_string(), "{kind}: {account:#}");
        }
    }
    // The three linked accounts are one person's.
    let body = sign_in(
        &app,
        &apps[1].1.appid,
        &code(&app, &apps[1].1.appid, 3, json!({})).await,
    )
    .await;
    let accounts = body["data"]["signIn"]["account"]["person"]["accounts"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(accounts, 3, "{body:#}");
}

on_each_backend!(a_snapshot_page_user_never_joins_a_person);
async fn a_snapshot_page_user_never_joins_a_person(backend: Backend) {
    let (app, apps) = start(backend).await;
    let oa = &apps[0].1;
    let code = code(&app, &oa.appid, 4, json!({ "snapshot": true })).await;
    let body = sign_in(&app, &oa.appid, &code).await;
    assert!(body.get("errors").is_none(), "{body:#}");
    let signed = &body["data"]["signIn"];
    assert_eq!(signed["snapshotUser"], true);
    assert_eq!(signed["account"]["snapshotUser"], true);
    assert!(signed["account"]["person"].is_null(), "{body:#}");
    assert!(signed["account"]["unionid"].is_null(), "{body:#}");
    let persons = app
        .data("{ people(first: 10) { totalCount } }", json!({}))
        .await;
    assert_eq!(persons["people"]["totalCount"], 0);
}

on_each_backend!(a_code_wechat_refuses_is_bad_user_input_with_its_errcode);
async fn a_code_wechat_refuses_is_bad_user_input_with_its_errcode(backend: Backend) {
    let (app, apps) = start(backend).await;
    let (web, mini) = (&apps[1].1, &apps[3].1);
    let errcode = |body: &Value| body["errors"][0]["extensions"]["wechatErrcode"].as_i64();

    // Used twice: 40163, and the first sign-in stands.
    let used = code(&app, &web.appid, 1, json!({})).await;
    assert!(
        sign_in(&app, &web.appid, &used)
            .await
            .get("errors")
            .is_none()
    );
    let body = sign_in(&app, &web.appid, &used).await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{body:#}");
    assert_eq!(errcode(&body), Some(40163), "{body:#}");
    assert!(body["data"].is_null());
    // Unknown, or another app's: 40029.
    for (appid, code) in [
        (
            web.appid.as_str(),
            "nosuchcode0000000000000000000000".to_owned(),
        ),
        (
            mini.appid.as_str(),
            code(&app, &web.appid, 2, json!({})).await,
        ),
    ] {
        let body = sign_in(&app, appid, &code).await;
        assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{body:#}");
        assert_eq!(errcode(&body), Some(40029), "{body:#}");
    }
    // Expired after five minutes: 42003.
    let late = code(&app, &mini.appid, 2, json!({})).await;
    app.sim.sim.advance_clock(301);
    let body = sign_in(&app, &mini.appid, &late).await;
    assert_eq!(errcode(&body), Some(42003), "{body:#}");
    assert_eq!(codes(&body), ["BAD_USER_INPUT"]);

    // Malformed codes never reach WeChat; unknown apps are NOT_FOUND.
    for bad in ["", "a b", &"x".repeat(129)] {
        let body = sign_in(&app, &web.appid, bad).await;
        assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{bad:?}: {body:#}");
    }
    let body = sign_in(&app, "wx00000000000000ee", "code").await;
    assert_eq!(codes(&body), ["NOT_FOUND"], "{body:#}");

    // WeChat down: UPSTREAM_UNAVAILABLE, and the code was sent once.
    app.sim
        .fault("/sns/jscode2session", json!({ "errcode": -1, "count": 5 }))
        .await;
    app.sim.reset_calls().await;
    let fresh = code(&app, &mini.appid, 5, json!({})).await;
    let body = sign_in(&app, &mini.appid, &fresh).await;
    assert_eq!(codes(&body), ["UPSTREAM_UNAVAILABLE"], "{body:#}");
    assert_eq!(errcode(&body), Some(-1), "{body:#}");
    assert_eq!(app.sim.calls_to("/sns/jscode2session"), 1);

    // The profile WeChat does not give leaves the sign-in without one: the
    // code is spent, so the openid and UnionID are kept all the same.
    app.sim
        .fault("/sns/userinfo", json!({ "errcode": 48001, "count": 5 }))
        .await;
    let body = sign_in(
        &app,
        &web.appid,
        &code(&app, &web.appid, 6, json!({})).await,
    )
    .await;
    assert!(body.get("errors").is_none(), "{body:#}");
    let account = &body["data"]["signIn"]["account"];
    assert!(account["nickname"].is_null(), "{account:#}");
    assert_eq!(account["unionid"], app.sim.person(6).await.unionid.as_str());

    // Signing in writes: a key without `write` may not.
    let reader = create_key(&app.state, "reader", Scopes::from_iter([Scope::Read])).await;
    let body: Value = client_with_key(&reader)
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": SIGN_IN, "variables": { "appid": web.appid, "code": "c" } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body:#}");
}
