//! `POST /wechat/{appid}/callback`: WeChat's pushes, from the simulator's
//! pusher and signed here as WeChat signs them, over real HTTP, in plain,
//! compatible and safe modes; retries deduplicated (across instances on
//! PostgreSQL); key rotation; every kind of bad input refused with nothing
//! written.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use union360::clock::Clock;
use union360::simulator::{KindMix, SimApp, SimConfig};
use union360::wechat::callback::{
    MessageCrypto, encrypted_envelope_xml, event_xml, msg_signature, signature,
};

use crate::helpers::{Backend, SimControl, TestApp, spawn_app_in};

/// Two bound official accounts, every person following each by half.
fn world() -> SimConfig {
    SimConfig {
        seed: 11,
        people: 60,
        apps: 2,
        unbound_share: 0.0,
        kinds: KindMix::OFFICIAL_ACCOUNTS,
        follow_share: Some(0.5),
        ..SimConfig::default()
    }
}

/// A key no app has.
const STRANGER_KEY: &str = "BwwRFhsgJSovNDk+Q0hNUldcYWZrcHV6f4SJjpOYnaR";

/// Registers the simulator's official account `oa` with its callback token
/// and, when `aes` is set, its EncodingAESKey.
async fn register(app: &TestApp, oa: &SimApp, aes: bool) {
    app.data(
        "mutation($input: RegisterAppInput!) { registerApp(input: $input) { appid } }",
        json!({ "input": {
            "appid": oa.appid, "kind": "OFFICIAL_ACCOUNT", "name": oa.appid,
            "secret": oa.secret, "callbackToken": oa.token,
            "encodingAesKey": if aes { oa.aes_key.clone() } else { None },
        } }),
    )
    .await;
}

/// The two official accounts: the first registered for plain pushes (no
/// EncodingAESKey), the second for encrypted ones.
async fn start(backend: Backend) -> (TestApp, SimApp, SimApp) {
    let app = spawn_app_in(backend, Clock::system(), world(), |_| {}).await;
    let mut oas = app.sim.official_accounts();
    assert_eq!(oas.len(), 2);
    let (plain, safe) = (oas.remove(0), oas.remove(0));
    register(&app, &plain, false).await;
    register(&app, &safe, true).await;
    (app, plain, safe)
}

fn callback_url(app: &TestApp, appid: &str) -> String {
    format!("{}/wechat/{appid}/callback", app.address)
}

/// Has the simulator push `event` for person `person` of `oa` in `mode`
/// (`plain`, `compatible` or `safe`); returns its report after checking
/// the first try was answered `success`.
pub(crate) async fn sim_push(
    app: &TestApp,
    oa: &SimApp,
    person: u32,
    event: &str,
    event_key: Option<&str>,
    mode: &str,
) -> Value {
    let report = app
        .sim
        .control(
            reqwest::Method::POST,
            "/_sim/push",
            json!({
                "appid": oa.appid, "person": person, "event": event, "event_key": event_key,
                "target_url": callback_url(app, &oa.appid),
                "safe_mode": mode == "safe", "compatible_mode": mode == "compatible",
                "timeout_ms": 5000,
            }),
        )
        .await;
    let first = &report["attempts"][0];
    assert_eq!(first["outcome"], "ok", "{report:#}");
    assert_eq!(first["body"], "success", "{report:#}");
    report
}

/// The account as stored (no refresh).
async fn account(app: &TestApp, appid: &str, openid: &str) -> Value {
    app.data(
        "query($a: String!, $o: String!) { account(appid: $a, openid: $o, refresh: CACHE_ONLY) {
            following followedAt unfollowedAt followScene qrScene qrSceneStr unionid refreshedAt
        } }",
        json!({ "a": appid, "o": openid }),
    )
    .await["account"]
        .clone()
}

