//! No N+1: a page of people with their accounts and apps costs a constant
//! number of SQL statements, whatever the page size.

use entity::account;
use sea_orm::EntityTrait;
use sea_orm::sea_query::Expr;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

const PAGE: &str = "query($first: Int, $refresh: RefreshPolicy) { people(first: $first, refresh: $refresh) { edges { node {
    unionid nickname city
    accounts { openid nickname following app { appid name kind } }
} } } }";

/// The same page without the apps: the freshness check still needs them.
const PAGE_WITHOUT_APPS: &str = "query($first: Int, $refresh: RefreshPolicy) { people(first: $first, refresh: $refresh) { edges { node {
    unionid nickname accounts { openid nickname stale refreshError { code } }
} } } }";

async fn statements_for(app: &TestApp, first: i64, refresh: &str) -> u64 {
    statements_of(app, PAGE, first, refresh).await
}

async fn statements_of(app: &TestApp, query: &str, first: i64, refresh: &str) -> u64 {
    let before = app.statements_from_now().await;
    let data = app
        .data(query, json!({ "first": first, "refresh": refresh }))
        .await;
    let after = app.state.store().client_statements.get();
    let edges = data["people"]["edges"].as_array().unwrap();
    assert_eq!(edges.len() as i64, first);
    assert_eq!(edges[0]["node"]["accounts"].as_array().unwrap().len(), 3);
    after - before
}

on_each_backend!(a_page_of_people_with_accounts_and_apps_costs_at_most_four_statements);
async fn a_page_of_people_with_accounts_and_apps_costs_at_most_four_statements(backend: Backend) {
    let app = spawn_app(backend).await;
    let appids: Vec<String> = (0..3).map(|i| format!("wx{i:016x}")).collect();
    for appid in &appids {
        app.register_app(appid, "OFFICIAL_ACCOUNT").await;
    }
    let rows: Vec<Value> = (0..100)
        .flat_map(|p| {
            appids.iter().map(move |appid| {
                json!({ "appid": appid, "openid": format!("{appid}-{p}"), "unionid": format!("u{p}"),
                        "nickname": format!("n{p}"), "following": true })
            })
        })
        .collect();
    app.upsert(json!(rows)).await;

    // The first read loads the apps into the process's memory.
    let cold = statements_for(&app, 10, "CACHE_ONLY").await;
    let small = statements_for(&app, 10, "CACHE_ONLY").await;
    assert_eq!(cold, small + 1, "{backend:?}: the apps are read once");
    let large = statements_for(&app, 100, "CACHE_ONLY").await;
    assert!(
        large <= 4,
        "{backend:?}: a page of 100 took {large} statements"
    );
    assert_eq!(
        small, large,
        "{backend:?}: statement count grows with the page"
    );

    // Fresh profiles cost nothing more with refresh on (the freshness
    // check reads what the page loaded anyway).
    account::Entity::update_many()
        .col_expr(
            account::Column::RefreshedAt,
            Expr::value(chrono::Utc::now()),
        )
        .exec(app.state.db())
        .await
        .unwrap();
    let fresh = statements_for(&app, 100, "IF_STALE").await;
    assert_eq!(
        fresh, large,
        "{backend:?}: the freshness check added statements"
    );
    let cached = statements_of(&app, PAGE_WITHOUT_APPS, 100, "CACHE_ONLY").await;
    let fresh = statements_of(&app, PAGE_WITHOUT_APPS, 100, "IF_STALE").await;
    assert_eq!(
        fresh, cached,
        "{backend:?}: the freshness check added statements to a page without apps"
    );
}
