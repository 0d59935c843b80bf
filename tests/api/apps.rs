//! Registering apps: secrets are validated, sealed at rest and never shown.

use entity::app;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::helpers::{Backend, spawn_app};

const REGISTER: &str = "mutation($input: RegisterAppInput!) {
    registerApp(input: $input) { appid kind name callbackConfigured } }";

on_each_backend!(secrets_are_sealed_at_rest_and_never_returned);
async fn secrets_are_sealed_at_rest_and_never_returned(backend: Backend) {
    let app = spawn_app(backend).await;
    let input = json!({
        "appid": "wx49f0ab532d5d035a", "kind": "OFFICIAL_ACCOUNT", "name": "Main account",
        "secret": "very-secret-appsecret", "callbackToken": "123456",
        "encodingAesKey": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
    });
    let body = app.graphql(REGISTER, json!({ "input": input })).await;
    assert_eq!(
        body["data"]["registerApp"]["callbackConfigured"], true,
        "{backend:?}"
    );
    assert!(!body.to_string().contains("very-secret"));

    let row = app::Entity::find()
        .filter(app::Column::Appid.eq("wx49f0ab532d5d035a"))
        .one(app.state.db())
        .await
        .unwrap()
        .unwrap();
    assert!(!row.secret_sealed.contains("very-secret"));
    let opened = app
        .state
        .master_key()
        .open(
            &union360::apps::seal_purpose("secret", &row.appid),
            &row.secret_sealed,
        )
        .unwrap();
    assert_eq!(opened.expose_secret(), "very-secret-appsecret");

    let listed = app.data("{ apps { appid kind name } }", json!({})).await;
    assert_eq!(listed["apps"][0]["appid"], "wx49f0ab532d5d035a");
    assert!(!listed.to_string().contains("very-secret"));
}

#[tokio::test]
async fn invalid_or_duplicate_apps_are_refused_with_bad_user_input() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    app.register_app("wx0000000000000001", "MINI_PROGRAM").await;
    let cases = [
        json!({ "appid": "wx0000000000000001", "kind": "MINI_PROGRAM", "name": "again", "secret": "s" }),
        json!({ "appid": "not-an-appid", "kind": "MINI_PROGRAM", "name": "x", "secret": "s" }),
        json!({ "appid": "wx0000000000000002", "kind": "OFFICIAL_ACCOUNT", "name": "x", "secret": "s",
                "encodingAesKey": "too-short" }),
        json!({ "appid": "wx0000000000000003", "kind": "WEBSITE", "name": "x", "secret": "s",
                "callbackToken": "abc123" }),
        json!({ "appid": "wx0000000000000004", "kind": "WEBSITE", "name": "x", "secret": "" }),
    ];
    for input in cases {
        let body = app.graphql(REGISTER, json!({ "input": input })).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{input}: {body}"
        );
    }
    let listed = app.data("{ apps { appid } }", json!({})).await;
    assert_eq!(listed["apps"].as_array().unwrap().len(), 1);
}

#[test]
fn the_cli_registers_apps_with_secrets_from_stdin_and_lists_them_without() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
    let bin = env!("CARGO_BIN_EXE_union360");
    let mut add = Command::new(bin)
        .args([
            "app",
            "add",
            "--appid",
            "wx1111111111111111",
            "--kind",
            "official-account",
        ])
        .args(["--name", "CLI account", "--database-url", &url])
        .env_remove("UNION360_MASTER_KEY")
        .env_remove("UNION360_APP_SECRET")
        .env_remove("UNION360_APP_CALLBACK_TOKEN")
        .env_remove("UNION360_APP_AES_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"cli-secret-value\ntok123\nkWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR\n")
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let list = Command::new(bin)
        .args(["app", "list", "--database-url", &url])
        .env_remove("UNION360_MASTER_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(
        stdout.contains("wx1111111111111111\tOFFICIAL_ACCOUNT\tCLI account\tcallback configured"),
        "{stdout}"
    );
    assert!(!stdout.contains("cli-secret-value"));
    // The key file was generated beside the database, readable by its owner only.
    let key = dir.path().join("cli.db.master.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn postgres_refuses_to_start_without_a_master_key() {
    let settings = union360::settings::Settings::new("postgres://postgres@127.0.0.1:1/none");
    let error = union360::startup::Application::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(
        error
            .to_string()
            .contains("UNION360_MASTER_KEY is required"),
        "{error}"
    );
}

on_postgres!(an_app_registered_on_another_instance_is_found_at_once);
async fn an_app_registered_on_another_instance_is_found_at_once(backend: Backend) {
    // Instances share one database only on PostgreSQL.
    let a = spawn_app(backend).await;
    let database = a.state.settings().database.clone();
    let b = crate::helpers::spawn_app_with(backend, |s| s.database = database).await;
    let accounts = "query($a: String!) { accounts(appid: $a) { totalCount nodes { appid } } }";
    // b holds the apps in memory before the new one exists.
    a.register_app("wx0000000000000001", "OFFICIAL_ACCOUNT")
        .await;
    b.data(accounts, json!({ "a": "wx0000000000000001" })).await;
    a.register_app("wx0000000000000002", "MINI_PROGRAM").await;
    a.upsert(json!([{ "appid": "wx0000000000000002", "openid": "o-new" }]))
        .await;
    let data = b.data(accounts, json!({ "a": "wx0000000000000002" })).await;
    assert_eq!(data["accounts"]["totalCount"], 1);
    assert_eq!(
        data["accounts"]["nodes"][0]["appid"], "wx0000000000000002",
        "the account's app is found too"
    );
}