/// Waits until the account's profile was refreshed from WeChat.
async fn refreshed(app: &TestApp, appid: &str, openid: &str) -> Value {
    for _ in 0..200 {
        let account = account(app, appid, openid).await;
        if !account["refreshedAt"].is_null() {
            return account;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{appid}/{openid} was never refreshed after its push");
}

async fn count(app: &TestApp, table: &str) -> i64 {
    let db = app.state.db();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// A push WeChat would send for `oa`, signed at `timestamp`.
struct Signed {
    query: String,
    body: String,
}

/// `xml` signed with `token` in plain mode.
fn plain(token: &str, xml: &str, timestamp: i64, nonce: &str) -> Signed {
    let signature = signature(token, &timestamp.to_string(), nonce);
    Signed {
        query: format!("signature={signature}&timestamp={timestamp}&nonce={nonce}&openid=o"),
        body: xml.to_owned(),
    }
}

/// `encrypt` in a safe-mode envelope (`body`, when given, instead), signed
/// with `token`.
fn sealed(token: &str, encrypt: &str, body: Option<String>, timestamp: i64, nonce: &str) -> Signed {
    let ts = timestamp.to_string();
    let signature = signature(token, &ts, nonce);
    let msg_signature = msg_signature(token, &ts, nonce, encrypt);
    Signed {
        query: format!(
            "signature={signature}&timestamp={ts}&nonce={nonce}&openid=o&encrypt_type=aes&msg_signature={msg_signature}"
        ),
        body: body.unwrap_or_else(|| encrypted_envelope_xml("gh_x", encrypt)),
    }
}

/// `xml` sealed with `key` for `appid`, in safe mode.
fn safe(token: &str, key: &str, appid: &str, xml: &str, timestamp: i64, nonce: &str) -> Signed {
    let encrypt = MessageCrypto::new(key, appid).unwrap().encrypt(xml);
    sealed(token, &encrypt, None, timestamp, nonce)
}

async fn send(app: &TestApp, appid: &str, signed: &Signed) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}?{}", callback_url(app, appid), signed.query))
        .header("content-type", "text/xml")
        .body(signed.body.clone())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn event(openid: &str, at: i64, event: &str, key: Option<&str>) -> String {
    event_xml("gh_x", openid, at, event, key, None)
}

/// The openid of person `person` in `oa`, and whether they follow it.
async fn openid_of(app: &TestApp, oa: &SimApp, person: u32) -> (String, bool) {
    app.sim
        .person(person)
        .await
        .accounts
        .into_iter()
        .find(|(appid, _, _)| *appid == oa.appid)
        .map(|(_, openid, following)| (openid, following))
        .unwrap()
}

/// The first person who follows `oa` (or does not, with `following` false).
async fn someone(app: &TestApp, oa: &SimApp, following: bool, skip: usize) -> (u32, String) {
    let mut found = 0;
    for person in 0..60 {
        let (openid, follows) = openid_of(app, oa, person).await;
        if follows == following {
            if found == skip {
                return (person, openid);
            }
            found += 1;
        }
    }
    panic!("no such person");
}

async fn audience_followers(app: &TestApp, appid: &str) -> i64 {
    let data = app
        .data(
            "query($a: [String!]) { audience(appids: $a) { apps { followers } } }",
            json!({ "a": [appid] }),
        )
        .await;
    data["audience"]["apps"][0]["followers"].as_i64().unwrap()
}

on_each_backend!(pushes_in_each_mode_update_the_follow_and_link_the_person);
async fn pushes_in_each_mode_update_the_follow_and_link_the_person(backend: Backend) {
    let (app, plain_oa, safe_oa) = start(backend).await;

    // Plain mode, a follow through a parametric QR code: the account is
    // new, and its refresh, queued by the push, links it to its person.
    let (person, openid) = someone(&app, &plain_oa, false, 0).await;
    let report = sim_push(&app, &plain_oa, person, "subscribe", Some("7"), "plain").await;
    let followed_at = Utc
        .timestamp_opt(report["create_time"].as_i64().unwrap(), 0)
        .unwrap();
    let stored = refreshed(&app, &plain_oa.appid, &openid).await;
    assert_eq!(stored["following"], true, "{stored:#}");
    assert_eq!(stored["qrScene"], 7);
    assert_eq!(stored["followScene"], "ADD_SCENE_QR_CODE");
    assert_eq!(
        stored["followedAt"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap(),
        followed_at
    );
    let unionid = app.sim.person(person).await.unionid;
    assert_eq!(stored["unionid"], unionid.as_str());
    assert_eq!(audience_followers(&app, &plain_oa.appid).await, 1);

    // Safe mode, an unfollow, dated with the push's time; the audience
    // counts follow in the same transaction.
    let (person, openid) = someone(&app, &safe_oa, true, 0).await;
    sim_push(&app, &safe_oa, person, "subscribe", None, "safe").await;
    assert_eq!(
        account(&app, &safe_oa.appid, &openid).await["following"],
        true
    );
    assert_eq!(audience_followers(&app, &safe_oa.appid).await, 1);
    let report = sim_push(&app, &safe_oa, person, "unsubscribe", None, "safe").await;
    let stored = account(&app, &safe_oa.appid, &openid).await;
    assert_eq!(stored["following"], false, "{stored:#}");
    assert_eq!(
        stored["unfollowedAt"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap(),
        Utc.timestamp_opt(report["create_time"].as_i64().unwrap(), 0)
            .unwrap()
    );
    assert_eq!(audience_followers(&app, &safe_oa.appid).await, 0);

    // Compatible mode: the sealed copy is the one read; a string scene.
    let (person, openid) = someone(&app, &safe_oa, false, 1).await;
    sim_push(
        &app,
        &safe_oa,
        person,
        "subscribe",
        Some("spring"),
        "compatible",
    )
    .await;
    let stored = refreshed(&app, &safe_oa.appid, &openid).await;
    assert_eq!(stored["following"], true, "{stored:#}");
    assert_eq!(stored["qrSceneStr"], "spring");

    // Compatible mode to an app with no EncodingAESKey yet (the console
    // changed first): read in the clear, as in plain mode.
    let (person, openid) = someone(&app, &plain_oa, false, 1).await;
    sim_push(&app, &plain_oa, person, "subscribe", None, "compatible").await;
    assert_eq!(
        account(&app, &plain_oa.appid, &openid).await["following"],
        true
    );

    // A follower scanning a QR code: known to follow.
    let (person, openid) = someone(&app, &safe_oa, true, 2).await;
    sim_push(&app, &safe_oa, person, "SCAN", Some("9"), "safe").await;
    assert_eq!(
        account(&app, &safe_oa.appid, &openid).await["following"],
        true
    );
    assert_eq!(audience_followers(&app, &safe_oa.appid).await, 2);
    assert_eq!(count(&app, "callback_receipt").await, 6);
}

on_each_backend!(a_retried_push_changes_nothing_twice);
async fn a_retried_push_changes_nothing_twice(backend: Backend) {
    let (app, _, oa) = start(backend).await;
    let (token, key) = (oa.token.clone().unwrap(), oa.aes_key.clone().unwrap());
    let openid = "oRetriedPush000000000000001";
    let t0 = now();
    let push = |xml: &str, nonce: &str| safe(&token, &key, &oa.appid, xml, now(), nonce);
    let follow = event(openid, t0, "subscribe", None);
    assert_eq!(
        send(&app, &oa.appid, &push(&follow, "1")).await,
        (200, "success".into())
    );
    // An unfollow in the same second (another key), then WeChat's retry of
    // the follow, signed anew: the retry is known and changes nothing.
    let unfollow = event(openid, t0, "unsubscribe", None);
    assert_eq!(send(&app, &oa.appid, &push(&unfollow, "2")).await.0, 200);
    assert_eq!(send(&app, &oa.appid, &push(&follow, "3")).await.0, 200);
    assert_eq!(account(&app, &oa.appid, openid).await["following"], false);
    assert_eq!(count(&app, "callback_receipt").await, 2);

    // A new push older than the stored unfollow changes nothing either.
    let late = event(openid, t0 - 10, "subscribe", Some("qrscene_5"));
    assert_eq!(send(&app, &oa.appid, &push(&late, "4")).await.0, 200);
    let stored = account(&app, &oa.appid, openid).await;
    assert_eq!(stored["following"], false);
    assert!(stored["qrScene"].is_null());

    // The same push many times at once: one receipt, one change.
    let again = event(openid, t0 + 1, "subscribe", None);
    let sends = (0..8).map(|i| {
        let signed = push(&again, &format!("n{i}"));
        let app = &app;
        let appid = oa.appid.clone();
        async move { send(app, &appid, &signed).await }
    });
    for answer in futures::future::join_all(sends).await {
        assert_eq!(answer, (200, "success".into()));
    }
    assert_eq!(account(&app, &oa.appid, openid).await["following"], true);
    assert_eq!(count(&app, "callback_receipt").await, 4);
}

on_postgres!(two_instances_apply_a_push_once);
async fn two_instances_apply_a_push_once(backend: Backend) {
    let (first, _, oa) = start(backend).await;
    let second = first.another_instance().await;
    let (token, key) = (oa.token.clone().unwrap(), oa.aes_key.clone().unwrap());
    let openid = "oTwoInstances00000000000001";
    let t0 = now();
    let push = |xml: &str, nonce: &str| safe(&token, &key, &oa.appid, xml, now(), nonce);
    let follow = event(openid, t0, "subscribe", None);
    let unfollow = event(openid, t0, "unsubscribe", None);
    assert_eq!(send(&first, &oa.appid, &push(&follow, "1")).await.0, 200);
    assert_eq!(send(&second, &oa.appid, &push(&unfollow, "2")).await.0, 200);
    // WeChat's retries of the follow reach both instances at once: the
    // receipt the first wrote keeps both from following again.
    let retries = (0..6).map(|i| {
        let signed = push(&follow, &format!("r{i}"));
        let target = if i % 2 == 0 { &first } else { &second };
        let appid = oa.appid.clone();
        async move { send(target, &appid, &signed).await }
    });
    for answer in futures::future::join_all(retries).await {
        assert_eq!(answer, (200, "success".into()));
    }
    assert_eq!(account(&first, &oa.appid, openid).await["following"], false);
    assert_eq!(count(&first, "callback_receipt").await, 2);

    // A new push sent to both at once is applied once.
    let again = event(openid, t0 + 1, "subscribe", Some("qrscene_3"));
    let both = [&first, &second].map(|target| {
        let signed = push(&again, "b");
        let appid = oa.appid.clone();
        async move { send(target, &appid, &signed).await }
    });
    for answer in futures::future::join_all(both).await {
        assert_eq!(answer, (200, "success".into()));
    }
    assert_eq!(count(&first, "callback_receipt").await, 3);
    let db = first.state.db();
    let changes = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM account_history WHERE field = 'qr_scene'".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(changes, 1);
}

on_each_backend!(the_previous_aes_key_opens_pushes_after_a_change);
async fn the_previous_aes_key_opens_pushes_after_a_change(backend: Backend) {
    let (app, _, oa) = start(backend).await;
    let token = oa.token.clone().unwrap();
    let old_key = oa.aes_key.clone().unwrap();
    let new_key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    let rotate = "mutation($a: String!, $k: String!) { rotateEncodingAesKey(appid: $a, encodingAesKey: $k) { appid callbackConfigured } }";

    // Set here first: pushes WeChat still seals with the old key open.
    let rotated = app
        .data(rotate, json!({ "a": oa.appid, "k": new_key }))
        .await;
    assert_eq!(rotated["rotateEncodingAesKey"]["callbackConfigured"], true);
    let (person, openid) = someone(&app, &oa, false, 0).await;
    sim_push(&app, &oa, person, "subscribe", None, "safe").await;
    assert_eq!(account(&app, &oa.appid, &openid).await["following"], true);
    // Then in the console: the new key opens them.
    app.sim
        .control(
            reqwest::Method::POST,
            &format!("/_sim/apps/{}/aes_key", oa.appid),
            json!({ "aes_key": new_key }),
        )
        .await;
    sim_push(&app, &oa, person, "unsubscribe", None, "safe").await;
    assert_eq!(account(&app, &oa.appid, &openid).await["following"], false);

    // Another change forgets the oldest key.
    app.data(rotate, json!({ "a": oa.appid, "k": STRANGER_KEY }))
        .await;
    let xml = event(&openid, now(), "subscribe", None);
    let (status, body) = send(
        &app,
        &oa.appid,
        &safe(&token, &old_key, &oa.appid, &xml, now(), "1"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let xml = event(&openid, now() + 1, "subscribe", None);
    let (status, _) = send(
        &app,
        &oa.appid,
        &safe(&token, new_key, &oa.appid, &xml, now(), "2"),
    )
    .await;
    assert_eq!(status, 200);

    // The current key again, a key of the wrong form, an app that is no
    // official account, an unknown app: refused.
    let refused = app
        .graphql(rotate, json!({ "a": oa.appid, "k": STRANGER_KEY }))
        .await;
    assert_eq!(
        crate::helpers::codes(&refused),
        ["BAD_USER_INPUT"],
        "{refused}"
    );
    let refused = app
        .graphql(rotate, json!({ "a": oa.appid, "k": "short" }))
        .await;
    assert_eq!(
        crate::helpers::codes(&refused),
        ["BAD_USER_INPUT"],
        "{refused}"
    );
    app.register_app("wx00000000000000b1", "MINI_PROGRAM").await;
    let refused = app
        .graphql(rotate, json!({ "a": "wx00000000000000b1", "k": new_key }))
        .await;
    assert_eq!(
        crate::helpers::codes(&refused),
        ["BAD_USER_INPUT"],
        "{refused}"
    );
    let refused = app
        .graphql(rotate, json!({ "a": "wx00000000000000b2", "k": new_key }))
        .await;
    assert_eq!(crate::helpers::codes(&refused), ["NOT_FOUND"], "{refused}");
}

on_each_backend!(bad_pushes_are_refused_and_write_nothing);
async fn bad_pushes_are_refused_and_write_nothing(backend: Backend) {
    let (app, plain_oa, safe_oa) = start(backend).await;
    app.register_app("wx00000000000000b1", "MINI_PROGRAM").await;
    let (p_token, s_token) = (
        plain_oa.token.clone().unwrap(),
        safe_oa.token.clone().unwrap(),
    );
    let key = safe_oa.aes_key.clone().unwrap();
    let (p, s) = (plain_oa.appid.as_str(), safe_oa.appid.as_str());
    let openid = "oBadInput000000000000000001";
    let t = now();
    let good = event(openid, t, "subscribe", None);
    let good_plain = plain(&p_token, &good, t, "1");
    let good_safe = safe(&s_token, &key, s, &good, t, "1");

    let with_query = |signed: &Signed, from: &str, to: &str| Signed {
        query: signed.query.replace(from, to),
        body: signed.body.clone(),
    };
    let with_body = |signed: &Signed, body: String| Signed {
        query: signed.query.clone(),
        body,
    };
    let plain_body = |xml: &str| plain(&p_token, xml, t, "1");
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><xml><ToUserName>gh</ToUserName><FromUserName>&c;</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>";
    let external = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><ToUserName>gh</ToUserName><FromUserName>&x;</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>";
    let declared_only = format!("<!DOCTYPE xml>{good}");
    let for_another_app = MessageCrypto::new(&key, "wx00000000000000ff")
        .unwrap()
        .encrypt(&good);
    let stranger = MessageCrypto::new(STRANGER_KEY, s).unwrap().encrypt(&good);
    let cases: Vec<(&str, &str, Signed, u16)> = vec![
        ("unknown app", "wx00000000000000ff", plain_body(&good), 404),
        ("not an appid", "not-an-appid", plain_body(&good), 404),
        (
            "no callback token",
            "wx00000000000000b1",
            plain_body(&good),
            404,
        ),
        (
            "no signature",
            p,
            with_query(&good_plain, "signature=", "sig="),
            400,
        ),
        ("wrong signature", p, plain(&s_token, &good, t, "1"), 401),
        (
            "signed for another nonce",
            p,
            with_query(&good_plain, "nonce=1", "nonce=2"),
            401,
        ),
        (
            "no timestamp",
            p,
            with_query(&good_plain, "timestamp=", "ts="),
            400,
        ),
        ("stale", p, plain(&p_token, &good, t - 400, "1"), 401),
        (
            "from the future",
            p,
            plain(&p_token, &good, t + 400, "1"),
            401,
        ),
        (
            "plain to an app with a key",
            s,
            plain(&s_token, &good, t, "1"),
            401,
        ),
        (
            "unknown encrypt_type",
            s,
            with_query(&good_safe, "encrypt_type=aes", "encrypt_type=des"),
            400,
        ),
        (
            "no msg_signature",
            s,
            with_query(&good_safe, "msg_signature=", "msg_sig="),
            400,
        ),
        (
            "wrong msg_signature",
            s,
            with_body(&good_safe, encrypted_envelope_xml("gh", &stranger)),
            401,
        ),
        (
            "sealed for another app",
            s,
            sealed(&s_token, &for_another_app, None, t, "1"),
            400,
        ),
        (
            "sealed with another key",
            s,
            sealed(&s_token, &stranger, None, t, "1"),
            400,
        ),
        ("not base64", s, sealed(&s_token, "!!!!", None, t, "1"), 400),
        (
            "not AES blocks",
            s,
            sealed(&s_token, "AAAA", None, t, "1"),
            400,
        ),
        (
            "encrypted to an app without a key",
            p,
            safe(&p_token, &key, p, &good, t, "1"),
            400,
        ),
        (
            "no envelope",
            s,
            sealed(&s_token, "x", Some("<xml></xml>".into()), t, "1"),
            400,
        ),
        ("not XML", p, plain_body("subscribe please"), 400),
        (
            "unclosed",
            p,
            plain_body("<xml><FromUserName>o</FromUserName>"),
            400,
        ),
        (
            "another root",
            p,
            plain_body(&good.replace("xml>", "doc>")),
            400,
        ),
        (
            "no FromUserName",
            p,
            plain_body(&good.replace("FromUserName", "Sender")),
            400,
        ),
        (
            "control characters in FromUserName",
            p,
            plain_body(&event("o\u{1}x", t, "subscribe", None)),
            400,
        ),
        (
            "CreateTime not a number",
            p,
            plain_body(&good.replace(&format!(">{t}<"), ">soon<")),
            400,
        ),
        ("entity expansion", p, plain_body(bomb), 400),
        ("external entity", p, plain_body(external), 400),
        ("a DOCTYPE", p, plain_body(&declared_only), 400),
        (
            "repeated element",
            p,
            plain_body(&good.replace("</xml>", "<Event>unsubscribe</Event></xml>")),
            400,
        ),
        (
            "over 64 KiB",
            p,
            plain_body(&good.replace(
                "</xml>",
                &format!("<Pad>{}</Pad></xml>", "x".repeat(70_000)),
            )),
            413,
        ),
        (
            "CreateTime from the future",
            p,
            plain_body(&event(openid, t + 400, "subscribe", None)),
            400,
        ),
        (
            "a QR scene over 64 characters",
            p,
            plain_body(&event(
                openid,
                t,
                "subscribe",
                Some(&format!("qrscene_{}", "9".repeat(65))),
            )),
            400,
        ),
        (
            "inside the safe envelope, not XML",
            s,
            safe(&s_token, &key, s, "subscribe please", t, "1"),
            400,
        ),
    ];
    for (what, appid, signed, expected) in &cases {
        let (status, body) = send(&app, appid, signed).await;
        assert_eq!(status, *expected, "{what}: {body}");
        assert!(!body.is_empty() && body != "success", "{what}: {body}");
    }
    let not_utf8 = reqwest::Client::new()
        .post(format!("{}?{}", callback_url(&app, p), good_plain.query))
        .body(vec![0xff, 0xfe, b'<'])
        .send()
        .await
        .unwrap();
    assert_eq!(not_utf8.status().as_u16(), 400);

    // Events and messages that change no account: acknowledged, ignored.
    let click = event(openid, t, "CLICK", Some("menu_1"));
    let text = good
        .replace("<MsgType><![CDATA[event]]></MsgType>", "<MsgType><![CDATA[text]]></MsgType><MsgId>1234567890123456</MsgId><Content><![CDATA[hello]]></Content>");
    for ignored in [click, text] {
        assert_eq!(
            send(&app, s, &safe(&s_token, &key, s, &ignored, t, "1")).await,
            (200, "success".into())
        );
    }

    assert_eq!(count(&app, "callback_receipt").await, 0);
    assert_eq!(count(&app, "account").await, 0);
    // And the good ones go through.
    assert_eq!(send(&app, p, &good_plain).await, (200, "success".into()));
    assert_eq!(send(&app, s, &good_safe).await, (200, "success".into()));
    assert_eq!(count(&app, "account").await, 2);
}

on_each_backend!(pushes_arriving_out_of_order_leave_the_newest);
async fn pushes_arriving_out_of_order_leave_the_newest(backend: Backend) {
    let (app, _, oa) = start(backend).await;
    let (token, key) = (oa.token.clone().unwrap(), oa.aes_key.clone().unwrap());
    let t0 = now() - 100;
    // Unfollow, follow again, unfollow: one second apart, in every order.
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for (n, order) in orders.iter().enumerate() {
        let openid = format!("oOutOfOrder0000000000000000{n}");
        let events = [
            event(&openid, t0 + 1, "unsubscribe", None),
            event(&openid, t0 + 2, "subscribe", None),
            event(&openid, t0 + 3, "unsubscribe", None),
        ];
        for (i, &which) in order.iter().enumerate() {
            let signed = safe(
                &token,
                &key,
                &oa.appid,
                &events[which],
                now(),
                &format!("{n}{i}"),
            );
            assert_eq!(
                send(&app, &oa.appid, &signed).await,
                (200, "success".into())
            );
        }
        let stored = account(&app, &oa.appid, &openid).await;
        assert_eq!(stored["following"], false, "order {order:?}: {stored:#}");
        assert_eq!(
            stored["unfollowedAt"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<Utc>>()
                .unwrap(),
            Utc.timestamp_opt(t0 + 3, 0).unwrap(),
            "order {order:?}"
        );
    }
}

on_each_backend!(a_follow_links_an_account_fetched_while_not_following);
async fn a_follow_links_an_account_fetched_while_not_following(backend: Backend) {
    let (app, _, oa) = start(backend).await;
    let (person, openid) = someone(&app, &oa, false, 3).await;
    // Known, and fetched while not following: no UnionID.
    sim_push(&app, &oa, person, "unsubscribe", None, "safe").await;
    let fetched = app
        .data(
            "query($a: String!, $o: String!) { account(appid: $a, openid: $o, refresh: FORCE) { unionid refreshedAt } }",
            json!({ "a": oa.appid, "o": openid }),
        )
        .await;
    assert!(fetched["account"]["unionid"].is_null(), "{fetched:#}");
    assert!(fetched["account"]["refreshedAt"].is_string(), "{fetched:#}");
    // Following now: the fresh profile is fetched again, for the UnionID.
    sim_push(&app, &oa, person, "subscribe", None, "safe").await;
    let unionid = app.sim.person(person).await.unionid;
    for _ in 0..200 {
        if account(&app, &oa.appid, &openid).await["unionid"] == unionid.as_str() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the follower was never linked");
}
