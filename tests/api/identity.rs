//! The identity rules, over the API and under real concurrency.

use entity::{account, account_history, person};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use union360::domain::{AppId, OpenId, ProfileSource, UnionId};
use union360::identity::{self, AccountUpsert, Follow, Outcome, Profile};

use crate::helpers::{Backend, TestApp, spawn_app};

const OA: &str = "wx00000000000000a1";
const MP: &str = "wx00000000000000b2";

on_each_backend!(a_unionid_links_accounts_of_different_apps_to_one_person);
async fn a_unionid_links_accounts_of_different_apps_to_one_person(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.register_app(MP, "MINI_PROGRAM").await;
    let first = app
        .upsert(json!([{ "appid": OA, "openid": "oa-1", "unionid": "u-1", "nickname": "Ann" }]))
        .await;
    assert_eq!(first["created"], 1);
    assert_eq!(first["personsCreated"], 1);
    // The same user seen by the mini program: same person, no new one.
    let second = app
        .upsert(json!([{ "appid": MP, "openid": "mp-1", "unionid": "u-1" }]))
        .await;
    assert_eq!(second["personsCreated"], 0);
    // An account first seen without UnionID is linked when it arrives.
    app.upsert(json!([{ "appid": OA, "openid": "oa-2" }])).await;
    let linked = app
        .upsert(json!([{ "appid": OA, "openid": "oa-2", "unionid": "u-2" }]))
        .await;
    assert_eq!(linked["results"][0]["outcome"], "LINKED", "{backend:?}");
    // Two rows carrying one new UnionID create, and count, one person.
    let pair = app
        .upsert(json!([
            { "appid": OA, "openid": "oa-3", "unionid": "u-3" },
            { "appid": MP, "openid": "mp-3", "unionid": "u-3" }
        ]))
        .await;
    assert_eq!(pair["personsCreated"], 1);

    let data = app
        .data(
            r#"{ person(unionid: "u-1") { unionid nickname accounts { appid openid } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(data["person"]["nickname"], "Ann");
    let accounts = data["person"]["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2);
    let only_mp = app
        .data(
            r#"query($a: String) { person(unionid: "u-1") { accounts(appid: $a) { openid } } }"#,
            json!({ "a": MP }),
        )
        .await;
    assert_eq!(only_mp["person"]["accounts"], json!([{ "openid": "mp-1" }]));
}

on_each_backend!(a_conflicting_unionid_is_recorded_not_applied);
async fn a_conflicting_unionid_is_recorded_not_applied(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.upsert(json!([{ "appid": OA, "openid": "o", "unionid": "u-right", "nickname": "A" }]))
        .await;
    let refused = app
        .upsert(json!([
            { "appid": OA, "openid": "o", "unionid": "u-wrong", "nickname": "B" },
            { "appid": OA, "openid": "other", "nickname": "C" }
        ]))
        .await;
    assert_eq!(refused["refused"], 1);
    assert_eq!(refused["created"], 1, "the other row still applies");
    assert_refused(
        &refused["results"][0],
        "UNIONID_CONFLICT",
        json!("u-right"),
        "u-wrong",
    );
    let persons = person::Entity::find().count(app.state.db()).await.unwrap();
    assert_eq!(
        persons, 1,
        "{backend:?}: no person for the conflicting UnionID"
    );
    // The same conflict again is not recorded twice.
    assert_eq!(conflicts_recorded(&app).await, 1);
    app.upsert(json!([{ "appid": OA, "openid": "o", "unionid": "u-wrong" }]))
        .await;
    assert_eq!(conflicts_recorded(&app).await, 1);
}

/// Checks a row refused for `reason`, whose account keeps `unionid`, records
/// `conflict`, and took the rest of the row (nickname "B").
fn assert_refused(result: &Value, reason: &str, unionid: Value, conflict: &str) {
    assert_eq!(result["outcome"], "REFUSED", "{result}");
    assert_eq!(result["reason"], reason);
    assert_eq!(result["account"]["unionid"], unionid);
    assert_eq!(result["account"]["unionidConflict"], conflict);
    assert_eq!(
        result["account"]["nickname"], "B",
        "the rest of the row applies"
    );
}

/// How many UnionID conflicts the account history holds.
async fn conflicts_recorded(app: &TestApp) -> u64 {
    account_history::Entity::find()
        .filter(account_history::Column::Field.eq("unionid_conflict"))
        .count(app.state.db())
        .await
        .unwrap()
}

on_each_backend!(an_empty_value_never_blanks_another_sources_value);
async fn an_empty_value_never_blanks_another_sources_value(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.upsert(json!([{ "appid": OA, "openid": "o", "nickname": "Ann", "city": "Shenzhen" }]))
        .await;
    // user/info since 2021: keys present, values empty.
    let blank = AccountUpsert {
        appid: AppId::parse(OA).unwrap(),
        openid: OpenId::parse("o").unwrap(),
        unionid: None,
        snapshot_user: false,
        profile: Profile {
            nickname: Some(String::new()),
            avatar_url: Some(String::new()),
            sex: Some(0),
            city: Some(String::new()),
            language: Some("zh_CN".into()),
            ..Profile::default()
        },
        follow: Follow {
            subscribed: Some(true),
            ..Follow::default()
        },
        refreshed: true,
    };
    identity::upsert_accounts(
        app.state.db(),
        vec![blank],
        ProfileSource::UserInfo,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let data = app
        .data(
            &format!(r#"{{ account(appid: "{OA}", openid: "o") {{ nickname city language following refreshedAt fieldSources {{ field source }} }} }}"#),
            json!({}),
        )
        .await;
    let account = &data["account"];
    assert_eq!(account["nickname"], "Ann", "{backend:?}");
    assert_eq!(account["city"], "Shenzhen");
    assert_eq!(account["language"], "zh_CN");
    assert_eq!(account["following"], true);
    assert!(
        account["refreshedAt"].is_string(),
        "a WeChat fetch marks the account fresh"
    );
    assert!(
        account["fieldSources"]
            .as_array()
            .unwrap()
            .contains(&json!({ "field": "language", "source": "USER_INFO" }))
    );
    // The same source may clear what it set itself.
    app.upsert(json!([{ "appid": OA, "openid": "o", "city": "" }]))
        .await;
    let data = app
        .data(
            &format!(r#"{{ account(appid: "{OA}", openid: "o") {{ city }} }}"#),
            json!({}),
        )
        .await;
    assert_eq!(data["account"]["city"], json!(null));
}

on_each_backend!(a_call_with_one_bad_row_writes_nothing);
async fn a_call_with_one_bad_row_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    // An app that is not registered is NOT_FOUND wherever it is named;
    // a row that breaks a rule is BAD_USER_INPUT.
    let rows = [
        (
            json!([{ "appid": OA, "openid": "a", "unionid": "u" }, { "appid": "wx9999999999999999", "openid": "b" }]),
            "NOT_FOUND",
        ),
        (
            json!([{ "appid": OA, "openid": "a", "unionid": "u" }, { "appid": OA, "openid": "a" }]),
            "BAD_USER_INPUT",
        ),
        (
            json!([{ "appid": OA, "openid": "a", "unionid": "u" }, { "appid": OA, "openid": "" }]),
            "BAD_USER_INPUT",
        ),
        (
            json!([{ "appid": OA, "openid": "a", "unionid": "u" }, { "appid": OA, "openid": "b", "language": "x".repeat(33) }]),
            "BAD_USER_INPUT",
        ),
    ];
    for (rows, code) in rows {
        let body = app
            .graphql(
                "mutation($rows: [AccountInput!]!) { upsertAccounts(input: $rows) { created } }",
                json!({ "rows": rows }),
            )
            .await;
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
    }
    assert_eq!(
        account::Entity::find().count(app.state.db()).await.unwrap(),
        0
    );
    assert_eq!(
        person::Entity::find().count(app.state.db()).await.unwrap(),
        0
    );
}

on_each_backend!(
    concurrent_discoveries_of_one_unionid_make_exactly_one_person,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn concurrent_discoveries_of_one_unionid_make_exactly_one_person(backend: Backend) {
    let app = spawn_app(backend).await;
    let appids: Vec<String> = (0..8).map(|i| format!("wx{i:016x}")).collect();
    for appid in &appids {
        app.register_app(appid, "MINI_PROGRAM").await;
    }
    for round in 0..5 {
        let unionid = format!("u-race-{round}");
        let calls = appids.iter().map(
            |appid| json!([{ "appid": appid, "openid": format!("o-{round}"), "unionid": unionid }]),
        );
        let results = upsert_at_once(&app, calls).await;
        let created: i64 = results
            .iter()
            .map(|r| r["personsCreated"].as_i64().unwrap())
            .sum();
        assert_eq!(created, 1, "{backend:?} round {round}: {results:?}");
        assert_eq!(linked_to(&app, &unionid).await.len(), appids.len());
    }
}

on_each_backend!(
    concurrent_creations_of_one_account_make_exactly_one,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn concurrent_creations_of_one_account_make_exactly_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let appid = "wx00000000000000c1";
    app.register_app(appid, "MINI_PROGRAM").await;
    for round in 0..5 {
        // Eight calls insert the same new accounts (and one person) at once,
        // each with its own nickname: one creates them, the others lose the
        // race on the unique key, are written again and update them.
        let calls = (0..8).map(|call| {
            json!([
                { "appid": appid, "openid": format!("o-new-{round}-a"), "unionid": format!("u-new-{round}"), "nickname": format!("n{call}") },
                { "appid": appid, "openid": format!("o-new-{round}-b"), "nickname": format!("n{call}") },
            ])
        });
        let results = upsert_at_once(&app, calls).await;
        let outcomes = |row: usize| -> Vec<String> {
            results
                .iter()
                .map(|r| r["results"][row]["outcome"].as_str().unwrap().to_owned())
                .collect()
        };
        for row in 0..2 {
            let outcomes = outcomes(row);
            assert_eq!(
                outcomes.iter().filter(|o| *o == "CREATED").count(),
                1,
                "{backend:?} round {round} row {row}: {outcomes:?}"
            );
        }
        let stored = account::Entity::find()
            .filter(account::Column::Openid.starts_with(format!("o-new-{round}-")))
            .all(app.state.db())
            .await
            .unwrap();
        assert_eq!(stored.len(), 2, "{backend:?} round {round}");
        assert_eq!(linked_to(&app, &format!("u-new-{round}")).await.len(), 1);
        // The last call written holds the nickname: one of the calls'.
        for account in stored {
            let nickname = account.nickname.unwrap();
            assert!(nickname.starts_with('n'), "{nickname}");
        }
    }
}

/// Runs one `upsertAccounts` per set of rows, all at once; their payloads.
async fn upsert_at_once(app: &TestApp, calls: impl Iterator<Item = Value>) -> Vec<Value> {
    futures::future::join_all(calls.map(|rows| app.upsert(rows))).await
}

/// The accounts linked to the one person with `unionid`.
async fn linked_to(app: &TestApp, unionid: &str) -> Vec<account::Model> {
    let persons = person::Entity::find()
        .filter(person::Column::Unionid.eq(unionid))
        .all(app.state.db())
        .await
        .unwrap();
    assert_eq!(persons.len(), 1, "one person has {unionid}");
    account::Entity::find()
        .filter(account::Column::PersonId.eq(persons[0].id))
        .all(app.state.db())
        .await
        .unwrap()
}

/// A row as sign-in reports it: `openid` with `unionid`, maybe a snapshot-page user.
fn signed_in(openid: &str, unionid: Option<&str>, snapshot_user: bool) -> AccountUpsert {
    AccountUpsert {
        appid: AppId::parse(OA).unwrap(),
        openid: OpenId::parse(openid).unwrap(),
        unionid: unionid.map(|u| UnionId::parse(u).unwrap()),
        snapshot_user,
        profile: Profile {
            nickname: Some("Visitor".into()),
            ..Profile::default()
        },
        follow: Follow::default(),
        refreshed: false,
    }
}

on_each_backend!(a_snapshot_page_user_never_creates_or_joins_a_person);
async fn a_snapshot_page_user_never_creates_or_joins_a_person(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.upsert(json!([{ "appid": OA, "openid": "o-real", "unionid": "u-1" }]))
        .await;
    let upsert = |rows| {
        identity::upsert_accounts(
            app.state.db(),
            rows,
            ProfileSource::SnsUserinfo,
            chrono::Utc::now(),
        )
    };
    // Identity rule 4: stored as an account, marked, linked to nobody, even
    // with the UnionID of an existing person or a new one.
    let results = upsert(vec![
        signed_in("o-snap-1", Some("u-1"), true),
        signed_in("o-snap-2", Some("u-new"), true),
    ])
    .await
    .unwrap();
    for result in &results {
        assert_eq!(result.outcome, Outcome::Created, "{backend:?}");
        assert!(!result.person_created);
        assert!(result.account.snapshot_user);
        assert_eq!(result.account.person_id, None);
        assert_eq!(result.account.unionid, None);
        assert_eq!(result.account.nickname.as_deref(), Some("Visitor"));
    }
    // The mark stays: a later report of the same openid with a UnionID
    // does not link it either.
    let later = upsert(vec![signed_in("o-snap-1", Some("u-1"), false)])
        .await
        .unwrap();
    assert_eq!(later[0].account.person_id, None, "{backend:?}");
    assert!(later[0].account.snapshot_user);
    assert_eq!(
        person::Entity::find().count(app.state.db()).await.unwrap(),
        1,
        "{backend:?}: only the real user's person"
    );
    let linked = account::Entity::find()
        .filter(account::Column::PersonId.is_not_null())
        .count(app.state.db())
        .await
        .unwrap();
    assert_eq!(linked, 1, "{backend:?}: only the real user's account");
    // A real account reported as a snapshot user keeps its link.
    let real = upsert(vec![signed_in("o-real", Some("u-1"), true)])
        .await
        .unwrap();
    assert!(real[0].account.person_id.is_some());
    assert!(!real[0].account.snapshot_user);
}

on_each_backend!(a_second_openid_of_one_app_with_a_persons_unionid_is_recorded_not_linked);
async fn a_second_openid_of_one_app_with_a_persons_unionid_is_recorded_not_linked(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.register_app(MP, "MINI_PROGRAM").await;
    app.upsert(json!([{ "appid": OA, "openid": "oa-1", "unionid": "u-1" }]))
        .await;
    let second = app
        .upsert(json!([
            { "appid": OA, "openid": "oa-2", "unionid": "u-1", "nickname": "B" },
            { "appid": MP, "openid": "mp-1", "unionid": "u-1" }
        ]))
        .await;
    assert_eq!(second["refused"], 1, "{backend:?}: {second}");
    assert_refused(
        &second["results"][0],
        "SECOND_ACCOUNT_IN_APP",
        Value::Null,
        "u-1",
    );
    assert_eq!(
        second["results"][1]["outcome"], "CREATED",
        "another app links"
    );
    let person = app
        .data(
            r#"{ person(unionid: "u-1", refresh: CACHE_ONLY) { accounts { openid } } }"#,
            json!({}),
        )
        .await;
    let mut openids: Vec<&str> = person["person"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["openid"].as_str().unwrap())
        .collect();
    openids.sort_unstable();
    assert_eq!(openids, ["mp-1", "oa-1"]);
    // Reported again: still refused, recorded once.
    let again = app
        .upsert(json!([{ "appid": OA, "openid": "oa-2", "unionid": "u-1" }]))
        .await;
    assert_eq!(again["results"][0]["reason"], "SECOND_ACCOUNT_IN_APP");
    assert_eq!(conflicts_recorded(&app).await, 1);
    // The first account reporting its own UnionID stays as it is.
    let first = app
        .upsert(json!([{ "appid": OA, "openid": "oa-1", "unionid": "u-1" }]))
        .await;
    assert_eq!(first["results"][0]["outcome"], "UNCHANGED");
}

on_each_backend!(two_hundred_openids_of_one_app_with_one_unionid_link_one);
async fn two_hundred_openids_of_one_app_with_one_unionid_link_one(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    let rows: Vec<Value> = (0..200)
        .map(|i| json!({ "appid": OA, "openid": format!("o{i:03}"), "unionid": "uBOMB" }))
        .collect();
    let payload = app.upsert(json!(rows)).await;
    assert_eq!(payload["personsCreated"], 1);
    assert_eq!(payload["created"], 1, "{backend:?}");
    assert_eq!(payload["refused"], 199);
    let data = app
        .data(
            r#"{ person(unionid: "uBOMB", refresh: CACHE_ONLY) { accounts { openid person { accounts { openid } } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data["person"]["accounts"],
        json!([{ "openid": "o000", "person": { "accounts": [{ "openid": "o000" }] } }])
    );
}

on_each_backend!(
    concurrent_openids_of_one_app_with_one_unionid_link_exactly_one,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn concurrent_openids_of_one_app_with_one_unionid_link_exactly_one(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.register_app(MP, "MINI_PROGRAM").await;
    for round in 0..5 {
        let unionid = format!("u-race-{round}");
        // The person exists (known from the mini program), so the calls do
        // not queue behind its creation: they race for the one link.
        app.upsert(json!([{ "appid": MP, "openid": format!("mp-{round}"), "unionid": unionid }]))
            .await;
        let calls = (0..8).map(
            |i| json!([{ "appid": OA, "openid": format!("o-{round}-{i}"), "unionid": unionid }]),
        );
        let results = upsert_at_once(&app, calls).await;
        let refused = results
            .iter()
            .filter(|r| r["results"][0]["reason"] == "SECOND_ACCOUNT_IN_APP")
            .count();
        assert_eq!(refused, 7, "{backend:?} round {round}: {results:?}");
        let linked = linked_to(&app, &unionid).await;
        let in_oa = linked.iter().filter(|a| a.openid.starts_with("o-")).count();
        assert_eq!(in_oa, 1, "{backend:?} round {round}");
    }
}

on_each_backend!(
    concurrent_calls_crossing_two_persons_in_one_app_both_finish,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn concurrent_calls_crossing_two_persons_in_one_app_both_finish(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.register_app(MP, "MINI_PROGRAM").await;
    for round in 0..10 {
        let (p, q) = (format!("u-p-{round}"), format!("u-q-{round}"));
        app.upsert(json!([
            { "appid": MP, "openid": format!("mp-p-{round}"), "unionid": p },
            { "appid": MP, "openid": format!("mp-q-{round}"), "unionid": q }
        ]))
        .await;
        // Each call links its first openid to one person and its second to
        // the other, in opposite orders: each may hold the seat the other wants.
        let calls = [(&p, &q, "a"), (&q, &p, "b")].map(|(first, second, call)| {
            json!([
                { "appid": OA, "openid": format!("{call}1-{round}"), "unionid": first },
                { "appid": OA, "openid": format!("{call}2-{round}"), "unionid": second }
            ])
        });
        let results = upsert_at_once(&app, calls.into_iter()).await;
        let refused: i64 = results.iter().map(|r| r["refused"].as_i64().unwrap()).sum();
        assert_eq!(refused, 2, "{backend:?} round {round}: {results:?}");
        for unionid in [&p, &q] {
            let in_oa = linked_to(&app, unionid).await.len() - 1;
            assert_eq!(in_oa, 1, "{backend:?} round {round}: {unionid}");
        }
    }
}

on_each_backend!(the_migration_settles_second_accounts_linked_before_it);
async fn the_migration_settles_second_accounts_linked_before_it(backend: Backend) {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ActiveModelTrait, QueryOrder, Set};

    let (url, _dir) = crate::helpers::fresh_database(backend).await;
    let db = sea_orm::Database::connect(&url).await.unwrap();
    // The schema before the rule, holding what it let through.
    Migrator::up(&db, Some(4)).await.unwrap();
    let now = chrono::Utc::now();
    let mut app_ids = Vec::new();
    for appid in [OA, MP] {
        let app = entity::app::ActiveModel {
            appid: Set(appid.to_owned()),
            kind: Set("OFFICIAL_ACCOUNT".to_owned()),
            name: Set(appid.to_owned()),
            secret_sealed: Set("v1:sealed".to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        // Inserted without reading back: the entities have columns this
        // older schema lacks.
        let inserted = entity::app::Entity::insert(app).exec(&db).await.unwrap();
        app_ids.push(inserted.last_insert_id);
    }
    let person_id = person::Entity::insert(person::ActiveModel {
        unionid: Set("u-dup".to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec(&db)
    .await
    .unwrap()
    .last_insert_id;
    for (app_id, openid) in [
        (app_ids[0], "a"),
        (app_ids[0], "b"),
        (app_ids[1], "c"),
        (app_ids[0], "d"),
    ] {
        account::Entity::insert(account::ActiveModel {
            app_id: Set(app_id),
            openid: Set(openid.to_owned()),
            person_id: Set(Some(person_id)),
            unionid: Set(Some("u-dup".to_owned())),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .exec(&db)
        .await
        .unwrap();
    }
    Migrator::up(&db, None).await.unwrap();
    let accounts = account::Entity::find()
        .order_by_asc(account::Column::Id)
        .all(&db)
        .await
        .unwrap();
    // Each account as (openid, person, unionid, conflict).
    let links: Vec<String> = accounts
        .iter()
        .map(|a| {
            format!(
                "{} {:?} {:?} {:?}",
                a.openid, a.person_id, a.unionid, a.unionid_conflict
            )
        })
        .collect();
    let p = person_id;
    let linked = format!("Some({p}) Some(\"u-dup\") None");
    let refused = "None None Some(\"u-dup\")";
    assert_eq!(
        links,
        [
            format!("a {linked}"),
            format!("b {refused}"),
            format!("c {linked}"),
            format!("d {refused}"),
        ],
        "{backend:?}"
    );
    assert!(accounts[1].unionid_conflict_at.is_some());
    // The index now holds the rule.
    let mut second: account::ActiveModel = accounts[1].clone().into();
    second.person_id = Set(Some(p));
    assert!(second.update(&db).await.is_err(), "{backend:?}");
}
