//! No secret in any response, log line or database file, and a master key
//! that can be rotated: the real binary, run as an operator runs it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use union360::simulator::{SimConfig, Simulator};
use union360::wechat::client::api;

use crate::helpers::{SimControl, client_with_key};

fn union360(db: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_union360"));
    command
        .env("DATABASE_URL", db)
        .env_remove("UNION360_MASTER_KEY")
        .env_remove("UNION360_LISTEN");
    command
}

/// Runs a command to completion; its standard output.
fn run(mut command: Command) -> String {
    let output = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `union360 serve` whose log goes to `log`.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(db: &str, sim: &str, log: &Path) -> Self {
        let port = free_port();
        let mut child = union360(db)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("WECHAT_API_BASE", sim)
            // A loaded test machine must not turn the refresh into a budget miss.
            .env("UNION360_REFRESH_BUDGET_MS", "10000")
            .env("RUST_LOG", "debug")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..600 {
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                return Self { child, base };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not start; see {}", log.display());
    }

    /// Stops it as an operator does (SIGTERM), so it flushes what it keeps.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("the server did not stop on SIGTERM");
    }
}

async fn graphql(client: &reqwest::Client, base: &str, query: &str, variables: Value) -> String {
    client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_response_a_log_or_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("secrets.db");
    let db = format!("sqlite://{}?mode=rwc", db_path.display());
    let sim = Simulator::spawn(SimConfig {
        people: 30,
        apps: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let oa = sim.official_accounts().remove(0);

    // Known secrets: the app's, and two API keys.
    let admin_key = run({
        let mut c = union360(&db);
        c.args([
            "apikey",
            "create",
            "--name",
            "admin",
            "--scopes",
            "read,pii,stats,write,admin",
        ]);
        c
    });
    let admin_key = admin_key.trim().to_owned();
    let log = dir.path().join("server.log");
    let server = Server::start(&db, &sim.base_url(), &log).await;
    let client = client_with_key(&admin_key);
    let base = server.base.clone();
    let mut responses = Vec::new();
    responses.push(
        graphql(
            &client,
            &base,
            "mutation($i: RegisterAppInput!) { registerApp(input: $i) { appid callbackConfigured } }",
            json!({ "i": {
                "appid": oa.appid, "kind": "OFFICIAL_ACCOUNT", "name": "OA",
                "secret": oa.secret, "callbackToken": oa.token, "encodingAesKey": oa.aes_key
            }}),
        )
        .await,
    );
    // A wrong secret too: its error must not echo it.
    responses.push(
        graphql(
            &client,
            &base,
            "mutation($i: RegisterAppInput!) { registerApp(input: $i) { appid } }",
            json!({ "i": { "appid": oa.appid, "kind": "OFFICIAL_ACCOUNT", "name": "OA", "secret": oa.secret }}),
        )
        .await,
    );
    let mut followers = Vec::new();
    for i in 0..30 {
        for (appid, openid) in sim
            .person(i)
            .await
            .followed_in(std::slice::from_ref(&oa.appid))
        {
            followers.push(json!({ "appid": appid, "openid": openid }));
        }
    }
    assert!(!followers.is_empty());
    responses.push(
        graphql(
            &client,
            &base,
            "mutation($r: [AccountInput!]!) { upsertAccounts(input: $r) { created } }",
            json!({ "r": followers }),
        )
        .await,
    );
    // Reading refreshes through WeChat: a token is fetched and cached.
    responses.push(
        graphql(
            &client,
            &base,
            "{ apps { appid name callbackConfigured freshnessTtlSeconds } \
               accounts(appid: \"$A\", first: 50) { nodes { openid unionid nickname refreshError { code message } } } }"
                .replace("$A", &oa.appid)
                .as_str(),
            json!({}),
        )
        .await,
    );
    let created = graphql(
        &client,
        &base,
        "mutation { createApiKey(input: { name: \"second\", scopes: [READ] }) { key apiKey { keyId } } }",
        json!({}),
    )
    .await;
    let second_key =
        serde_json::from_str::<Value>(&created).unwrap()["data"]["createApiKey"]["key"]
            .as_str()
            .unwrap()
            .to_owned();
    responses.push(
        graphql(
            &client_with_key(&second_key),
            &base,
            "{ apps { appid } }",
            json!({}),
        )
        .await,
    );
    responses.push(
        graphql(
            &client,
            &base,
            "{ apiKeys { keyId name scopes lastUsedAt } }",
            json!({}),
        )
        .await,
    );
    responses.push(
        graphql(
            &client,
            &base,
            "mutation($id: String!) { revokeApiKey(keyId: $id) { keyId revokedAt } }",
            json!({ "id": &second_key[..17] }),
        )
        .await,
    );
    responses.push(
        graphql(
            &client_with_key(&second_key),
            &base,
            "{ apps { appid } }",
            json!({}),
        )
        .await,
    );
    server.stop();

    // The access token the server was given, asked for the same way.
    let token: Value = reqwest::Client::new()
        .post(format!("{}{}", sim.base_url(), api::STABLE_TOKEN))
        .json(&json!({ "grant_type": "client_credential", "appid": oa.appid, "secret": oa.secret }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access_token = token["access_token"].as_str().unwrap().to_owned();
    assert!(
        responses[3].contains("\"unionid\":\"") && !responses[3].contains("\"errors\""),
        "the read refreshed through WeChat: {}",
        responses[3]
    );

    let secrets = [
        ("app secret", oa.secret.clone()),
        ("callback token", oa.token.clone().unwrap()),
        ("EncodingAESKey", oa.aes_key.clone().unwrap()),
        ("admin API key", admin_key[18..].to_owned()),
        ("second API key", second_key[18..].to_owned()),
        ("access token", access_token),
    ];
    let mut places: Vec<(String, Vec<u8>)> = responses
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("response {i}"), r.clone().into_bytes()))
        .collect();
    places.push(("server log".to_owned(), std::fs::read(&log).unwrap()));
    let logged = String::from_utf8_lossy(&places.last().unwrap().1).into_owned();
    assert!(
        logged.contains("DEBUG"),
        "the log was captured at debug level"
    );
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("secrets.db") && !name.ends_with(".master.key") {
            places.push((name, std::fs::read(&path).unwrap()));
        }
    }
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} is a real secret");
        for (place, bytes) in &places {
            let found = bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes());
            assert!(!found, "the {what} appears in {place}");
        }
    }
}

