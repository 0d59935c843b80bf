//! `accountEvents` over `graphql-transport-ws` at `/graphql/ws`, with a
//! real WebSocket client: the events of WeChat pushes, of a follower sync,
//! of a sign-in and of an import reach a subscriber; a key without `pii`
//! gets events without personal fields; two instances on PostgreSQL see
//! each other's events; every rule of the protocol is kept; a subscriber
//! that does not keep up is disconnected.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use union360::clock::Clock;
use union360::keys::{Scope, Scopes};
use union360::simulator::{KindMix, SimConfig};

use crate::helpers::{Backend, SimControl, TestApp, create_key, spawn_app_in, spawn_app_with};

/// Long enough for anything a test waits for here.
const WAIT: Duration = Duration::from_secs(20);

const EVENTS: &str = "subscription Events($appids: [String!], $kinds: [AccountEventKind!]) {
    accountEvents(appids: $appids, kinds: $kinds) {
        kind appid openid
        account { openid following unionid nickname person { unionid } }
        syncJob { state listed }
    } }";

/// A `graphql-transport-ws` client, and the text of the last message.
struct Client(WebSocketStream<MaybeTlsStream<TcpStream>>, String);

/// What the server sent: a message, or the connection's close.
#[derive(Debug)]
enum Received {
    Message(Value),
    Closed(u16, String),
}

impl Client {
    /// Connects to `app`'s `/graphql/ws` with the protocol.
    async fn connect(app: &TestApp) -> Self {
        Self::connect_to(&app.address).await
    }

    /// Connects to `/graphql/ws` of the server at `address`.
    async fn connect_to(address: &str) -> Self {
        let url = format!("{}/graphql/ws", address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "graphql-transport-ws"
        );
        Self(socket, String::new())
    }

    /// Connects and initialises with `key`; fails unless acknowledged.
    async fn ready(app: &TestApp, key: &str) -> Self {
        Self::ready_at(&app.address, key).await
    }

    /// Like [`Self::ready`], to the server at `address`.
    async fn ready_at(address: &str, key: &str) -> Self {
        let mut client = Self::connect_to(address).await;
        client
            .send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {key}") } }))
            .await;
        let ack = client.message().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        client
    }

    async fn send(&mut self, message: Value) {
        self.0
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    /// The next thing the server sends.
    async fn receive(&mut self) -> Received {
        loop {
            let frame = tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("the server sent something in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    self.1 = text.to_string();
                    return Received::Message(serde_json::from_str(&text).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Received::Closed(code, reason);
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Received::Closed(1006, e.to_string()),
                None => return Received::Closed(1006, "ended".to_owned()),
            }
        }
    }

    /// The next message; fails on a close.
    async fn message(&mut self) -> Value {
        match self.receive().await {
            Received::Message(message) => message,
            closed => panic!("expected a message, got {closed:?}"),
        }
    }

    /// The close the server sends next (messages before it are skipped).
    async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Received::Closed(code, reason) = self.receive().await {
                return (code, reason);
            }
        }
    }

    /// The close the server sends within `within` (messages before it are
    /// skipped), if it does.
    async fn closed_within(&mut self, within: Duration) -> Option<(u16, String)> {
        tokio::time::timeout(within, self.closed()).await.ok()
    }

    /// Subscribes `id` to `EVENTS` with `variables`.
    async fn subscribe(&mut self, id: &str, variables: Value) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": EVENTS, "variables": variables } }))
            .await;
    }

    /// The next event of subscription `id` (those of others are skipped).
    async fn event(&mut self, id: &str) -> Value {
        loop {
            let message = self.message().await;
            if message["id"] != id && message["type"] == "next" {
                continue;
            }
            assert_eq!(message["type"], "next", "{message}");
            assert_eq!(message["id"], id, "{message}");
            return message["payload"].clone();
        }
    }
}

