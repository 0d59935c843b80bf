//! The real binary as a new user first meets it: what its help shows, what
//! it says when it starts, and what it leaves behind when it stops.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// Long enough to mean "hung", never reached by a working binary.
const HANG: Duration = Duration::from_secs(60);

/// `union360` with an environment of its own: nothing from the test's.
fn union360() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_union360"));
    command
        .env_clear()
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// A started `union360 serve` and the lines of its log.
struct Server {
    child: Child,
    lines: Lines<BufReader<ChildStderr>>,
    /// The log lines read so far.
    log: Vec<String>,
}

impl Server {
    /// Starts `union360 serve` on a free port with `env`, and waits until
    /// it logs that it listens.
    async fn start(db: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = union360()
            .arg("serve")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .env("UNION360_LISTEN", "127.0.0.1:0")
            .env("WECHAT_API_BASE", "http://127.0.0.1:1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut server = Self {
            child,
            lines,
            log: Vec::new(),
        };
        server.read_until("union360 listening").await;
        server
    }

    /// `http://127.0.0.1:<port>`, as the server says it listens.
    fn base(&self) -> String {
        let line = self
            .log
            .iter()
            .find(|l| l.contains("union360 listening"))
            .unwrap();
        let from = line.find("http://").unwrap();
        let to = from + line[from..].find("/graphql").unwrap();
        line[from..to].to_owned()
    }

    /// Reads log lines until one contains `needle`; panics if the log ends first.
    async fn read_until(&mut self, needle: &str) {
        let found = tokio::time::timeout(HANG, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                let hit = line.contains(needle);
                self.log.push(line);
                if hit {
                    return true;
                }
            }
            false
        })
        .await
        .expect("the server logs in time");
        assert!(
            found,
            "no log line with {needle:?} in:\n{}",
            self.log.join("\n")
        );
    }

    /// Sends `signal` (`INT`, `TERM`) and waits for the process to end;
    /// its exit status, with the rest of its log read.
    async fn stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
        let status = tokio::time::timeout(HANG, self.child.wait())
            .await
            .expect("the server exits")
            .unwrap();
        while let Some(line) = self.lines.next_line().await.unwrap() {
            self.log.push(line);
        }
        status
    }
}

/// The files beside `db` that SQLite's write-ahead log keeps while the
/// database is open.
fn wal_files(db: &Path) -> Vec<String> {
    ["-wal", "-shm"]
        .iter()
        .map(|suffix| format!("{}{suffix}", db.display()))
        .filter(|path| Path::new(path).exists())
        .collect()
}

/// Ctrl-C (and SIGTERM, as a service manager sends it) closes the
/// database: SQLite checkpoints its log and removes the `-wal` and `-shm`
/// files, and the last log line says the server stopped.
#[cfg(unix)]
#[tokio::test]
async fn shutdown_closes_the_database_and_says_so() {
    for signal in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("u.db");
        let mut server = Server::start(&db, &[]).await;
        assert!(
            !wal_files(&db).is_empty(),
            "a running server keeps its write-ahead log open"
        );
        let status = server.stop_with(signal).await;
        assert!(status.success(), "SIG{signal}: {status}");
        let last = server.log.last().cloned().unwrap_or_default();
        assert!(
            last.contains("stopped; database closed"),
            "SIG{signal}: the last log line says so: {last:?}\n{}",
            server.log.join("\n")
        );
        assert_eq!(
            wal_files(&db),
            Vec::<String>::new(),
            "SIG{signal}: nothing left beside the database"
        );
    }
}

