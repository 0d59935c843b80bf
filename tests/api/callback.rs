//! `GET /wechat/{appid}/callback`: WeChat's verification of the callback
//! URL, with the known vectors of WECHAT.md, over real HTTP.

use chrono::{TimeZone, Utc};
use serde_json::json;
use union360::clock::Clock;
use union360::wechat::callback::signature;

use crate::helpers::{Backend, TestApp, spawn_app_with_clock};

const OA: &str = "wx0000000000000c01";
const SECOND: &str = "wx0000000000000c02";
const MINI: &str = "wx0000000000000c03";

/// WECHAT.md: token `AAAAA`, timestamp 1714037059, nonce 486452656.
const SIGNATURE: &str = "899cf89e464efb63f54ddac96b0a0a235f53aa78";

async fn register(app: &TestApp, appid: &str, kind: &str, token: Option<&str>) {
    app.data(
        "mutation($input: RegisterAppInput!) { registerApp(input: $input) { appid } }",
        json!({ "input": {
            "appid": appid, "kind": kind, "name": appid,
            "secret": "5ec7e75ec7e75ec7e75ec7e75ec7e75e", "callbackToken": token,
        } }),
    )
    .await;
}

/// `GET` of the callback URL with `query`: the status and the body.
async fn verify(app: &TestApp, appid: &str, query: &str) -> (u16, String) {
    let response = reqwest::get(format!("{}/wechat/{appid}/callback?{query}", app.address))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

on_each_backend!(the_echo_is_answered_only_for_the_token_s_signature);
async fn the_echo_is_answered_only_for_the_token_s_signature(backend: Backend) {
    let clock = Clock::manual(Utc.timestamp_opt(1_714_037_059, 0).unwrap());
    let app = spawn_app_with_clock(backend, clock.clone(), |_| {}).await;
    register(&app, OA, "OFFICIAL_ACCOUNT", Some("AAAAA")).await;
    register(&app, SECOND, "OFFICIAL_ACCOUNT", Some("test")).await;
    register(&app, MINI, "MINI_PROGRAM", None).await;
    let good = format!(
        "signature={SIGNATURE}&timestamp=1714037059&nonce=486452656&echostr=5837397520465617"
    );

    assert_eq!(
        verify(&app, OA, &good).await,
        (200, "5837397520465617".to_owned())
    );
    // A signed request is answered once: seen once, it cannot be replayed
    // to have other text echoed.
    let replayed = good.replace("5837397520465617", "anything");
    let (status, body) = verify(&app, OA, &replayed).await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("anything"), "{body}");
    // Hex of either case.
    let signed = |timestamp: i64, nonce: &str| {
        let signature = signature("AAAAA", &timestamp.to_string(), nonce).to_uppercase();
        format!("signature={signature}&timestamp={timestamp}&nonce={nonce}&echostr=42")
    };
    assert_eq!(
        verify(&app, OA, &signed(1_714_037_059, "n1")).await,
        (200, "42".to_owned())
    );
    // The second vector, within the replay window.
    let second = "signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443ff&timestamp=1410685589&nonce=test&echostr=x";
    let (status, body) = verify(&app, SECOND, second).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("timestamp"), "{body}");

    // Refused, and the echo never sent back.
    let refusals = [
        (OA, good.replace(SIGNATURE, &"0".repeat(40)), 401),
        (OA, good.replace("nonce=486452656", "nonce=486452657"), 401),
        (
            OA,
            good.replace(&format!("signature={SIGNATURE}&"), ""),
            400,
        ),
        (OA, good.replace("&echostr=5837397520465617", ""), 400),
        (OA, good.replace("5837397520465617", &"5".repeat(129)), 400),
        (
            OA,
            good.replace("5837397520465617", "%3Cb%3Ehi%3C%2Fb%3E"),
            400,
        ),
        (
            OA,
            good.replace("timestamp=1714037059", "timestamp=soon"),
            400,
        ),
        // Another app's URL, an app without a token, no app at all.
        (SECOND, good.clone(), 401),
        (MINI, good.clone(), 404),
        ("wx00000000000000ff", good.clone(), 404),
        ("not-an-appid", good.clone(), 404),
    ];
    for (appid, query, expected) in refusals {
        let (status, body) = verify(&app, appid, &query).await;
        assert_eq!(status, expected, "{appid} {query}: {body}");
        assert!(
            !body.contains("5837397520465617"),
            "{appid} {query}: {body}"
        );
    }

    // The replay window: 300 s either way of the server's clock.
    clock.advance(chrono::Duration::seconds(300));
    assert_eq!(verify(&app, OA, &signed(1_714_037_059, "n2")).await.0, 200);
    clock.advance(chrono::Duration::seconds(2));
    let (status, body) = verify(&app, OA, &signed(1_714_037_059, "n3")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("timestamp"), "{body}");
    assert_eq!(verify(&app, OA, &signed(1_714_037_361, "n3")).await.0, 200);
}