/// Waits until `app` has `n` subscribers watching its events (and, on
/// PostgreSQL, listens to the database).
async fn watching(app: &TestApp, n: usize) {
    assert!(app.state.events().ready(WAIT).await, "listening for events");
    for _ in 0..400 {
        if app.state.events().watchers() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{n} subscribers never watched");
}

/// Waits until `app` has exactly `n` subscribers watching its events.
async fn watchers_exactly(app: &TestApp, n: usize) {
    for _ in 0..400 {
        if app.state.events().watchers() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{} subscribers watch, not {n}",
        app.state.events().watchers()
    );
}

/// An official account, a website and a mini program, all bound, every
/// person following the official account.
fn world() -> SimConfig {
    SimConfig {
        seed: 21,
        people: 30,
        apps: 6,
        unbound_share: 0.0,
        kinds: KindMix {
            oa: 0.5,
            mp: 0.0,
            app: 0.0,
            web: 0.5,
        },
        follow_share: Some(1.0),
        ..SimConfig::default()
    }
}

/// The server with the simulator's first official account (callback token
/// and EncodingAESKey registered) and first website.
async fn start(backend: Backend) -> (TestApp, union360::simulator::SimApp, String) {
    let app = spawn_app_in(backend, Clock::system(), world(), |_| {}).await;
    let oa = app.sim.official_accounts().remove(0);
    app.data(
        "mutation($input: RegisterAppInput!) { registerApp(input: $input) { appid } }",
        json!({ "input": {
            "appid": oa.appid, "kind": "OFFICIAL_ACCOUNT", "name": "news",
            "secret": oa.secret, "callbackToken": oa.token, "encodingAesKey": oa.aes_key,
        } }),
    )
    .await;
    let web = app
        .sim
        .sim
        .apps()
        .into_iter()
        .find(|a| a.kind == "WEBSITE")
        .expect("a website");
    app.register(&web.appid, "WEBSITE", &web.secret).await;
    (app, oa, web.appid)
}

on_each_backend!(a_pushed_follow_reaches_a_subscriber_and_the_statistics);
async fn a_pushed_follow_reaches_a_subscriber_and_the_statistics(backend: Backend) {
    let (app, oa, _) = start(backend).await;
    let mut client = Client::ready(&app, &app.key).await;
    client.subscribe("1", json!({ "appids": [oa.appid] })).await;
    watching(&app, 1).await;
    let report = crate::push::sim_push(&app, &oa, 3, "subscribe", None, "safe").await;
    let openid = report["openid"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!("the push report names the openid: {report:#}");
        });
    let event = client.event("1").await;
    assert!(event.get("errors").is_none(), "{event:#}");
    let event = &event["data"]["accountEvents"];
    assert_eq!(event["kind"], "FOLLOWED");
    assert_eq!(event["appid"], oa.appid.as_str());
    assert_eq!(event["openid"], openid.as_str());
    assert_eq!(event["account"]["following"], true);
    assert!(event["syncJob"].is_null());
    // Keys in the order the subscription asked for them.
    let text = &client.1;
    let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
    assert!(
        at("kind") < at("appid")
            && at("appid") < at("openid")
            && at("openid") < at("account")
            && at("account") < at("syncJob"),
        "{text}"
    );
    // The statistics follow at once.
    let audience = app
        .data(
            "query($a: [String!]) { audience(appids: $a) { apps { appid followers } } }",
            json!({ "a": [oa.appid] }),
        )
        .await;
    assert_eq!(
        audience["audience"]["apps"][0]["followers"], 1,
        "{audience:#}"
    );
}

