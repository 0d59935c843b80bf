//! `spawn_app()`: a real union360 server with its own database and its own
//! WeChat simulator; one helper each for the simulator's control plane,
//! its call counters and registering apps; and the macros that run a test
//! on each database.

use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectionTrait, Database, Statement};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use union360::clock::Clock;
use union360::crypto::MasterKey;
use union360::keys::{KeyLimits, NewKey, Scopes};
use union360::settings::Settings;
use union360::simulator::{SimApp, SimConfig, SimHandle, Simulator};
use union360::startup::Application;
use union360::state::AppState;

/// The databases storage tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `async fn $name(backend: Backend)` as two tests: `$name::sqlite`,
/// and `$name::postgres`, which needs `TEST_DATABASE_URL` (read when the
/// tests are built) and is reported as ignored, with the reason, without
/// it. Arguments after the name go to `#[tokio::test(…)]`.
macro_rules! on_each_backend {
    ($name:ident $(, $($flavor:tt)+)?) => {
        mod $name {
            #[tokio::test$(($($flavor)+))?]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test$(($($flavor)+))?]
            #[cfg_attr(not(postgres_tests), ignore = "needs PostgreSQL: set TEST_DATABASE_URL")]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await;
            }
        }
    };
}

/// Runs `async fn $name(backend: Backend)` as one test on PostgreSQL only
/// (what only several instances sharing a database can show), reported as
/// ignored, with the reason, without `TEST_DATABASE_URL`.
macro_rules! on_postgres {
    ($name:ident $(, $($flavor:tt)+)?) => {
        mod $name {
            #[tokio::test$(($($flavor)+))?]
            #[cfg_attr(not(postgres_tests), ignore = "needs PostgreSQL: set TEST_DATABASE_URL")]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await;
            }
        }
    };
}

/// An AppSecret of the form WeChat's take (32 hexadecimal characters), for
/// apps WeChat is never asked about.
pub const UNUSED_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A running server.
pub struct TestApp {
    pub address: String,
    /// The WeChat simulator this server talks to.
    pub sim: SimHandle,
    /// Sends every request with [`Self::key`].
    pub client: reqwest::Client,
    /// An API key with every scope.
    pub key: String,
    pub state: AppState,
    _dir: tempfile::TempDir,
}

/// Starts a server on port 0 with a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with settings adjusted by `adjust`.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(backend, Clock::system(), adjust).await
}

/// Like [`spawn_app_with`], with the server reading time from `clock`.
pub async fn spawn_app_with_clock(
    backend: Backend,
    clock: Clock,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let world = SimConfig {
        people: 400,
        apps: 3,
        ..SimConfig::default()
    };
    spawn_app_in(backend, clock, world, adjust).await
}

/// Like [`spawn_app_with_clock`], with a simulated WeChat world of `world`.
pub async fn spawn_app_in(
    backend: Backend,
    clock: Clock,
    world: SimConfig,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut app = spawn_app_without_keys(backend, clock, world, adjust).await;
    app.key = create_key(&app.state, "tests", Scopes::all()).await;
    app.client = client_with_key(&app.key);
    app
}

/// A server as a fresh install is: no API key exists yet (`key` is empty
/// and `client` sends none).
pub async fn spawn_app_without_keys(
    backend: Backend,
    clock: Clock,
    world: SimConfig,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        union360::telemetry::init();
    }
    let (url, dir) = fresh_database(backend).await;
    // Every server talks to a WeChat simulator of its own, never to WeChat.
    let sim = Simulator::spawn(world).await.expect("simulator starts");
    let mut settings = Settings::new(url);
    settings.server.listen = "127.0.0.1:0".parse().expect("address");
    settings.server.wechat_api_base = sim.base_url();
    // A loaded test machine must not turn a refresh into a budget miss; the
    // tests of the budget itself set a short one.
    settings.server.refresh_budget_ms = 10_000;
    let (_, key) = MasterKey::generate();
    settings.database.master_key = Some(key);
    adjust(&mut settings);
    let app = Application::build_with_clock(settings, clock)
        .await
        .expect("server builds");
    let address = format!("http://{}", app.local_addr().expect("bound"));
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        address,
        sim,
        client: reqwest::Client::new(),
        key: String::new(),
        state,
        _dir: dir,
    }
}

/// Creates an API key with `scopes` and returns it. Its limits are far
/// above what any test sends: the tests of the limits set their own.
pub async fn create_key(state: &AppState, name: &str, scopes: Scopes) -> String {
    let created = state
        .keys()
        .create(NewKey {
            name: name.to_owned(),
            scopes,
            limits: KeyLimits {
                rate_per_sec: Some(1_000_000),
                burst: Some(1_000_000),
                max_concurrent: Some(100_000),
            },
        })
        .await
        .expect("API key created");
    created.key.expose_secret().to_owned()
}

/// An HTTP client that sends `key` as the bearer token of every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// A fresh, empty database of `backend`: its URL, and the directory that
/// holds it (SQLite) and must outlive it.
pub async fn fresh_database(backend: Backend) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
        Backend::Postgres => fresh_postgres_database().await,
    };
    (url, dir)
}

