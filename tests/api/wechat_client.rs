//! The WeChat client against the simulator, over real HTTP.

use std::sync::Arc;

use chrono::Duration;
use futures::StreamExt;
use serde_json::{Value, json};
use union360::clock::Clock;
use union360::crypto::MasterKey;
use union360::simulator::{KindMix, SimConfig, SimHandle, Simulator};
use union360::wechat::client::api;
use union360::wechat::{
    AppCredentials, ClientConfig, ErrorClass, TokenEndpoint, TokenStore, WechatClient, WechatError,
};

use crate::helpers::{Backend, SimControl, fresh_database};

async fn sim(people: u32) -> SimHandle {
    Simulator::spawn(SimConfig {
        people,
        apps: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn official_account(sim: &SimHandle) -> AppCredentials {
    let app = sim
        .sim
        .apps()
        .into_iter()
        .find(|a| a.kind == "OFFICIAL_ACCOUNT" && a.bound)
        .expect("a bound official account");
    AppCredentials {
        appid: app.appid,
        secret: app.secret.into(),
    }
}

fn client(sim: &SimHandle, store: Option<TokenStore>, clock: Clock) -> WechatClient {
    let mut config = ClientConfig::new(sim.base_url());
    config.request_timeout = std::time::Duration::from_secs(2);
    WechatClient::new(config, store, clock).unwrap()
}

async fn token_store(backend: Backend) -> (TokenStore, tempfile::TempDir, String) {
    let (url, dir) = fresh_database(backend).await;
    let store = union360::store::connect(&url).await.unwrap();
    union360::store::migrate(&store.db).await.unwrap();
    let (key, _) = MasterKey::generate();
    (TokenStore { db: store.db, key }, dir, url)
}

async fn followers_of(client: &WechatClient, app: &AppCredentials) -> Vec<String> {
    let mut all = Vec::new();
    let mut pages = std::pin::pin!(client.followers(app));
    while let Some(page) = pages.next().await {
        all.extend(page.unwrap().openids().iter().cloned());
    }
    all
}

#[tokio::test]
async fn profiles_followers_and_quota_are_read_with_one_token() {
    let sim = sim(300).await;
    let app = official_account(&sim);
    let client = client(&sim, None, Clock::system());
    let followers = followers_of(&client, &app).await;
    assert!(!followers.is_empty());
    let mut unique = followers.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), followers.len(), "no follower listed twice");

    let one = client.user_info(&app, &followers[0]).await.unwrap();
    assert_eq!(one.subscribe, Some(1));
    assert!(one.unionid.is_some(), "bound app: unionid present");
    assert_eq!(one.nickname.as_deref(), Some(""), "blanked since 2021");

    let batch = client.batchget(&app, &followers).await.unwrap();
    assert_eq!(batch.users.len(), followers.len());
    assert!(batch.invalid.is_empty() && batch.malformed.is_empty());
    let chunks = followers.len().div_ceil(100) as u64;
    assert_eq!(sim.calls_to(api::BATCHGET), chunks);

    let quota = client.quota(&app, api::USER_INFO).await.unwrap();
    assert!(quota.daily_limit > 0 && quota.used >= 1);
    assert_eq!(
        sim.calls_to(api::STABLE_TOKEN),
        1,
        "one token for all of it"
    );
}

#[tokio::test]
async fn the_last_follower_page_ends_the_stream_on_every_end_shape() {
    let sim = sim(25_000).await;
    let app = official_account(&sim);
    let client = client(&sim, None, Clock::system());
    let followers = followers_of(&client, &app).await;
    let total = client.followers_page(&app, None).await.unwrap().total as usize;
    assert_eq!(followers.len(), total);
    let pages = total.div_ceil(10_000) as u64;
    // The pages themselves, the probe above, and at most the empty page after the last.
    assert!(sim.calls_to(api::USER_GET) <= pages + 2);
}

#[tokio::test]
async fn a_batch_with_one_invalid_openid_still_returns_the_other_99() {
    let sim = sim(500).await;
    let app = official_account(&sim);
    let client = client(&sim, None, Clock::system());
    let mut ids: Vec<String> = followers_of(&client, &app)
        .await
        .into_iter()
        .take(99)
        .collect();
    assert_eq!(ids.len(), 99);
    ids.insert(42, "o_not_a_real_openid_of_this_app".to_owned());
    let batch = client.batchget(&app, &ids).await.unwrap();
    assert_eq!(batch.users.len(), 99);
    assert_eq!(batch.invalid, ["o_not_a_real_openid_of_this_app"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_calls_on_a_cold_token_fetch_it_once() {
    let sim = sim(200).await;
    let app = official_account(&sim);
    let client = Arc::new(client(&sim, None, Clock::system()));
    let openid = followers_of(&client, &app).await[0].clone();
    let fresh = Arc::new(self::client(&sim, None, Clock::system()));
    sim.reset_calls().await;
    let calls_made = (0..100).map(|_| {
        let (client, app, openid) = (fresh.clone(), app.clone(), openid.clone());
        tokio::spawn(async move { client.user_info(&app, &openid).await })
    });
    for call in futures::future::join_all(calls_made).await {
        call.unwrap().unwrap();
    }
    assert_eq!(sim.calls_to(api::STABLE_TOKEN), 1);
    assert_eq!(fresh.tokens().fetches(), 1);
}

on_postgres!(
    two_instances_sharing_a_database_fetch_one_token_between_them,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn two_instances_sharing_a_database_fetch_one_token_between_them(backend: Backend) {
    // Instances share tokens through PostgreSQL (SQLite serves one instance).
    let sim = sim(100).await;
    let app = official_account(&sim);
    let (store, _dir, _url) = token_store(backend).await;
    let a = Arc::new(client(&sim, Some(store.clone()), Clock::system()));
    let b = Arc::new(client(&sim, Some(store), Clock::system()));
    let calls_made = (0..20).map(|i| {
        let (client, app) = (if i % 2 == 0 { a.clone() } else { b.clone() }, app.clone());
        tokio::spawn(async move {
            client
                .access_token(&app)
                .await
                .map(|t| t.secret().to_owned())
        })
    });
    let tokens: Vec<String> = futures::future::join_all(calls_made)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "{backend:?}: one token"
    );
    assert_eq!(sim.calls_to(api::STABLE_TOKEN), 1, "{backend:?}");
    assert_eq!(a.tokens().fetches() + b.tokens().fetches(), 1);
}

#[tokio::test]
async fn a_token_invalidated_mid_flight_costs_one_retry() {
    for endpoint in [TokenEndpoint::Stable, TokenEndpoint::Classic] {
        let sim = sim(100).await;
        let app = official_account(&sim);
        let mut config = ClientConfig::new(sim.base_url());
        config.token_endpoint = endpoint;
        let client = WechatClient::new(config, None, Clock::system()).unwrap();
        let openid = followers_of(&client, &app).await[0].clone();
        sim.control(reqwest::Method::POST, "/_sim/tokens/invalidate", json!({}))
            .await;
        sim.reset_calls().await;
        client.user_info(&app, &openid).await.unwrap();
        let token_path = match endpoint {
            TokenEndpoint::Stable => api::STABLE_TOKEN,
            TokenEndpoint::Classic => api::TOKEN,
        };
        assert_eq!(sim.calls_to(token_path), 1, "{endpoint:?}");
        assert_eq!(
            sim.calls_to(api::USER_INFO),
            2,
            "{endpoint:?}: the failed call and one retry"
        );
    }
}

#[tokio::test]
async fn a_token_that_keeps_failing_is_not_retried_in_a_loop() {
    let sim = sim(100).await;
    let app = official_account(&sim);
    let client = client(&sim, None, Clock::system());
    let openid = followers_of(&client, &app).await[0].clone();
    sim.fault(api::USER_INFO, json!({ "errcode": 40001 })).await;
    sim.reset_calls().await;
    let error = client.user_info(&app, &openid).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::TokenInvalid);
    // stable_token hands back the same token, so there is nothing to retry with.
    assert_eq!(sim.calls_to(api::USER_INFO), 1);
    assert_eq!(sim.calls_to(api::STABLE_TOKEN), 1);

    // With /cgi-bin/token a new token comes, and is tried once.
    let mut config = ClientConfig::new(sim.base_url());
    config.token_endpoint = TokenEndpoint::Classic;
    let classic = WechatClient::new(config, None, Clock::system()).unwrap();
    sim.reset_calls().await;
    let error = classic.user_info(&app, &openid).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::TokenInvalid);
    assert_eq!(
        sim.calls_to(api::USER_INFO),
        2,
        "the failed call and one retry, no loop"
    );
    assert_eq!(sim.calls_to(api::TOKEN), 2);
}

#[tokio::test]
async fn daily_quota_exhaustion_stops_calls_until_the_quota_resets() {
    let sim = sim(100).await;
    let app = official_account(&sim);
    let clock = Clock::manual("2026-11-24T04:00:00Z".parse().unwrap());
    let client = client(&sim, None, clock.clone());
    let openid = followers_of(&client, &app).await[0].clone();
    sim.control(
        reqwest::Method::POST,
        "/_sim/quota/exhaust",
        json!({ "appid": app.appid, "path": api::USER_INFO }),
    )
    .await;
    let first = client.user_info(&app, &openid).await.unwrap_err();
    assert_eq!(first.errcode(), Some(45009));
    let before = sim.calls_to(api::USER_INFO);
    for _ in 0..5 {
        let error = client.user_info(&app, &openid).await.unwrap_err();
        assert!(
            matches!(error, WechatError::BreakerOpen { errcode: 45009, .. }),
            "{error}"
        );
    }
    assert_eq!(
        sim.calls_to(api::USER_INFO),
        before,
        "no call while the breaker is open"
    );
    // Midnight in Beijing passes for both sides (the simulator runs on real time, so a whole day).
    clock.advance(Duration::hours(13));
    sim.sim.advance_clock(24 * 3600);
    client.user_info(&app, &openid).await.unwrap();
}

#[tokio::test]
async fn transient_failures_are_retried_and_hangs_time_out() {
    let sim = sim(100).await;
    let app = official_account(&sim);
    let client = client(&sim, None, Clock::system());
    let openid = followers_of(&client, &app).await[0].clone();
    sim.fault(api::USER_INFO, json!({ "errcode": -1, "count": 1 }))
        .await;
    client.user_info(&app, &openid).await.unwrap();

    sim.control(reqwest::Method::DELETE, "/_sim/faults", json!({}))
        .await;
    sim.fault(api::USER_INFO, json!({ "hang": true })).await;
    let started = std::time::Instant::now();
    let error = client.user_info(&app, &openid).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Retryable);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "bounded in time"
    );
}