on_each_backend!(a_sync_and_a_sign_in_reach_a_subscriber);
async fn a_sync_and_a_sign_in_reach_a_subscriber(backend: Backend) {
    let (app, oa, web) = start(backend).await;
    let followers = app
        .sim
        .sim
        .apps()
        .into_iter()
        .find(|a| a.appid == oa.appid)
        .map(|_| 30)
        .unwrap();
    let mut client = Client::ready(&app, &app.key).await;
    client
        .subscribe("sync", json!({ "appids": [oa.appid] }))
        .await;
    client
        .subscribe("signin", json!({ "appids": [web], "kinds": ["LINKED"] }))
        .await;
    watching(&app, 2).await;
    let job = app
        .data(
            "mutation($a: String!) { startFollowerSync(appid: $a) { id } }",
            json!({ "a": oa.appid }),
        )
        .await;
    assert!(job["startFollowerSync"]["id"].is_string(), "{job:#}");
    let (mut followed, mut linked, mut done) = (0, 0, false);
    while !done {
        let event = client.event("sync").await;
        let event = &event["data"]["accountEvents"];
        match event["kind"].as_str().unwrap() {
            "FOLLOWED" => followed += 1,
            "LINKED" => {
                linked += 1;
                assert!(
                    event["account"]["person"]["unionid"].is_string(),
                    "{event:#}"
                );
            }
            "PROFILE_CHANGED" => {}
            "SYNC_PROGRESS" => {
                done = event["syncJob"]["state"] == "SUCCEEDED";
            }
            other => panic!("unexpected {other}: {event:#}"),
        }
    }
    assert_eq!(followed, followers);
    assert_eq!(linked, followers);

    let person = app.sim.person(4).await;
    let minted = app
        .sim
        .control(
            reqwest::Method::POST,
            "/_sim/codes",
            json!({ "appid": web, "person": 4 }),
        )
        .await;
    let signed = app
        .data(
            "mutation($a: String!, $c: String!) { signIn(appid: $a, code: $c) { account { openid } } }",
            json!({ "a": web, "c": minted["code"] }),
        )
        .await;
    let event = client.event("signin").await;
    let event = &event["data"]["accountEvents"];
    assert_eq!(event["kind"], "LINKED");
    assert_eq!(event["openid"], signed["signIn"]["account"]["openid"]);
    assert_eq!(
        event["account"]["person"]["unionid"],
        person.unionid.as_str()
    );
}

on_each_backend!(a_key_without_pii_gets_events_without_personal_fields);
async fn a_key_without_pii_gets_events_without_personal_fields(backend: Backend) {
    let (app, oa, _) = start(backend).await;
    let key = create_key(&app.state, "no pii", Scopes::from_iter([Scope::Read])).await;
    let mut client = Client::ready(&app, &key).await;
    client.subscribe("1", json!({})).await;
    watching(&app, 1).await;
    app.upsert(
        json!([{ "appid": oa.appid, "openid": "oNoPii000000000000000000001",
        "nickname": "Ming", "following": true }]),
    )
    .await;
    let kinds: Vec<Value> = vec![client.event("1").await, client.event("1").await];
    for payload in &kinds {
        let event = &payload["data"]["accountEvents"];
        assert_eq!(event["openid"], "oNoPii000000000000000000001");
        assert_eq!(event["account"]["following"], true);
        assert!(event["account"]["nickname"].is_null(), "{payload:#}");
        let errors = payload["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1, "{payload:#}");
        assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN");
        assert_eq!(
            errors[0]["path"],
            json!(["accountEvents", "account", "nickname"])
        );
    }
    let mut seen: Vec<&str> = kinds
        .iter()
        .map(|p| p["data"]["accountEvents"]["kind"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, ["FOLLOWED", "PROFILE_CHANGED"]);
    // A key without `read` cannot subscribe.
    let stats = create_key(&app.state, "stats only", Scopes::from_iter([Scope::Stats])).await;
    let mut client = Client::ready(&app, &stats).await;
    client.subscribe("1", json!({})).await;
    let refused = client.message().await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        "FORBIDDEN"
    );
}

on_each_backend!(each_event_sees_the_apps_as_they_are);
/// A subscription lives long: each event reads the apps anew, so a
/// setting changed since the subscription began shows in the next event.
async fn each_event_sees_the_apps_as_they_are(backend: Backend) {
    let (app, oa, _) = start(backend).await;
    let mut client = Client::ready(&app, &app.key).await;
    let query = "subscription { accountEvents(kinds: [FOLLOWED]) {
        openid account { app { appid freshnessTtlSeconds } } } }";
    client
        .send(json!({ "type": "subscribe", "id": "1", "payload": { "query": query } }))
        .await;
    watching(&app, 1).await;
    let follow = |n: u32| {
        json!([{ "appid": oa.appid, "following": true,
        "openid": format!("oApps{n:022}") }])
    };
    let ttl = |payload: &Value| payload["data"]["accountEvents"]["account"]["app"].clone();
    app.upsert(follow(1)).await;
    let first = client.event("1").await;
    assert_eq!(
        ttl(&first),
        json!({ "appid": oa.appid, "freshnessTtlSeconds": null }),
        "{first:#}"
    );
    app.data(
        "mutation($appid: String!) { setFreshnessTtl(appid: $appid, seconds: 3600) { appid } }",
        json!({ "appid": oa.appid }),
    )
    .await;
    app.upsert(follow(2)).await;
    let second = client.event("1").await;
    assert_eq!(
        ttl(&second),
        json!({ "appid": oa.appid, "freshnessTtlSeconds": 3600 }),
        "{second:#}"
    );
}

