//! Registering apps: secrets are validated, sealed at rest and never shown.

use entity::app;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::helpers::{Backend, spawn_app};

/// A real AppSecret's form: 32 hexadecimal characters.
const SECRET: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75e";

const REGISTER: &str = "mutation($input: RegisterAppInput!) {
    registerApp(input: $input) { appid kind name callbackConfigured } }";

on_each_backend!(secrets_are_sealed_at_rest_and_never_returned);
async fn secrets_are_sealed_at_rest_and_never_returned(backend: Backend) {
    let app = spawn_app(backend).await;
    let input = json!({
        "appid": "wx49f0ab532d5d035a", "kind": "OFFICIAL_ACCOUNT", "name": "Main account",
        "secret": SECRET, "callbackToken": "123456",
        "encodingAesKey": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
    });
    let body = app.graphql(REGISTER, json!({ "input": input })).await;
    assert_eq!(
        body["data"]["registerApp"]["callbackConfigured"], true,
        "{backend:?}"
    );
    assert!(!body.to_string().contains(SECRET));

    let row = app::Entity::find()
        .filter(app::Column::Appid.eq("wx49f0ab532d5d035a"))
        .one(app.state.db())
        .await
        .unwrap()
        .unwrap();
    assert!(!row.secret_sealed.contains(SECRET));
    let opened = app
        .state
        .master_key()
        .open(
            &union360::apps::seal_purpose("secret", &row.appid),
            &row.secret_sealed,
        )
        .unwrap();
    assert_eq!(opened.expose_secret(), SECRET);

    let listed = app.data("{ apps { appid kind name } }", json!({})).await;
    assert_eq!(listed["apps"][0]["appid"], "wx49f0ab532d5d035a");
    assert!(!listed.to_string().contains(SECRET));
}

#[tokio::test]
async fn invalid_or_duplicate_apps_are_refused_with_bad_user_input() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    app.register_app("wx0000000000000001", "MINI_PROGRAM").await;
    let cases = [
        (
            json!({ "appid": "wx0000000000000001", "kind": "MINI_PROGRAM", "name": "again", "secret": SECRET }),
            None,
        ),
        (
            json!({ "appid": "not-an-appid", "kind": "MINI_PROGRAM", "name": "x", "secret": SECRET }),
            Some(json!(["appid"])),
        ),
        (
            json!({ "appid": "wx0000000000000002", "kind": "OFFICIAL_ACCOUNT", "name": "x", "secret": SECRET,
                    "encodingAesKey": "too-short" }),
            Some(json!(["encodingAesKey"])),
        ),
        (
            json!({ "appid": "wx0000000000000003", "kind": "WEBSITE", "name": "x", "secret": SECRET,
                    "callbackToken": "abc123" }),
            Some(json!(["callbackToken"])),
        ),
        (
            json!({ "appid": "wx0000000000000004", "kind": "WEBSITE", "name": "x", "secret": "" }),
            Some(json!(["secret"])),
        ),
    ];
    for (input, fields) in cases {
        let body = app.graphql(REGISTER, json!({ "input": input })).await;
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{input}: {body}"
        );
        if let Some(fields) = fields {
            assert_eq!(error["extensions"]["fields"], fields, "{input}: {body}");
        }
    }
    let listed = app.data("{ apps { appid } }", json!({})).await;
    assert_eq!(listed["apps"].as_array().unwrap().len(), 1);
}

/// Placeholders copied from an example are refused, every one in the same
/// error, which names each field (and shows no value).
#[tokio::test]
async fn every_invalid_field_is_reported_in_one_error() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let input = json!({
        "appid": "wx49f0ab532d5d035a", "kind": "OFFICIAL_ACCOUNT", "name": "Main account",
        "secret": "…", "callbackToken": "…", "encodingAesKey": "…"
    });
    let body = app.graphql(REGISTER, json!({ "input": input })).await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(
        errors[0]["extensions"]["fields"],
        json!(["secret", "callbackToken", "encodingAesKey"]),
        "{body}"
    );
    let message = errors[0]["message"].as_str().unwrap();
    for field in ["secret", "callbackToken", "encodingAesKey"] {
        assert!(message.contains(field), "{message}");
    }
    assert!(!message.contains('…'), "{message}");

    let everything_wrong = json!({
        "appid": "wx…", "kind": "WEBSITE", "name": "", "secret": " ",
        "callbackToken": "abc123", "freshnessTtlSeconds": 1
    });
    let body = app
        .graphql(REGISTER, json!({ "input": everything_wrong }))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["fields"],
        json!([
            "appid",
            "name",
            "secret",
            "callbackToken",
            "freshnessTtlSeconds"
        ]),
        "{body}"
    );
    let listed = app.data("{ apps { appid } }", json!({})).await;
    assert_eq!(listed["apps"], json!([]));
}

/// An AppSecret is 32 hexadecimal characters: anything else is refused,
/// whatever its kind of app.
#[tokio::test]
async fn only_what_can_be_an_app_secret_is_taken() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let too_long = "a".repeat(33);
    let padded = format!(" {SECRET}");
    for (i, secret) in ["…", "", "   ", "secret", &too_long, &padded, "<AppSecret>"]
        .iter()
        .enumerate()
    {
        let input = json!({
            "appid": format!("wx00000000000000{i:02}"), "kind": "MINI_PROGRAM", "name": "x",
            "secret": secret
        });
        let body = app.graphql(REGISTER, json!({ "input": input })).await;
        assert_eq!(
            body["errors"][0]["extensions"]["fields"],
            json!(["secret"]),
            "{secret:?}: {body}"
        );
    }
    for (i, secret) in [SECRET, "ABCDEF0123456789ABCDEF0123456789"]
        .iter()
        .enumerate()
    {
        let input = json!({
            "appid": format!("wx00000000000001{i:02}"), "kind": "MINI_PROGRAM", "name": "x",
            "secret": secret
        });
        app.data(REGISTER, json!({ "input": input })).await;
    }
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
        .write_all(b"c11c11c11c11c11c11c11c11c11c11c1\ntok123\nkWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR\n")
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
    assert!(!stdout.contains("c11c11c11c11"));
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

/// `app add` checks the same rules and reports every invalid field at
/// once, under the flag or variable it came from.
#[test]
fn the_cli_reports_every_invalid_field_at_once() {
    use std::process::Command;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
    let bin = env!("CARGO_BIN_EXE_union360");
    let add = Command::new(bin)
        .args([
            "app",
            "register",
            "--appid",
            "wx…",
            "--kind",
            "official-account",
        ])
        .args(["--name", "CLI account", "--database-url", &url])
        .env_remove("UNION360_MASTER_KEY")
        .env("UNION360_APP_SECRET", "…")
        .env("UNION360_APP_CALLBACK_TOKEN", "…")
        .env("UNION360_APP_AES_KEY", "…")
        .output()
        .unwrap();
    assert!(!add.status.success());
    let stderr = String::from_utf8_lossy(&add.stderr);
    for source in [
        "--appid",
        "UNION360_APP_SECRET",
        "UNION360_APP_CALLBACK_TOKEN",
        "UNION360_APP_AES_KEY",
    ] {
        assert!(stderr.contains(source), "{source}: {stderr}");
    }
    let list = Command::new(bin)
        .args(["app", "list", "--database-url", &url])
        .env_remove("UNION360_MASTER_KEY")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).starts_with("no apps registered"),
        "{list:?}"
    );
}