#[tokio::test]
async fn sign_in_codes_are_exchanged_once_and_snapshot_users_are_flagged() {
    let sim = Simulator::spawn(SimConfig {
        people: 100,
        apps: 3,
        unbound_share: 0.0,
        kinds: KindMix {
            oa: 1.0,
            mp: 1.0,
            app: 0.0,
            web: 1.0,
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let app_of = |kind: &str| {
        let app = sim
            .sim
            .apps()
            .into_iter()
            .find(|a| a.kind == kind)
            .expect(kind);
        AppCredentials {
            appid: app.appid,
            secret: app.secret.into(),
        }
    };
    let (website, mini) = (app_of("WEBSITE"), app_of("MINI_PROGRAM"));
    let client = client(&sim, None, Clock::system());
    let mint = |appid: &str, body: Value| {
        let mut body = body;
        body["appid"] = json!(appid);
        sim.control(reqwest::Method::POST, "/_sim/codes", body)
    };

    let code = mint(
        &website.appid,
        json!({ "person": 1, "scope": "snsapi_userinfo" }),
    )
    .await;
    let code = code["code"].as_str().unwrap().to_owned();
    let token = client.sns_access_token(&website, &code).await.unwrap();
    assert!(!token.is_snapshot_user());
    assert!(token.unionid.is_some(), "snsapi_userinfo on a bound app");
    let profile = client
        .sns_userinfo(&token.access_token, &token.openid)
        .await
        .unwrap();
    assert_eq!(profile.openid, token.openid);
    assert_eq!(profile.unionid, token.unionid);
    let again = client.sns_access_token(&website, &code).await.unwrap_err();
    assert_eq!(again.errcode(), Some(40163));
    assert_eq!(again.class(), ErrorClass::BadInput);

    let base = mint(
        &website.appid,
        json!({ "person": 3, "scope": "snsapi_base" }),
    )
    .await;
    let token = client
        .sns_access_token(&website, base["code"].as_str().unwrap())
        .await
        .unwrap();
    let refused = client
        .sns_userinfo(&token.access_token, &token.openid)
        .await
        .unwrap_err();
    assert_eq!(refused.errcode(), Some(48001));
    assert_eq!(refused.class(), ErrorClass::Unauthorized);

    let snapshot = mint(&website.appid, json!({ "person": 2, "snapshot": true })).await;
    let token = client
        .sns_access_token(&website, snapshot["code"].as_str().unwrap())
        .await
        .unwrap();
    assert!(token.is_snapshot_user());

    let js = mint(&mini.appid, json!({ "person": 4 })).await;
    let session = client
        .jscode2session(&mini, js["code"].as_str().unwrap())
        .await
        .unwrap();
    assert!(!session.openid.is_empty() && session.unionid.is_some());
    assert!(
        !format!("{session:?}").contains(&session.session_key),
        "session keys print redacted"
    );
    let bad = client
        .jscode2session(&mini, "not-a-code")
        .await
        .unwrap_err();
    assert_eq!(bad.errcode(), Some(40029));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_waiting_on_a_failed_token_fetch_share_its_error() {
    let sim = sim(100).await;
    let app = official_account(&sim);
    let client = Arc::new(client(&sim, None, Clock::system()));
    sim.fault(
        api::STABLE_TOKEN,
        json!({ "errcode": 40164, "latency_ms": 200 }),
    )
    .await;
    let calls_made = (0..20).map(|_| {
        let (client, app) = (client.clone(), app.clone());
        tokio::spawn(async move { client.user_info(&app, "o_anyone").await })
    });
    for call in futures::future::join_all(calls_made).await {
        let error = call.unwrap().unwrap_err();
        assert_eq!(error.errcode(), Some(40164), "{error}");
    }
    assert_eq!(
        sim.calls_to(api::STABLE_TOKEN),
        1,
        "one fetch, its failure shared"
    );
}

#[tokio::test]
async fn transport_errors_never_carry_the_secret() {
    let app = AppCredentials {
        appid: "wx0000000000000001".to_owned(),
        secret: "do-not-log-this-secret".to_owned().into(),
    };
    let mut config = ClientConfig::new("http://127.0.0.1:1");
    config.token_endpoint = TokenEndpoint::Classic;
    let client = WechatClient::new(config, None, Clock::system()).unwrap();
    let error = client.access_token(&app).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Retryable);
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("do-not-log-this-secret"), "{shown}");
}

#[tokio::test]
async fn a_failed_token_is_fetched_again_after_its_hold_off_once_for_all_who_wait() {
    let sim = sim(100).await;
    let app = official_account(&sim);
    let clock = Clock::manual(chrono::Utc::now());
    let client = Arc::new(client(&sim, None, clock.clone()));
    sim.fault(
        api::STABLE_TOKEN,
        json!({ "errcode": 40164, "latency_ms": 200 }),
    )
    .await;
    let burst = |n: usize| {
        let calls_made = (0..n).map(|_| {
            let (client, app) = (client.clone(), app.clone());
            tokio::spawn(async move { client.user_info(&app, "o_anyone").await })
        });
        futures::future::join_all(calls_made)
    };
    for call in burst(10).await {
        assert_eq!(call.unwrap().unwrap_err().errcode(), Some(40164));
    }
    assert_eq!(sim.calls_to(api::STABLE_TOKEN), 1, "one fetch, shared");
    // Within the hold-off nobody tries again.
    clock.advance(Duration::seconds(9));
    for call in burst(5).await {
        assert_eq!(call.unwrap().unwrap_err().errcode(), Some(40164));
    }
    assert_eq!(sim.calls_to(api::STABLE_TOKEN), 1, "held off");
    // Past it, one new fetch, whose failure every caller that waited shares.
    clock.advance(Duration::seconds(2));
    for call in burst(10).await {
        assert_eq!(call.unwrap().unwrap_err().errcode(), Some(40164));
    }
    assert_eq!(sim.calls_to(api::STABLE_TOKEN), 2, "one more fetch");
}

/// A WeChat that cannot be reached is named, with the cause, and neither the
/// secret nor the URL that carried it shows: `.invalid` never resolves.
#[tokio::test]
async fn an_unreachable_wechat_is_named_with_the_cause() {
    let secret = "0123456789abcdef0123456789abcdef";
    let app = AppCredentials {
        appid: "wx0123456789abcdef".to_owned(),
        secret: secret.to_owned().into(),
    };
    for endpoint in [TokenEndpoint::Stable, TokenEndpoint::Classic] {
        let mut config = ClientConfig::new("http://unreachable.invalid/");
        config.token_endpoint = endpoint;
        let client = WechatClient::new(config, None, Clock::system()).unwrap();
        let error = client
            .user_info(&app, "o6_bmjrPTlm6_2sgVt7hMZOPfL2M")
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("WeChat unreachable at http://unreachable.invalid: "),
            "{endpoint:?}: {message}"
        );
        assert!(message.contains("dns error"), "the cause: {message}");
        for leak in [secret, "secret=", "appid=", "/cgi-bin", "?"] {
            assert!(!message.contains(leak), "{leak:?} in {message}");
        }
        assert!(matches!(error, WechatError::Transport { .. }), "{error:?}");
        assert_eq!(error.class(), ErrorClass::Retryable);
    }
}