/// A secret of the form WeChat's take (32 hexadecimal characters), one per appid.
fn secret_of(appid: &str) -> String {
    appid[2..].repeat(2)
}

#[tokio::test]
async fn rotating_the_master_key_reseals_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("rotate.db");
    let db = format!("sqlite://{}?mode=rwc", db_path.display());
    let register = |appid: &str, kind: &str| {
        let mut c = union360(&db);
        c.args([
            "app", "add", "--appid", appid, "--kind", kind, "--name", appid,
        ])
        .env("UNION360_APP_SECRET", secret_of(appid))
        .env("UNION360_APP_CALLBACK_TOKEN", "callbacktoken123")
        .env(
            "UNION360_APP_AES_KEY",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        );
        run(c);
    };
    register("wx00000000000000c1", "official-account");
    register("wx00000000000000c2", "website");
    let key_file = union360::crypto::key_file_for(&db_path);
    let old_text = std::fs::read_to_string(&key_file).unwrap();

    run({
        let mut c = union360(&db);
        c.args(["master-key", "rotate"]);
        c
    });
    let new_text = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(old_text, new_text, "the key file holds a new key");
    let previous = dir.path().join("rotate.db.master.key.previous");
    assert_eq!(std::fs::read_to_string(previous).unwrap(), old_text);

    // Every secret opens under the new key, none under the old.
    let store = union360::store::connect(&db).await.unwrap();
    let new = union360::crypto::MasterKey::parse(&new_text).unwrap();
    let old = union360::crypto::MasterKey::parse(&old_text).unwrap();
    let apps = union360::apps::Apps::new(store.db.clone(), new, union360::clock::Clock::system());
    for appid in ["wx00000000000000c1", "wx00000000000000c2"] {
        let app = apps
            .by_appid(&union360::domain::AppId::parse(appid).unwrap())
            .await
            .unwrap()
            .unwrap();
        let credentials = apps.credentials(&app).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(credentials.secret.expose_secret(), secret_of(appid));
        let purpose = union360::apps::seal_purpose("secret", appid);
        assert!(old.open(&purpose, &app.secret_sealed).is_err());
    }
    let oa = apps
        .by_appid(&union360::domain::AppId::parse("wx00000000000000c1").unwrap())
        .await
        .unwrap()
        .unwrap();
    let new = union360::crypto::MasterKey::parse(&new_text).unwrap();
    use secrecy::ExposeSecret;
    let token = new
        .open(
            &union360::apps::seal_purpose("callback_token", "wx00000000000000c1"),
            oa.callback_token_sealed.as_deref().unwrap(),
        )
        .unwrap();
    assert_eq!(token.expose_secret(), "callbacktoken123");

    // A key given by the operator, the old one from the setting.
    let operator_key = "0101010101010101010101010101010101010101010101010101010101010101";
    run({
        let mut c = union360(&db);
        c.args(["master-key", "rotate"])
            .env("UNION360_MASTER_KEY", new_text.trim())
            .env("UNION360_NEW_MASTER_KEY", operator_key);
        c
    });
    let operator = union360::crypto::MasterKey::parse(operator_key).unwrap();
    let apps =
        union360::apps::Apps::new(store.db.clone(), operator, union360::clock::Clock::system());
    let app = apps
        .by_appid(&union360::domain::AppId::parse("wx00000000000000c2").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(apps.credentials(&app).is_ok());

    // The wrong current key re-seals nothing.
    let mut wrong = union360(&db);
    wrong
        .args(["master-key", "rotate"])
        .env("UNION360_MASTER_KEY", new_text.trim());
    let output = wrong.stdin(Stdio::null()).output().unwrap();
    assert!(!output.status.success());
    assert!(apps.credentials(&app).is_ok(), "nothing changed");
}
