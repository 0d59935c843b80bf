//! `refreshAccounts`: profiles from the simulator, through the identity rules.

use serde_json::{Value, json};
use union360::simulator::{SimConfig, SimHandle, Simulator};

use crate::helpers::{TestApp, backends, spawn_app_with};

const REFRESH: &str = "mutation($keys: [AccountKey!]!) { refreshAccounts(keys: $keys) {
    fetched failed invalid skipped
    accounts { openid unionid nickname following stale refreshedAt refreshError { code message } person { unionid } }
} }";

/// A server pointed at a fresh simulator, with the simulator's first bound
/// official account registered; returns the app's appid too.
async fn setup(backend: crate::helpers::Backend) -> (TestApp, SimHandle, String) {
    let sim = Simulator::spawn(SimConfig {
        people: 400,
        apps: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let base = sim.base_url();
    let app = spawn_app_with(backend, |s| s.server.wechat_api_base = base).await;
    let oa = sim
        .sim
        .apps()
        .into_iter()
        .find(|a| a.kind == "OFFICIAL_ACCOUNT" && a.bound)
        .unwrap();
    app.data(
        "mutation($input: RegisterAppInput!) { registerApp(input: $input) { appid } }",
        json!({ "input": { "appid": oa.appid, "kind": "OFFICIAL_ACCOUNT", "name": "OA", "secret": oa.secret } }),
    )
    .await;
    (app, sim, oa.appid)
}

/// The openids of the first `n` people in the simulator's app, with whether each follows.
async fn people(sim: &SimHandle, appid: &str, n: u32) -> Vec<(String, bool, String)> {
    let client = reqwest::Client::new();
    let mut all = Vec::new();
    for i in 0..n {
        let person: Value = client
            .get(format!("{}/_sim/people/{i}", sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let account = person["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["appid"] == appid)
            .unwrap()
            .clone();
        all.push((
            account["openid"].as_str().unwrap().to_owned(),
            account["following"].as_bool().unwrap(),
            person["unionid"].as_str().unwrap().to_owned(),
        ));
    }
    all
}

#[tokio::test]
async fn refreshing_links_unionids_marks_followers_and_batches_by_100() {
    for backend in backends() {
        let (app, sim, appid) = setup(backend).await;
        let everyone = people(&sim, &appid, 250).await;
        let followers: Vec<_> = everyone.iter().filter(|p| p.1).take(150).collect();
        assert!(followers.len() > 100, "the world has enough followers");
        // Known to the CRM by openid only, with a nickname from sign-in.
        let rows: Vec<Value> = followers
            .iter()
            .map(|(openid, _, _)| json!({ "appid": appid, "openid": openid, "nickname": "From sign-in" }))
            .collect();
        app.upsert(json!(rows)).await;
        reqwest::Client::new()
            .delete(format!("{}/_sim/calls", sim.base_url()))
            .send()
            .await
            .unwrap();

        let keys: Vec<Value> = followers
            .iter()
            .map(|(openid, _, _)| json!({ "appid": appid, "openid": openid }))
            .collect();
        let data = app.data(REFRESH, json!({ "keys": keys })).await;
        let payload = &data["refreshAccounts"];
        assert_eq!(
            payload["fetched"],
            followers.len(),
            "{backend:?}: {payload}"
        );
        assert_eq!(payload["failed"], 0);
        let calls = sim.sim.calls();
        assert_eq!(
            calls.get("/cgi-bin/user/info/batchget").copied(),
            Some(followers.len().div_ceil(100) as u64)
        );
        for (account, (_, _, unionid)) in payload["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&followers)
        {
            assert_eq!(account["unionid"], unionid.as_str());
            assert_eq!(account["person"]["unionid"], unionid.as_str());
            assert_eq!(account["following"], true);
            assert_eq!(account["stale"], false);
            assert_eq!(
                account["nickname"], "From sign-in",
                "user/info's blank nickname erased nothing"
            );
        }
    }
}

#[tokio::test]
async fn when_wechat_fails_the_store_is_kept_and_the_error_recorded() {
    let (app, sim, appid) = setup(crate::helpers::Backend::Sqlite).await;
    let everyone = people(&sim, &appid, 20).await;
    let (openid, _, _) = everyone.iter().find(|p| p.1).unwrap().clone();
    app.upsert(
        json!([{ "appid": appid, "openid": openid, "unionid": "u-known", "nickname": "Kept" }]),
    )
    .await;
    reqwest::Client::new()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!({ "path": "/cgi-bin/user/info/batchget", "errcode": -1 }))
        .send()
        .await
        .unwrap();
    let data = app
        .data(
            REFRESH,
            json!({ "keys": [{ "appid": appid, "openid": openid }] }),
        )
        .await;
    let payload = &data["refreshAccounts"];
    assert_eq!(payload["failed"], 1, "{payload}");
    let account = &payload["accounts"][0];
    assert_eq!(account["nickname"], "Kept");
    assert_eq!(account["unionid"], "u-known");
    assert_eq!(account["stale"], true);
    assert_eq!(account["refreshError"]["code"], -1);
}
