//! Refreshing profiles from WeChat (the server's own simulator): on demand
//! with `refreshAccounts`, and lazily when a query reads stale accounts.

use std::time::{Duration, Instant};

use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use union360::clock::Clock;
use union360::settings::Settings;
use union360::simulator::{KindMix, SimConfig};

use union360::wechat::client::api;

use crate::helpers::{
    Backend, SimControl, SimPerson, TestApp, spawn_app_in, spawn_app_with, spawn_app_with_clock,
};

const REFRESH: &str = "mutation($keys: [AccountKey!]!) { refreshAccounts(keys: $keys) {
    fetched failed invalid skipped
    accounts { openid unionid nickname following followedAt followScene qrScene tagIds
               stale refreshedAt refreshError { code message } person { unionid } }
} }";

/// A server with the simulator's bound official accounts registered; their appids.
async fn setup_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> (TestApp, Vec<String>) {
    let app = spawn_app_with(backend, adjust).await;
    let appids = app.register_official_accounts().await;
    (app, appids)
}

/// Makes the simulator's `user/info/batchget` misbehave as `fault` says.
async fn batchget_fault(app: &TestApp, fault: Value) {
    app.sim.fault(api::BATCHGET, fault).await;
}

/// Calls to `user/info/batchget` since the last reset.
fn batchget_calls(app: &TestApp) -> u64 {
    app.sim.calls_to(api::BATCHGET)
}

/// Imports, for the first `n` people, their followed accounts in `appids`
/// (with UnionID and a nickname from sign-in); returns how many per app.
async fn import(app: &TestApp, appids: &[String], n: u32) -> Vec<(String, usize)> {
    let mut rows = Vec::new();
    let mut per_app: Vec<(String, usize)> = appids.iter().map(|a| (a.clone(), 0)).collect();
    for i in 0..n {
        let person = app.sim.person(i).await;
        for (appid, openid, following) in person.accounts {
            if let (true, Some(slot)) = (following, per_app.iter_mut().find(|(a, _)| *a == appid)) {
                slot.1 += 1;
                rows.push(json!({ "appid": appid, "openid": openid, "unionid": person.unionid, "nickname": "From sign-in" }));
            }
        }
    }
    for chunk in rows.chunks(1000) {
        app.upsert(json!(chunk)).await;
    }
    per_app
}

on_each_backend!(refresh_accounts_links_unionids_marks_followers_and_batches_by_100);
async fn refresh_accounts_links_unionids_marks_followers_and_batches_by_100(backend: Backend) {
    let (app, appids) = setup_with(backend, |_| {}).await;
    let appid = &appids[0];
    let mut followers = Vec::new();
    let mut subscriptions = Vec::new();
    for i in 0..300 {
        let person = app.sim.person_json(i).await;
        let account = person["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["appid"] == appid.as_str() && a["following"] == true);
        if let Some(account) = account {
            followers.push((
                account["openid"].as_str().unwrap().to_owned(),
                person["unionid"].as_str().unwrap().to_owned(),
            ));
            subscriptions.push(account["subscription"].clone());
        }
    }
    assert!(followers.len() > 100, "the world has enough followers");
    // Known to the CRM by openid only, with a nickname from sign-in.
    let rows: Vec<Value> = followers
        .iter()
        .map(|(openid, _)| json!({ "appid": appid, "openid": openid, "nickname": "From sign-in" }))
        .collect();
    app.upsert(json!(rows)).await;
    app.sim.reset_calls().await;

    let keys: Vec<Value> = followers
        .iter()
        .map(|(openid, _)| json!({ "appid": appid, "openid": openid }))
        .collect();
    let data = app.data(REFRESH, json!({ "keys": keys })).await;
    let payload = &data["refreshAccounts"];
    assert_eq!(
        payload["fetched"],
        followers.len(),
        "{backend:?}: {payload}"
    );
    assert_eq!(payload["failed"], 0);
    assert_eq!(batchget_calls(&app), followers.len().div_ceil(100) as u64);
    for ((account, (_, unionid)), subscription) in payload["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&followers)
        .zip(&subscriptions)
    {
        assert_eq!(account["unionid"], unionid.as_str());
        // The follow as WeChat reported it.
        let followed_at = chrono::DateTime::parse_from_rfc3339(
            account["followedAt"].as_str().expect("followedAt"),
        )
        .unwrap();
        assert_eq!(followed_at.timestamp(), subscription["subscribe_time"]);
        assert_eq!(account["followScene"], subscription["subscribe_scene"]);
        assert_eq!(account["tagIds"], subscription["tagid_list"]);
        let qr_scene = &subscription["qr_scene"];
        if qr_scene == 0 {
            assert!(account["qrScene"].is_null(), "{account}");
        } else {
            assert_eq!(&account["qrScene"], qr_scene);
        }
        assert_eq!(account["person"]["unionid"], unionid.as_str());
        assert_eq!(account["following"], true);
        assert_eq!(account["stale"], false);
        assert_eq!(
            account["nickname"], "From sign-in",
            "user/info's blank nickname erased nothing"
        );
    }
}

const PAGE: &str = "query($refresh: RefreshPolicy) { people(first: 100, refresh: $refresh) {
    nodes { unionid accounts { appid openid nickname stale refreshedAt refreshError { code message } } } } }";