/// `union360 <args> --help`: its standard output.
async fn help(args: &[&str]) -> String {
    let output = union360().args(args).arg("--help").output().await.unwrap();
    assert!(output.status.success(), "{args:?} --help: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The help of a command lists only the flags that apply to it: the
/// database's belong to the commands that open one.
#[tokio::test]
async fn help_lists_the_database_flags_only_where_they_apply() {
    const DATABASE_FLAGS: [&str; 3] = [
        "--database-url",
        "--master-key",
        "--database-connect-timeout-secs",
    ];
    // (`bench` runs on a fresh SQLite file, or on the PostgreSQL database a
    // `--database-url` before it names, which its help says.)
    for command in [&["simulator"][..], &["schema"]] {
        let text = help(command).await;
        for flag in DATABASE_FLAGS {
            assert!(
                !text.contains(flag),
                "{command:?} --help lists {flag}:\n{text}"
            );
        }
    }
    for command in [
        &[][..],
        &["serve"],
        &["migrate"],
        &["app", "add"],
        &["apikey", "create"],
        &["master-key", "rotate"],
    ] {
        let text = help(command).await;
        for flag in DATABASE_FLAGS {
            assert!(
                text.contains(flag),
                "{command:?} --help lacks {flag}:\n{text}"
            );
        }
    }
}

/// The README's simulator command keeps every official account bound, says
/// which apps are bound and which are not, in the singular where it should,
/// and `/_sim/apps` agrees.
#[tokio::test]
async fn the_simulator_says_which_apps_are_bound() {
    let mut child = union360()
        .args([
            "simulator",
            "--people",
            "100000",
            "--apps",
            "6",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    tokio::time::timeout(HANG, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let last = line.starts_with("point union360 at it");
            out.push(line);
            if last {
                break;
            }
        }
    })
    .await
    .expect("the simulator starts");
    let text = out.join("\n");
    let base = out[0]
        .strip_prefix("WeChat simulator listening on ")
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned();
    assert!(
        out[1].contains(
            "6 apps (3 official accounts, 1 mini program, 1 mobile app, 1 website; 2 unbound)"
        ),
        "{text}"
    );
    let apps: Vec<serde_json::Value> = reqwest::get(format!("{base}/_sim/apps"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(apps.len(), 6);
    for app in &apps {
        let appid = app["appid"].as_str().unwrap();
        let kind = app["kind"].as_str().unwrap();
        let bound = app["bound"].as_bool().expect("/_sim/apps says `bound`");
        if kind == "OFFICIAL_ACCOUNT" {
            assert!(bound, "official account {appid} is bound:\n{text}");
        }
        let line = out
            .iter()
            .find(|l| l.trim_start().starts_with(appid))
            .unwrap_or_else(|| panic!("a line for {appid}:\n{text}"));
        assert!(line.contains(kind), "{line}");
        let says = if bound { " bound:" } else { " unbound:" };
        assert!(line.contains(says), "{appid} bound={bound}: {line}");
    }
    assert!(
        text.contains(&format!("WECHAT_API_BASE={base} union360 serve")),
        "{text}"
    );
    child.kill().await.unwrap();
}

/// A server without any app says, once, how to get data; so does the
/// playground's first tab. A server with an app says nothing of the kind.
#[tokio::test]
async fn an_empty_server_says_how_to_get_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u.db");
    let mut server = Server::start(&db, &[]).await;
    server.read_until("no WeChat app registered yet").await;
    let line = server.log.last().unwrap().clone();
    for hint in [
        "registerApp",
        "union360 app add",
        "union360 sync --app",
        "union360 demo",
    ] {
        assert!(line.contains(hint), "{hint}: {line}");
    }
    let script = reqwest::get(format!(
        "{}/graphiql/assets/union360-graphiql.js",
        server.base()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    for hint in [
        "registerApp",
        "union360 sync --app <appid>",
        "startFollowerSync(appid:",
        "union360 demo",
        "upsertAccounts",
        "'/dashboard'",
    ] {
        assert!(script.contains(hint), "the playground's first tab: {hint}");
    }
    assert!(server.stop_with("TERM").await.success());
    let said = |server: &Server| {
        server
            .log
            .iter()
            .filter(|l| l.contains("no WeChat app registered yet"))
            .count()
    };
    assert_eq!(said(&server), 1, "{}", server.log.join("\n"));

    let registered = union360()
        .args([
            "app",
            "add",
            "--appid",
            "wx0123456789abcdef",
            "--kind",
            "website",
        ])
        .args(["--name", "Shop"])
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("UNION360_APP_SECRET", "0123456789abcdef0123456789abcdef")
        .output()
        .await
        .unwrap();
    assert!(registered.status.success(), "{registered:?}");
    let mut server = Server::start(&db, &[]).await;
    assert!(server.stop_with("TERM").await.success());
    assert_eq!(said(&server), 0, "{}", server.log.join("\n"));
}