on_postgres!(two_instances_see_each_others_events);
async fn two_instances_see_each_others_events(backend: Backend) {
    let (first, oa, _) = start(backend).await;
    let second = first.another_instance().await;
    let mut on_first = Client::ready(&first, &first.key).await;
    let mut on_second = Client::ready(&second, &second.key).await;
    on_first
        .subscribe("1", json!({ "kinds": ["FOLLOWED"] }))
        .await;
    on_second
        .subscribe("1", json!({ "kinds": ["FOLLOWED"] }))
        .await;
    watching(&first, 1).await;
    watching(&second, 1).await;
    first
        .upsert(json!([{ "appid": oa.appid, "openid": "oFirst00000000000000000000001", "following": true }]))
        .await;
    second
        .upsert(json!([{ "appid": oa.appid, "openid": "oSecond0000000000000000000001", "following": true }]))
        .await;
    for client in [&mut on_first, &mut on_second] {
        let mut seen = vec![
            client.event("1").await["data"]["accountEvents"]["openid"].clone(),
            client.event("1").await["data"]["accountEvents"]["openid"].clone(),
        ];
        seen.sort_by_key(|v| v.to_string());
        assert_eq!(
            seen,
            [
                json!("oFirst00000000000000000000001"),
                json!("oSecond0000000000000000000001")
            ]
        );
    }
}

on_each_backend!(a_subscriber_that_falls_behind_is_disconnected);
async fn a_subscriber_that_falls_behind_is_disconnected(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.server.subscriptions.events_buffer = 1).await;
    let appids = app.register_official_accounts().await;
    let mut client = Client::ready(&app, &app.key).await;
    client.subscribe("1", json!({})).await;
    watching(&app, 1).await;
    // Commits of 1,000 follows: many batches at once, and each event reads
    // its account as it is delivered, so the subscriber falls behind a
    // buffer of one batch (on PostgreSQL the batches arrive one by one, and
    // a first commit is sometimes kept up with: more follow).
    let mut closed = None;
    for round in 0..10 {
        let rows: Vec<Value> = (0..1_000)
            .map(|i| json!({ "appid": appids[0], "openid": format!("oBehind{round}x{i:018}"), "following": true }))
            .collect();
        app.upsert(Value::Array(rows)).await;
        closed = client.closed_within(Duration::from_secs(3)).await;
        if closed.is_some() {
            break;
        }
    }
    let (code, reason) = closed.expect("the subscriber was disconnected");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("too slow"), "{reason}");
    // The server goes on serving others.
    let mut again = Client::ready(&app, &app.key).await;
    again.send(json!({ "type": "ping" })).await;
    assert_eq!(again.message().await["type"], "pong");
}