on_each_backend!(a_query_refreshes_its_stale_accounts_in_one_batch_per_app_and_100);
async fn a_query_refreshes_its_stale_accounts_in_one_batch_per_app_and_100(backend: Backend) {
    let (app, appids) = setup_with(backend, |_| {}).await;
    let per_app = import(&app, &appids, 100).await;
    app.sim.reset_calls().await;
    let data = app.data(PAGE, json!({})).await;
    let expected: u64 = per_app.iter().map(|(_, n)| n.div_ceil(100) as u64).sum();
    assert_eq!(batchget_calls(&app), expected, "{backend:?}: {per_app:?}");
    for person in data["people"]["nodes"].as_array().unwrap() {
        for account in person["accounts"].as_array().unwrap() {
            assert_eq!(account["stale"], false, "{account}");
            assert_eq!(account["nickname"], "From sign-in");
        }
    }
    // Fresh now: reading again calls WeChat no more.
    app.data(PAGE, json!({})).await;
    assert_eq!(batchget_calls(&app), expected);
}

/// Root fields of every kind, with aliases, fragments, a skipped field,
/// `__typename`, fields that fail (nullable ones: each is null alone) and
/// one that reads no profile.
const MANY_ROOTS: &str = "query($u0: String!, $u1: String!, $u2: String!, $u3: String!, $a: String!, $o: String!, $yes: Boolean!, $bad: String!) {
    __typename
    p0: person(unionid: $u0) { accounts { nickname stale } }
    ...More
    ... on Query { p1: person(unionid: $u1) { nickname oldestRefreshedAt } }
    one: account(appid: $a, openid: $o) { nickname stale }
    page: accounts(appid: $a, first: 3) { nodes { nickname stale } }
    skipped: person(unionid: $u3) @skip(if: $yes) { nickname }
    unknownApp: account(appid: \"wx0000000000000000\", openid: $o) { nickname }
    badArgument: person(unionid: $bad) { nickname }
    apps { appid }
}
fragment More on Query { p2: person(unionid: $u2) { accounts { openid nickname stale } } }";