/// Creates a database of its own on the `TEST_DATABASE_URL` server and returns its URL.
/// Databases left by earlier runs (older than an hour) are dropped on the way.
async fn fresh_postgres_database() -> String {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL was set when the tests were built; set it to run them");
    let admin = Database::connect(&admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let old = admin
        .query_all_raw(Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'u360t\\_%'".to_owned(),
        ))
        .await
        .expect("list databases");
    for row in old {
        let name: String = row.try_get("", "datname").expect("datname");
        let born: u64 = name
            .split('_')
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        if now.saturating_sub(born) > 3600 {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
    let name = format!("u360t_{now}_{:08x}", rand::random::<u32>());
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

impl TestApp {
    /// Another server on this one's database, master key and simulator,
    /// with its own clock (the system's): a second instance of a fleet.
    /// It shares this one's API key.
    pub async fn another_instance(&self) -> TestApp {
        let app = Application::build_with_clock(self.state.settings().clone(), Clock::system())
            .await
            .expect("second server builds");
        let address = format!("http://{}", app.local_addr().expect("bound"));
        let state = app.state().clone();
        tokio::spawn(app.run_until(std::future::pending()));
        TestApp {
            address,
            sim: self.sim.clone(),
            client: self.client.clone(),
            key: self.key.clone(),
            state,
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// POSTs a GraphQL request and returns the JSON body (any status).
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON body")
    }

    /// The statements run for clients so far, once the API key table has
    /// just been read: a request made in the next seconds does not reload
    /// it, so its statements are its own.
    pub async fn statements_from_now(&self) -> u64 {
        self.state.keys().any().await.expect("the key table reads");
        self.state.store().client_statements.get()
    }

    /// Like [`Self::graphql`], but panics on errors and returns `data`.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let body = self.graphql(query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
        body["data"].clone()
    }

    /// Registers an app of `kind` with `secret` through the API.
    pub async fn register(&self, appid: &str, kind: &str, secret: &str) {
        self.data(
            "mutation($input: RegisterAppInput!) { registerApp(input: $input) { appid } }",
            json!({ "input": { "appid": appid, "kind": kind, "name": appid, "secret": secret } }),
        )
        .await;
    }

    /// Registers an app of `kind` that WeChat is never asked about.
    pub async fn register_app(&self, appid: &str, kind: &str) {
        self.register(appid, kind, UNUSED_SECRET).await;
    }

    /// Registers the simulator's bound official accounts, with their real
    /// secrets; returns their appids.
    pub async fn register_official_accounts(&self) -> Vec<String> {
        let mut appids = Vec::new();
        for oa in self.sim.official_accounts() {
            self.register(&oa.appid, "OFFICIAL_ACCOUNT", &oa.secret)
                .await;
            appids.push(oa.appid);
        }
        assert!(
            !appids.is_empty(),
            "the simulated world has a bound official account"
        );
        appids
    }

    /// Upserts accounts through the API and returns the payload.
    pub async fn upsert(&self, rows: Value) -> Value {
        self.data(
            "mutation($rows: [AccountInput!]!) { upsertAccounts(input: $rows) {
                created linked updated unchanged refused personsCreated
                results { index outcome reason personCreated account { openid unionid unionidConflict nickname } }
            } }",
            json!({ "rows": rows }),
        )
        .await["upsertAccounts"]
            .clone()
    }
}

/// The `extensions.code` of each of a body's errors, in order (`<none>`
/// for an error without one).
pub fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e["extensions"]["code"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One person of the simulated world: unionid, and (appid, openid, following) per app.
pub struct SimPerson {
    pub unionid: String,
    pub accounts: Vec<(String, String, bool)>,
}

impl SimPerson {
    /// The (appid, openid) of the accounts this person follows among `appids`.
    pub fn followed_in(&self, appids: &[String]) -> Vec<(String, String)> {
        self.accounts
            .iter()
            .filter(|(appid, _, following)| *following && appids.contains(appid))
            .map(|(appid, openid, _)| (appid.clone(), openid.clone()))
            .collect()
    }
}

/// The simulator's control plane (`/_sim`, over HTTP) and call counters.
pub trait SimControl {
    /// Sends a control request; returns its JSON answer (`null` when none).
    async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value;

    /// Makes the endpoint at `path` misbehave as `fault` says (`errcode`,
    /// `latency_ms`, `hang`, `count`, …).
    async fn fault(&self, path: &str, mut fault: Value) {
        fault["path"] = json!(path);
        self.control(reqwest::Method::POST, "/_sim/faults", fault)
            .await;
    }

    /// Zeroes the call counters.
    async fn reset_calls(&self) {
        self.control(reqwest::Method::DELETE, "/_sim/calls", json!({}))
            .await;
    }

    /// Calls to the WeChat endpoint at `path` since the last reset.
    fn calls_to(&self, path: &str) -> u64;

    /// Person `index` of the simulated world, as the control plane shows it
    /// (profile and every app's account).
    async fn person_json(&self, index: u32) -> Value;

    /// Person `index` of the simulated world.
    async fn person(&self, index: u32) -> SimPerson;

    /// The bound official accounts of the simulated world.
    fn official_accounts(&self) -> Vec<SimApp>;
}

impl SimControl for SimHandle {
    async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.base_url()))
            .json(&body)
            .send()
            .await
            .expect("the simulator answers")
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    fn calls_to(&self, path: &str) -> u64 {
        self.sim.calls().get(path).copied().unwrap_or(0)
    }

    async fn person_json(&self, index: u32) -> Value {
        self.control(
            reqwest::Method::GET,
            &format!("/_sim/people/{index}"),
            Value::Null,
        )
        .await
    }

    async fn person(&self, index: u32) -> SimPerson {
        let person = self.person_json(index).await;
        SimPerson {
            unionid: person["unionid"].as_str().unwrap().to_owned(),
            accounts: person["apps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["appid"].as_str().unwrap().to_owned(),
                        a["openid"].as_str().unwrap().to_owned(),
                        a["following"].as_bool().unwrap(),
                    )
                })
                .collect(),
        }
    }

    fn official_accounts(&self) -> Vec<SimApp> {
        self.sim
            .apps()
            .into_iter()
            .filter(|a| a.kind == "OFFICIAL_ACCOUNT" && a.bound)
            .collect()
    }
}