on_each_backend!(the_protocol_rules_are_kept);
async fn the_protocol_rules_are_kept(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.server.subscriptions.init_timeout_secs = 1;
        s.server.subscriptions.max_subscriptions = 2;
    })
    .await;
    let appids = app.register_official_accounts().await;

    // Without the subprotocol: refused before the upgrade.
    let url = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1));
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400)
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    // A plain GET is told what the endpoint is.
    let plain = app
        .client
        .get(format!("{}/graphql/ws", app.address))
        .send()
        .await
        .unwrap();
    assert!(plain.status().is_client_error());

    // No connection_init in time.
    let mut client = Client::connect(&app).await;
    assert_eq!(client.closed().await.0, 4408);
    // A bad key, and no key.
    let mut client = Client::connect(&app).await;
    client
        .send(json!({ "type": "connection_init", "payload": { "Authorization": "Bearer u360_nope" } }))
        .await;
    assert_eq!(client.closed().await.0, 4403);
    let mut client = Client::connect(&app).await;
    client.send(json!({ "type": "connection_init" })).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, 4403);
    assert!(reason.contains("Authorization"), "{reason}");
    // Subscribing before the acknowledgement.
    let mut client = Client::connect(&app).await;
    client.subscribe("1", json!({})).await;
    assert_eq!(client.closed().await.0, 4401);
    // Not a message of the protocol.
    let mut client = Client::ready(&app, &app.key).await;
    client.0.send(Message::Text("{".into())).await.unwrap();
    assert_eq!(client.closed().await.0, 4400);
    let mut client = Client::ready(&app, &app.key).await;
    client.send(json!({ "type": "start", "id": "1" })).await;
    assert_eq!(client.closed().await.0, 4400);
    // A second connection_init.
    let mut client = Client::ready(&app, &app.key).await;
    client
        .send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", app.key) } }))
        .await;
    assert_eq!(client.closed().await.0, 4429);
    // An id in use.
    let mut client = Client::ready(&app, &app.key).await;
    client.subscribe("same", json!({})).await;
    client.subscribe("same", json!({})).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, 4409);
    assert!(reason.contains("same"), "{reason}");

    let mut client = Client::ready(&app, &app.key).await;
    // Ping, pong.
    client
        .send(json!({ "type": "ping", "payload": { "n": 1 } }))
        .await;
    assert_eq!(
        client.message().await,
        json!({ "type": "pong", "payload": { "n": 1 } })
    );
    // A query is not a subscription.
    client
        .send(
            json!({ "type": "subscribe", "id": "q", "payload": { "query": "{ apps { appid } }" } }),
        )
        .await;
    let error = client.message().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "q");
    assert_eq!(error["payload"][0]["extensions"]["code"], "BAD_REQUEST");
    // A document that does not validate, or a variable of the wrong type.
    client
        .send(json!({ "type": "subscribe", "id": "v", "payload": { "query": "subscription { accountEvents { nope } }" } }))
        .await;
    let error = client.message().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(
        error["payload"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    client
        .send(json!({ "type": "subscribe", "id": "w", "payload": { "query": EVENTS, "variables": { "appids": 7 } } }))
        .await;
    let error = client.message().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // An app that is not registered: the subscription ends with the error.
    client
        .subscribe("u", json!({ "appids": ["wxnotregistered0001"] }))
        .await;
    let failed = client.message().await;
    assert_eq!(failed["type"], "next", "{failed}");
    assert_eq!(
        failed["payload"]["errors"][0]["extensions"]["code"],
        "NOT_FOUND"
    );
    assert_eq!(
        client.message().await,
        json!({ "type": "complete", "id": "u" })
    );
    // At most two at once (those of the connections closed above gone).
    watchers_exactly(&app, 0).await;
    client
        .subscribe("a", json!({ "kinds": ["UNFOLLOWED"] }))
        .await;
    client
        .subscribe("b", json!({ "kinds": ["FOLLOWED"] }))
        .await;
    client.subscribe("c", json!({})).await;
    let error = client.message().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "c");
    assert_eq!(error["payload"][0]["extensions"]["code"], "LIMIT_EXCEEDED");
    watching(&app, 2).await;
    // A completed subscription says no more; the other goes on.
    client.send(json!({ "type": "complete", "id": "a" })).await;
    app.upsert(
        json!([{ "appid": appids[0], "openid": "oRules000000000000000000001", "following": true }]),
    )
    .await;
    app.upsert(json!([{ "appid": appids[0], "openid": "oRules000000000000000000001", "following": false }]))
        .await;
    let event = client.event("b").await;
    assert_eq!(event["data"]["accountEvents"]["kind"], "FOLLOWED");
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.message().await["type"], "pong");

    // Over HTTP, a subscription is refused with where to go.
    let body = app.graphql(EVENTS, json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_REQUEST",
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/graphql/ws"),
        "{body}"
    );
}