on_each_backend!(one_query_refreshes_the_stale_accounts_of_all_its_root_fields_together);
async fn one_query_refreshes_the_stale_accounts_of_all_its_root_fields_together(backend: Backend) {
    let (app, appids) = setup_with(backend, |_| {}).await;
    import(&app, &appids, 16).await;
    let people: Vec<SimPerson> = futures::future::join_all((0..16).map(|i| app.sim.person(i)))
        .await
        .into_iter()
        .filter(|p| !p.followed_in(&appids).is_empty())
        .collect();
    assert!(people.len() >= 5, "enough imported people");
    let (a, o) = people[4].followed_in(&appids).remove(0);
    app.sim.reset_calls().await;
    let body = app
        .graphql(
            MANY_ROOTS,
            json!({
                "u0": people[0].unionid, "u1": people[1].unionid, "u2": people[2].unionid,
                "u3": people[3].unionid, "a": a, "o": o, "yes": true, "bad": " padded ",
            }),
        )
        .await;
    // Two root fields fail on their own; the others answer.
    let failed: Vec<&str> = body["errors"]
        .as_array()
        .expect("the failing root fields report errors")
        .iter()
        .map(|e| e["path"][0].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 2, "{body:#}");
    assert!(failed.contains(&"unknownApp") && failed.contains(&"badArgument"));
    let codes: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["extensions"]["code"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(codes.len(), 2);
    assert!(
        codes.contains(&"NOT_FOUND") && codes.contains(&"BAD_USER_INPUT"),
        "{codes:?}"
    );
    let data = &body["data"];
    assert!(data.get("skipped").is_none());
    assert!(
        data["unknownApp"].is_null() && data["badArgument"].is_null(),
        "{data:#}"
    );
    // Every stale account read, whichever root field read it, came from
    // one batchget per app involved (each well under 100 accounts).
    let mut involved: std::collections::BTreeSet<String> = people[..3]
        .iter()
        .flat_map(|p| p.followed_in(&appids))
        .map(|(appid, _)| appid)
        .collect();
    involved.insert(a.clone());
    assert_eq!(
        batchget_calls(&app),
        involved.len() as u64,
        "{backend:?}: {data:#}"
    );
    for account in data["p0"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .chain(data["p2"]["accounts"].as_array().unwrap())
        .chain(data["page"]["nodes"].as_array().unwrap())
        .chain([&data["one"]])
    {
        assert_eq!(account["stale"], false, "{account}");
    }
    assert!(data["p1"]["oldestRefreshedAt"].is_string(), "{data:#}");
    // The round gathered every root field: it never gave up waiting.
    assert_eq!(app.state.refresher().incomplete_rounds(), 0);
}

#[tokio::test]
async fn accounts_reached_through_a_person_are_refreshed_too() {
    let (app, appids) = setup_with(Backend::Sqlite, |_| {}).await;
    import(&app, &appids, 10).await;
    let query = "query($a: String!) { accounts(appid: $a, first: 5) { nodes {
        nickname stale person { accounts { appid nickname stale } } } } }";
    let data = app.data(query, json!({ "a": appids[0] })).await;
    let nodes = data["accounts"]["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty());
    for node in nodes {
        assert_eq!(node["stale"], false, "{node}");
        for account in node["person"]["accounts"].as_array().unwrap() {
            assert_eq!(account["stale"], false, "{account}");
        }
    }
}

/// A world of `people` and 4 official accounts, all bound to the open platform.
fn official_accounts_world(people: u32) -> SimConfig {
    SimConfig {
        people,
        apps: 4,
        unbound_share: 0.0,
        kinds: KindMix::OFFICIAL_ACCOUNTS,
        ..SimConfig::default()
    }
}

