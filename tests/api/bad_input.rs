//! Values a database cannot store are refused with `BAD_USER_INPUT` on
//! both databases, before any write (PostgreSQL refuses a NUL character in
//! text, SQLite would store it); what WeChat sends is made storable instead.

use entity::{account, app as app_entity};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use union360::clock::Clock;
use union360::domain::{AppId, OpenId, ProfileSource};
use union360::identity::{self, AccountUpsert, Follow, Profile};
use union360::simulator::SimConfig;

use crate::helpers::{Backend, SimControl, TestApp, UNUSED_SECRET, spawn_app, spawn_app_in};

const OA: &str = "wx00000000000000a1";

const UPSERT: &str =
    "mutation($rows: [AccountInput!]!) { upsertAccounts(input: $rows) { created } }";
const REGISTER: &str =
    "mutation($input: RegisterAppInput!) { registerApp(input: $input) { appid } }";

/// The nickname stored for `openid`.
async fn nickname(app: &TestApp, openid: &str) -> Value {
    let data = app
        .data(
            &format!(
                r#"{{ account(appid: "{OA}", openid: "{openid}", refresh: CACHE_ONLY) {{ nickname }} }}"#
            ),
            json!({}),
        )
        .await;
    data["account"]["nickname"].clone()
}

on_each_backend!(a_nul_character_in_any_stored_text_is_bad_user_input);
async fn a_nul_character_in_any_stored_text_is_bad_user_input(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.upsert(json!([{ "appid": OA, "openid": "o", "nickname": "Ann" }]))
        .await;
    for field in [
        "nickname",
        "avatarUrl",
        "language",
        "city",
        "province",
        "country",
        "remark",
    ] {
        // A good row first: the call is refused as a whole, nothing written.
        let mut bad = json!({ "appid": OA, "openid": "o", "unionid": "u" });
        bad[field] = json!("Bei\u{0}jing");
        let rows = json!([{ "appid": OA, "openid": "new", "unionid": "u-new" }, bad]);
        let body = app.graphql(UPSERT, json!({ "rows": rows })).await;
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{backend:?} {field}: {body}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("row 1") && message.contains(field) && message.contains("NUL"),
            "{field}: {message}"
        );
    }
    assert_eq!(nickname(&app, "o").await, "Ann", "nothing stored changed");
    assert_eq!(
        account::Entity::find().count(app.state.db()).await.unwrap(),
        1,
        "{backend:?}: no row of a refused call was written"
    );
    // Identifiers refuse every control character, NUL included.
    let rows = json!([{ "appid": OA, "openid": "o\u{0}" }]);
    let body = app.graphql(UPSERT, json!({ "rows": rows })).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // Text that fits its column on SQLite but not on PostgreSQL is refused on both.
    let rows = json!([{ "appid": OA, "openid": "o", "language": "x".repeat(33) }]);
    let body = app.graphql(UPSERT, json!({ "rows": rows })).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{backend:?}: {body}"
    );
}

on_each_backend!(an_app_name_or_secret_with_a_nul_character_is_bad_user_input);
async fn an_app_name_or_secret_with_a_nul_character_is_bad_user_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (
            "name",
            json!({ "appid": OA, "kind": "OFFICIAL_ACCOUNT", "name": "Shop\u{0}", "secret": UNUSED_SECRET }),
        ),
        (
            "secret",
            json!({ "appid": OA, "kind": "OFFICIAL_ACCOUNT", "name": "Shop", "secret": "0123456789abcdef\u{0}123456789abcdef" }),
        ),
    ];
    for (field, input) in cases {
        let body = app.graphql(REGISTER, json!({ "input": input })).await;
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{backend:?} {field}: {body}"
        );
        assert!(error["message"].as_str().unwrap().contains(field), "{body}");
    }
    assert_eq!(
        app_entity::Entity::find()
            .count(app.state.db())
            .await
            .unwrap(),
        0,
        "{backend:?}: no app was registered"
    );
    // The same app, well named, registers.
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
}

on_each_backend!(a_profile_from_wechat_with_nul_characters_is_stored_without_them);
async fn a_profile_from_wechat_with_nul_characters_is_stored_without_them(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    let mut row = AccountUpsert {
        appid: AppId::parse(OA).unwrap(),
        openid: OpenId::parse("o").unwrap(),
        unionid: None,
        snapshot_user: false,
        profile: Profile {
            nickname: Some("\u{0}Ann\u{0}".into()),
            city: Some("x".repeat(300)),
            sex: Some(7),
            ..Profile::default()
        },
        follow: Follow {
            remark: Some("vip\u{0}".into()),
            ..Follow::default()
        },
        refreshed: true,
    };
    // As the refresh service fits what WeChat sends before writing it.
    identity::make_storable(&mut row);
    identity::upsert_accounts(
        app.state.db(),
        vec![row],
        ProfileSource::UserInfo,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let stored = account::Entity::find()
        .one(app.state.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.nickname.as_deref(), Some("Ann"), "{backend:?}");
    assert_eq!(stored.remark.as_deref(), Some("vip"));
    assert_eq!(stored.city.map(|c| c.chars().count()), Some(255));
    assert_eq!(stored.sex, None);
}

on_each_backend!(a_refresh_stores_a_wechat_nickname_holding_a_nul_without_it);
async fn a_refresh_stores_a_wechat_nickname_holding_a_nul_without_it(backend: Backend) {
    let world = SimConfig {
        people: 2000,
        apps: 3,
        blank_profiles: false,
        ..SimConfig::default()
    };
    let app = spawn_app_in(backend, Clock::system(), world, |_| {}).await;
    let appids = app.register_official_accounts().await;
    // A follower whose WeChat nickname holds a NUL, and a few others.
    let mut keys = Vec::new();
    let mut with_nul = None;
    for i in 0..2000 {
        let person = app.sim.person_json(i).await;
        let nickname = person["profile"]["nickname"].as_str().unwrap().to_owned();
        let followed =
            person["apps"].as_array().unwrap().iter().find(|a| {
                a["following"] == true && appids.iter().any(|id| a["appid"] == id.as_str())
            });
        let Some(account) = followed else { continue };
        let key = json!({ "appid": account["appid"], "openid": account["openid"] });
        if with_nul.is_none() && nickname.contains('\u{0}') {
            with_nul = Some((keys.len(), nickname));
            keys.push(key);
        } else if keys.len() < 20 {
            keys.push(key);
        }
        if with_nul.is_some() && keys.len() >= 20 {
            break;
        }
    }
    let (at, nickname) = with_nul.expect("the simulated world has a nickname with a NUL");
    app.upsert(json!(keys)).await;
    let refresh = "mutation($keys: [AccountKey!]!) { refreshAccounts(keys: $keys) {
        fetched failed accounts { nickname stale } } }";
    let data = app.data(refresh, json!({ "keys": keys })).await;
    let payload = &data["refreshAccounts"];
    assert_eq!(payload["fetched"], keys.len(), "{backend:?}: {payload}");
    assert_eq!(payload["failed"], 0);
    let stored = &payload["accounts"][at];
    assert_eq!(
        stored["nickname"],
        nickname.replace('\u{0}', ""),
        "{backend:?}"
    );
    assert_eq!(stored["stale"], false);
}