on_each_backend!(a_subscription_selects_one_root_field_and_ids_are_reused_cleanly);
async fn a_subscription_selects_one_root_field_and_ids_are_reused_cleanly(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let appids = app.register_official_accounts().await;
    let mut client = Client::ready(&app, &app.key).await;
    // Two root fields, the same one twice under two names, one with
    // `__typename`, one selected twice, or through a fragment: each is
    // refused.
    for query in [
        "subscription { a: accountEvents { kind } b: accountEvents { kind } }",
        "subscription { accountEvents { kind } __typename }",
        "subscription { accountEvents { kind } accountEvents { openid } }",
        "subscription { ...F } fragment F on Subscription { accountEvents { appid } }",
        "subscription { ... on Subscription { accountEvents { appid } } }",
    ] {
        client
            .send(json!({ "type": "subscribe", "id": "x", "payload": { "query": query } }))
            .await;
        let error = client.message().await;
        assert_eq!(error["type"], "error", "{query}: {error}");
        assert_eq!(
            error["payload"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{query}: {error}"
        );
    }
    assert_eq!(app.state.events().watchers(), 0);
    // Fragments below the root field are fine.
    client
        .send(json!({ "type": "subscribe", "id": "x", "payload": {
            "query": "subscription { accountEvents(kinds: [LINKED]) { ...E } } fragment E on AccountEvent { openid }"
        } }))
        .await;
    watching(&app, 1).await;
    // Completed, then subscribed again under its id: the new one's events
    // only, never the old one's.
    client.send(json!({ "type": "complete", "id": "x" })).await;
    watchers_exactly(&app, 0).await;
    client
        .subscribe("x", json!({ "kinds": ["UNFOLLOWED"] }))
        .await;
    watching(&app, 1).await;
    // A new account not following is no unfollow; one that stops is.
    app.upsert(json!([
        { "appid": appids[0], "openid": "oReuse00000000000000000000001", "following": false },
        { "appid": appids[0], "openid": "oReuse00000000000000000000002", "following": true },
    ]))
    .await;
    app.upsert(json!([{ "appid": appids[0], "openid": "oReuse00000000000000000000002", "following": false }]))
        .await;
    let event = client.event("x").await;
    let event = &event["data"]["accountEvents"];
    assert_eq!(event["kind"], "UNFOLLOWED", "{event}");
    assert_eq!(event["openid"], "oReuse00000000000000000000002");
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.message().await["type"], "pong");
}

on_each_backend!(a_key_holds_few_subscriptions_and_a_revoked_key_is_disconnected);
async fn a_key_holds_few_subscriptions_and_a_revoked_key_is_disconnected(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.server.subscriptions.max_subscriptions = 2;
        s.server.subscriptions.key_recheck_secs = 1;
    })
    .await;
    let key = create_key(&app.state, "watcher", Scopes::from_iter([Scope::Read])).await;
    let mut first = Client::ready(&app, &key).await;
    let mut second = Client::ready(&app, &key).await;
    first.subscribe("1", json!({})).await;
    second.subscribe("1", json!({})).await;
    watching(&app, 2).await;
    // The key's third, on either connection, is refused; another key's is not.
    first.subscribe("2", json!({})).await;
    let error = first.message().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["payload"][0]["extensions"]["code"], "LIMIT_EXCEEDED");
    let mut other = Client::ready(&app, &app.key).await;
    other.subscribe("1", json!({})).await;
    watching(&app, 3).await;
    // Revoked: its connections close, the other key's stays.
    app.state
        .keys()
        .revoke(&key[.."u360_".len() + 12])
        .await
        .expect("revoked");
    for client in [&mut first, &mut second] {
        let (code, reason) = client.closed().await;
        assert_eq!(code, 4403, "{reason}");
    }
    other.send(json!({ "type": "ping" })).await;
    assert_eq!(other.message().await["type"], "pong");
    // Their subscriptions no longer count: a new key's two run.
    let fresh = create_key(&app.state, "fresh", Scopes::from_iter([Scope::Read])).await;
    let mut third = Client::ready(&app, &fresh).await;
    third.subscribe("1", json!({})).await;
    third.subscribe("2", json!({})).await;
    third.send(json!({ "type": "ping" })).await;
    assert_eq!(third.message().await["type"], "pong");
}

on_each_backend!(a_server_shutting_down_tells_its_subscribers);
async fn a_server_shutting_down_tells_its_subscribers(backend: Backend) {
    let first = spawn_app_with(backend, |_| {}).await;
    // A second server on the same database, stopped by the test.
    let app = union360::startup::Application::build_with_clock(
        first.state.settings().clone(),
        Clock::system(),
    )
    .await
    .expect("the server builds");
    let address = format!("http://{}", app.local_addr().expect("bound"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let mut client = Client::ready_at(&address, &first.key).await;
    client.subscribe("1", json!({})).await;
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.message().await["type"], "pong");
    stop.send(()).expect("the server runs");
    let (code, reason) = client.closed().await;
    assert_eq!(code, 1001, "{reason}");
    tokio::time::timeout(WAIT, server)
        .await
        .expect("the server stopped in time")
        .expect("the server task")
        .expect("the server stopped cleanly");
}