on_each_backend!(stale_accounts_over_several_apps_and_root_fields_cost_one_call_per_app_and_100);
async fn stale_accounts_over_several_apps_and_root_fields_cost_one_call_per_app_and_100(
    backend: Backend,
) {
    let world = official_accounts_world(400);
    let app = spawn_app_in(backend, Clock::system(), world, |_| {}).await;
    let appids = app.register_official_accounts().await;
    import(&app, &appids, 300).await;
    // Three pages of people, read by three root fields of one query.
    let pages = "query($p2: String, $p3: String, $refresh: RefreshPolicy) {
        p1: people(first: 100, refresh: $refresh) { pageInfo { endCursor } nodes { accounts { appid stale } } }
        p2: people(first: 100, after: $p2, refresh: $refresh) { pageInfo { endCursor } nodes { accounts { appid stale } } }
        p3: people(first: 100, after: $p3, refresh: $refresh) { nodes { accounts { appid stale } } } }";
    let first = app.data(pages, json!({ "refresh": "CACHE_ONLY" })).await;
    let p2 = first["p1"]["pageInfo"]["endCursor"].clone();
    let second = app
        .data(pages, json!({ "p2": p2, "refresh": "CACHE_ONLY" }))
        .await;
    let p3 = second["p2"]["pageInfo"]["endCursor"].clone();
    app.sim.reset_calls().await;
    let data = app.data(pages, json!({ "p2": p2, "p3": p3 })).await;
    let mut per_app: std::collections::BTreeMap<String, usize> = Default::default();
    for page in ["p1", "p2", "p3"] {
        for person in data[page]["nodes"].as_array().unwrap() {
            for account in person["accounts"].as_array().unwrap() {
                assert_eq!(account["stale"], false, "{account}");
                *per_app
                    .entry(account["appid"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    let expected: u64 = per_app.values().map(|n| n.div_ceil(100) as u64).sum();
    assert!(
        per_app.len() == appids.len() && expected > per_app.len() as u64,
        "the accounts span every app, some app with more than 100: {per_app:?}"
    );
    assert_eq!(batchget_calls(&app), expected, "{backend:?}: {per_app:?}");
}

on_each_backend!(
    concurrent_refreshes_that_discover_one_unionid_create_one_person,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn concurrent_refreshes_that_discover_one_unionid_create_one_person(backend: Backend) {
    let world = official_accounts_world(200);
    let app = spawn_app_in(backend, Clock::system(), world, |_| {}).await;
    let appids = app.register_official_accounts().await;
    let mut found = None;
    for i in 0..200 {
        let person = app.sim.person(i).await;
        let followed = person.followed_in(&appids);
        if followed.len() >= 2 {
            found = Some((person.unionid, followed));
            break;
        }
    }
    let (unionid, followed) = found.expect("someone follows two official accounts");
    let [(a, oa), (b, ob)] = [followed[0].clone(), followed[1].clone()];
    // Known by openid only: no UnionID, no person yet.
    app.upsert(json!([{ "appid": a, "openid": oa }, { "appid": b, "openid": ob }]))
        .await;
    // WeChat takes its time, so both fetches land together.
    batchget_fault(&app, json!({ "latency_ms": 200 })).await;
    let query = "query($a: String!, $o: String!) { account(appid: $a, openid: $o) { unionid person { unionid } } }";
    let (first, second) = futures::join!(
        app.data(query, json!({ "a": a, "o": oa })),
        app.data(query, json!({ "a": b, "o": ob })),
    );
    for data in [&first, &second] {
        assert_eq!(data["account"]["unionid"], unionid.as_str(), "{backend:?}");
        assert_eq!(data["account"]["person"]["unionid"], unionid.as_str());
    }
    use sea_orm::{ColumnTrait, QueryFilter};
    let persons = entity::person::Entity::find()
        .filter(entity::person::Column::Unionid.eq(unionid.as_str()))
        .all(app.state.db())
        .await
        .unwrap();
    assert_eq!(persons.len(), 1, "{backend:?}: one person for one UnionID");
    let linked = entity::account::Entity::find()
        .filter(entity::account::Column::PersonId.eq(persons[0].id))
        .count(app.state.db())
        .await
        .unwrap();
    assert_eq!(linked, 2, "{backend:?}: both accounts linked to it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_queries_for_one_stale_person_share_one_call_per_app() {
    let (app, appids) = setup_with(Backend::Sqlite, |_| {}).await;
    let per_app = import(&app, &appids, 1).await;
    let unionid = app.sim.person(0).await.unionid;
    let apps_involved = per_app.iter().filter(|(_, n)| *n > 0).count() as u64;
    assert!(apps_involved > 0);
    app.sim.reset_calls().await;
    // WeChat takes its time, so the requests overlap the first one's fetch.
    batchget_fault(&app, json!({ "latency_ms": 300 })).await;
    let query = "query($u: String!) { person(unionid: $u) { accounts { nickname stale } } }";
    let calls = (0..50).map(|_| app.data(query, json!({ "u": unionid })));
    for data in futures::future::join_all(calls).await {
        assert!(data["person"]["accounts"].as_array().is_some());
    }
    assert_eq!(batchget_calls(&app), apps_involved);
    assert!(
        app.state.refresher().coalesced() > 0,
        "concurrent requests joined one flight"
    );
}

#[tokio::test]
async fn when_wechat_hangs_reads_answer_within_the_budget_from_the_store() {
    let (app, appids) = setup_with(Backend::Sqlite, |s| s.server.refresh_budget_ms = 300).await;
    import(&app, &appids, 20).await;
    batchget_fault(&app, json!({ "hang": true })).await;
    let started = Instant::now();
    let data = app.data(PAGE, json!({})).await;
    // The budget is 300 ms; a hang would otherwise last the client's timeout and retries.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let people = data["people"]["nodes"].as_array().unwrap();
    assert!(!people.is_empty());
    for person in people {
        for account in person["accounts"].as_array().unwrap() {
            assert_eq!(account["nickname"], "From sign-in", "nothing lost");
            assert_eq!(account["stale"], true);
            assert!(
                account["refreshError"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("budget")
            );
        }
    }
}

on_postgres!(waiting_for_the_other_root_fields_counts_against_the_budget);
async fn waiting_for_the_other_root_fields_counts_against_the_budget(backend: Backend) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    // A root field held back by a table lock: PostgreSQL only.
    // Long enough that a loaded machine's overhead stays far from the half
    // budget that tells a shared budget from one spent twice.
    let budget = Duration::from_secs(6);
    let (app, appids) = setup_with(backend, |s| {
        s.server.refresh_budget_ms = budget.as_millis() as u64;
    })
    .await;
    import(&app, &appids, 10).await;
    let person = app.sim.person(0).await;
    let (a, o) = person
        .followed_in(&appids)
        .into_iter()
        .next()
        .expect("person 0 follows a registered official account");
    batchget_fault(&app, json!({ "hang": true })).await;
    // `slow` cannot read the people for half the budget.
    let lock = app.state.db().begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE person IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(budget / 2).await;
        lock.commit().await.unwrap();
    });
    let started = Instant::now();
    let data = app
        .data(
            "query($a: String!, $o: String!) {
                one: account(appid: $a, openid: $o) { nickname stale refreshError { message } }
                slow: people(first: 1) { nodes { unionid } } }",
            json!({ "a": a, "o": o }),
        )
        .await;
    let elapsed = started.elapsed();
    release.await.unwrap();
    assert!(
        data["one"]["refreshError"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("budget")),
        "{data:#}"
    );
    // One budget in all: the wait for `slow` and the refresh share it
    // (waiting, then a whole budget more, would take 1.5 budgets).
    assert!(
        elapsed < budget.mul_f64(1.25),
        "the read took {elapsed:?} with a {budget:?} budget"
    );
}

#[tokio::test]
async fn when_wechat_fails_the_store_is_kept_and_the_error_recorded() {
    let (app, appids) = setup_with(Backend::Sqlite, |_| {}).await;
    import(&app, &appids, 20).await;
    batchget_fault(&app, json!({ "errcode": 45009 })).await;
    let data = app.data(PAGE, json!({})).await;
    for person in data["people"]["nodes"].as_array().unwrap() {
        for account in person["accounts"].as_array().unwrap() {
            assert_eq!(account["nickname"], "From sign-in");
            assert_eq!(account["stale"], true);
            assert_eq!(account["refreshError"]["code"], 45009, "{account}");
        }
    }
    // The quota breaker is open: reads go on from the store without calling.
    let before = batchget_calls(&app);
    app.data(PAGE, json!({})).await;
    assert_eq!(batchget_calls(&app), before);
}

#[tokio::test]
async fn cache_only_never_calls_wechat_and_force_always_does() {
    let (app, appids) = setup_with(Backend::Sqlite, |_| {}).await;
    import(&app, &appids, 20).await;
    app.sim.reset_calls().await;
    let cached = app.data(PAGE, json!({ "refresh": "CACHE_ONLY" })).await;
    assert_eq!(batchget_calls(&app), 0);
    assert!(cached["people"]["nodes"][0]["accounts"][0]["refreshedAt"].is_null());
    app.data(PAGE, json!({})).await;
    let after_first = batchget_calls(&app);
    assert!(after_first > 0);
    app.data(PAGE, json!({})).await;
    assert_eq!(batchget_calls(&app), after_first, "fresh: no call");
    app.data(PAGE, json!({ "refresh": "FORCE" })).await;
    assert_eq!(batchget_calls(&app), 2 * after_first, "force: called again");
}

on_postgres!(
    two_instances_on_one_postgres_database_make_one_call_per_account_set,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn two_instances_on_one_postgres_database_make_one_call_per_account_set(backend: Backend) {
    // Instances coordinate through PostgreSQL; SQLite serves one instance.
    let (a, appids) = setup_with(backend, |_| {}).await;
    let per_app = import(&a, &appids, 100).await;
    let database = a.state.settings().database.clone();
    let wechat = a.sim.base_url();
    let b = spawn_app_with(backend, |s| {
        s.database = database;
        s.server.wechat_api_base = wechat;
    })
    .await;
    a.sim.reset_calls().await;
    let reads = (0..6).map(|i| {
        let instance = if i % 2 == 0 { &a } else { &b };
        instance.data(PAGE, json!({}))
    });
    for data in futures::future::join_all(reads).await {
        assert!(
            data["people"]["nodes"]
                .as_array()
                .is_some_and(|n| !n.is_empty())
        );
    }
    let expected: u64 = per_app.iter().map(|(_, n)| n.div_ceil(100) as u64).sum();
    assert_eq!(batchget_calls(&a), expected, "{per_app:?}");
}

#[tokio::test]
async fn one_invalid_openid_leaves_the_others_refreshed_and_is_marked() {
    let clock = Clock::manual(chrono::Utc::now());
    let app = spawn_app_with_clock(Backend::Sqlite, clock.clone(), |_| {}).await;
    let appids = app.register_official_accounts().await;
    import(&app, &appids[..1], 120).await;
    app.upsert(json!([{ "appid": appids[0], "openid": "o_not_of_this_app_at_all_000", "unionid": "u-ghost" }]))
        .await;
    let data = app.data(PAGE, json!({})).await;
    let accounts: Vec<&Value> = data["people"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["accounts"].as_array().unwrap())
        .collect();
    let (bad, good): (Vec<&Value>, Vec<&Value>) = accounts
        .into_iter()
        .partition(|a| a["openid"] == "o_not_of_this_app_at_all_000");
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["refreshError"]["code"], 40003);
    assert_eq!(bad[0]["stale"], true);
    assert!(!good.is_empty());
    assert!(
        good.iter().all(|a| a["stale"] == false),
        "the others were refreshed"
    );
    // The refused openid is not tried again on every read (each try splits
    // a batch into several calls): a later read calls WeChat no more. (Past
    // the moment any just-refreshed account counts as done.)
    clock.advance(union360::refresh::RECENT + chrono::Duration::milliseconds(100));
    let calls = batchget_calls(&app);
    let again = app.data(PAGE, json!({})).await;
    assert_eq!(batchget_calls(&app), calls);
    assert!(again.to_string().contains("40003"), "the error stays shown");
    // An operator can still force it.
    app.data(PAGE, json!({ "refresh": "FORCE" })).await;
    assert!(batchget_calls(&app) > calls);
}

#[tokio::test]
async fn a_token_invalidated_mid_flight_costs_one_retry_and_the_query_succeeds() {
    let (app, appids) = setup_with(Backend::Sqlite, |s| {
        s.server.wechat_token_endpoint = union360::wechat::TokenEndpoint::Classic;
    })
    .await;
    import(&app, &appids, 20).await;
    app.data(PAGE, json!({ "refresh": "FORCE" })).await;
    app.sim
        .control(reqwest::Method::POST, "/_sim/tokens/invalidate", json!({}))
        .await;
    app.sim.reset_calls().await;
    let data = app.data(PAGE, json!({ "refresh": "FORCE" })).await;
    for person in data["people"]["nodes"].as_array().unwrap() {
        for account in person["accounts"].as_array().unwrap() {
            assert_eq!(account["stale"], false, "{account}");
        }
    }
    let apps_involved = app.sim.calls_to(api::TOKEN);
    assert!(apps_involved >= 1);
    assert_eq!(
        batchget_calls(&app),
        2 * apps_involved,
        "per app: the rejected call and one retry"
    );
}

#[tokio::test]
async fn the_freshness_ttl_is_set_per_app_or_server_wide() {
    let clock = Clock::manual(chrono::Utc::now());
    let app = spawn_app_with_clock(Backend::Sqlite, clock.clone(), |_| {}).await;
    let appids = app.register_official_accounts().await;
    import(&app, &appids[..1], 5).await;
    // Fetched two minutes ago.
    entity::account::Entity::update_many()
        .col_expr(
            entity::account::Column::RefreshedAt,
            sea_orm::sea_query::Expr::value(clock.now() - chrono::Duration::minutes(2)),
        )
        .exec(app.state.db())
        .await
        .unwrap();
    let stale = || async {
        let data = app.data(PAGE, json!({ "refresh": "CACHE_ONLY" })).await;
        data["people"]["nodes"][0]["accounts"][0]["stale"].clone()
    };
    assert_eq!(stale().await, false, "24 h by default");
    let set = "mutation($a: String!, $s: Int) { setFreshnessTtl(appid: $a, seconds: $s) { freshnessTtlSeconds } }";
    let data = app.data(set, json!({ "a": appids[0], "s": 60 })).await;
    assert_eq!(data["setFreshnessTtl"]["freshnessTtlSeconds"], 60);
    assert_eq!(stale().await, true, "older than the app's 60 s");
    let refused = app.graphql(set, json!({ "a": appids[0], "s": 5 })).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    app.data(set, json!({ "a": appids[0], "s": null })).await;
    assert_eq!(stale().await, false, "back to the server's default");
}

#[tokio::test]
async fn profiles_go_stale_when_the_clock_passes_their_ttl() {
    let clock = Clock::manual(chrono::Utc::now());
    let app = spawn_app_with_clock(Backend::Sqlite, clock.clone(), |_| {}).await;
    let appids = app.register_official_accounts().await;
    import(&app, &appids[..1], 10).await;
    app.data(PAGE, json!({})).await;
    let stale = || async {
        let data = app.data(PAGE, json!({ "refresh": "CACHE_ONLY" })).await;
        data["people"]["nodes"][0]["accounts"][0]["stale"].clone()
    };
    assert_eq!(stale().await, false, "just refreshed");
    let person = app
        .data("{ people(first: 1, refresh: CACHE_ONLY) { nodes { oldestRefreshedAt accounts { refreshable } } } }", json!({}))
        .await;
    assert!(person["people"]["nodes"][0]["oldestRefreshedAt"].is_string());
    assert_eq!(
        person["people"]["nodes"][0]["accounts"][0]["refreshable"],
        true
    );
    clock.advance(chrono::Duration::hours(23));
    assert_eq!(stale().await, false);
    clock.advance(chrono::Duration::hours(2));
    assert_eq!(stale().await, true, "25 h later, past the 24 h default");
}

/// Registers the simulator's official accounts and stores, in the first,
/// `real` of its followers with `fake` made-up openids inserted at their
/// positions; returns the keys in that order.
async fn real_and_made_up(app: &TestApp, real: usize, fake: &[usize]) -> Vec<Value> {
    let appid = app.register_official_accounts().await.remove(0);
    let mut openids = Vec::new();
    let mut i = 0;
    while openids.len() < real {
        for (a, openid, following) in app.sim.person(i).await.accounts {
            if a == appid && following && openids.len() < real {
                openids.push(openid);
            }
        }
        i += 1;
    }
    for (n, &at) in fake.iter().enumerate() {
        openids.insert(at, format!("o_made_up_openid_number_{n:04}"));
    }
    let keys: Vec<Value> = openids
        .iter()
        .map(|o| json!({ "appid": appid, "openid": o }))
        .collect();
    app.upsert(json!(keys)).await;
    keys
}

on_each_backend!(a_hundred_made_up_openids_cost_one_call_and_the_isolation_budget);
async fn a_hundred_made_up_openids_cost_one_call_and_the_isolation_budget(backend: Backend) {
    let clock = Clock::manual(chrono::Utc::now());
    let app = spawn_app_with_clock(backend, clock.clone(), |_| {}).await;
    let fake: Vec<usize> = (0..100).collect();
    let keys = real_and_made_up(&app, 0, &fake).await;
    app.sim.reset_calls().await;
    let data = app.data(REFRESH, json!({ "keys": keys })).await;
    let payload = &data["refreshAccounts"];
    let budget = union360::wechat::client::ISOLATION_CALLS as u64;
    assert_eq!(batchget_calls(&app), 1 + budget, "{backend:?}");
    assert_eq!(payload["fetched"], 0);
    let (invalid, failed) = (
        payload["invalid"].as_u64().unwrap(),
        payload["failed"].as_u64().unwrap(),
    );
    assert_eq!(invalid + failed, 100, "{payload}");
    assert!(
        failed > 0,
        "the budget ran out before every openid was isolated"
    );
    for account in payload["accounts"].as_array().unwrap() {
        assert_eq!(account["refreshError"]["code"], 40003, "{account}");
    }
    let unverified = payload["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["refreshError"]["message"]
                .as_str()
                .unwrap()
                .starts_with("not verified")
        })
        .count() as u64;
    assert_eq!(unverified, failed, "unverified ones are not marked invalid");
    // Reads do not drive them again within the TTL, whatever their state.
    clock.advance(union360::refresh::RECENT + chrono::Duration::milliseconds(100));
    let appid = keys[0]["appid"].as_str().unwrap();
    let read = format!(r#"{{ accounts(appid: "{appid}", first: 100) {{ nodes {{ stale }} }} }}"#);
    app.data(&read, json!({})).await;
    assert_eq!(
        batchget_calls(&app),
        1 + budget,
        "{backend:?}: no call on read"
    );
    // Past the TTL they are tried again, within the same bound.
    clock.advance(chrono::Duration::hours(25));
    app.data(&read, json!({})).await;
    assert_eq!(batchget_calls(&app), 2 * (1 + budget), "{backend:?}");
}

on_each_backend!(real_openids_among_made_up_ones_are_fetched_when_isolation_reaches_them);
async fn real_openids_among_made_up_ones_are_fetched_when_isolation_reaches_them(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let keys = real_and_made_up(&app, 99, &[42]).await;
    app.sim.reset_calls().await;
    let data = app.data(REFRESH, json!({ "keys": keys })).await;
    let payload = &data["refreshAccounts"];
    // The chunk refused, then halving it: 50 refused, 50 fetched, 25, 12
    // fetched, 6 refused, 7, 3, 1, 1 fetched; the one left is invalid.
    assert_eq!(batchget_calls(&app), 10, "{backend:?}: {payload}");
    assert_eq!(payload["fetched"], 99);
    assert_eq!(payload["invalid"], 1);
    assert_eq!(payload["failed"], 0);
    let accounts = payload["accounts"].as_array().unwrap();
    assert_eq!(accounts[42]["refreshError"]["code"], 40003);
    assert!(
        accounts
            .iter()
            .enumerate()
            .all(|(i, a)| i == 42 || a["stale"] == false),
        "every real openid was fetched"
    );
}

on_each_backend!(openids_refused_before_are_batched_apart_from_the_others);
async fn openids_refused_before_are_batched_apart_from_the_others(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    // 100 real followers with 100 made-up openids between them.
    let fake: Vec<usize> = (0..100).map(|i| 2 * i + 1).collect();
    let keys = real_and_made_up(&app, 100, &fake).await;
    let made_up: Vec<&Value> = fake.iter().map(|&i| &keys[i]).collect();
    app.data(REFRESH, json!({ "keys": made_up })).await;
    app.sim.reset_calls().await;
    // Interleaved, every batch of 100 would hold 50 of them; the ones
    // refused before go last: one call for the real ones, the budget for
    // the rest.
    let data = app.data(REFRESH, json!({ "keys": keys })).await;
    let payload = &data["refreshAccounts"];
    let budget = union360::wechat::client::ISOLATION_CALLS as u64;
    let counts = (&payload["failed"], &payload["invalid"]);
    assert_eq!(payload["fetched"], 100, "{backend:?}: {counts:?}");
    assert_eq!(batchget_calls(&app), 1 + (1 + budget), "{backend:?}");
}

/// With a WeChat that cannot be reached (here a host that never resolves),
/// an account's `refreshError` says which WeChat and why.
#[tokio::test]
async fn an_unreachable_wechat_is_named_in_the_refresh_error() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.wechat_api_base = "http://unreachable.invalid".to_owned();
    })
    .await;
    let oa = app.sim.official_accounts().remove(0);
    app.register(&oa.appid, "OFFICIAL_ACCOUNT", &oa.secret)
        .await;
    let person = app.sim.person(0).await;
    let (_, openid, _) = person
        .accounts
        .iter()
        .find(|(appid, _, _)| *appid == oa.appid)
        .unwrap()
        .clone();
    app.upsert(json!([{ "appid": oa.appid, "openid": openid }]))
        .await;
    let data = app
        .data(
            REFRESH,
            json!({ "keys": [{ "appid": oa.appid, "openid": openid }] }),
        )
        .await;
    let payload = &data["refreshAccounts"];
    assert_eq!(payload["failed"], 1, "{payload}");
    let message = payload["accounts"][0]["refreshError"]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.starts_with("WeChat unreachable at http://unreachable.invalid: "),
        "{message}"
    );
    assert!(message.contains("dns error"), "{message}");
    assert!(!message.contains(oa.secret.as_str()), "{message}");
}
