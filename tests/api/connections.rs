//! Connections over raw TCP against the real server: slow clients, the
//! header read and idle timeouts, the caps on open connections, and
//! shutdown of the real binary.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{Backend, TestApp, spawn_app_with};

/// Long enough to mean "hung", never reached by a working server.
const HANG: Duration = Duration::from_secs(60);

/// A request whose headers never end.
const HALF_SENT: &[u8] = b"POST /graphql HTTP/1.1\r\nHost: union360\r\nContent-Type: appl";

fn server_addr(app: &TestApp) -> SocketAddr {
    app.address
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address")
}

/// A connection to the server from `source` (any 127.x.y.z address is local).
async fn connect_from(source: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("source address"))?;
    socket.connect(server).await
}

/// Reads until the server closes the connection; what it sent before.
/// Panics if it never does.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    received
}

async fn healthz_over(stream: &mut TcpStream, close: bool) -> std::io::Result<()> {
    let connection = if close { "close" } else { "keep-alive" };
    stream
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: union360\r\nConnection: {connection}\r\n\r\n")
                .as_bytes(),
        )
        .await
}

#[tokio::test]
async fn half_sent_requests_do_not_lock_out_other_clients() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.http.max_connections = 100;
        s.server.http.max_connections_per_ip = 20;
        // Only the caps can help here: nobody is timed out during the test.
        s.server.http.header_read_timeout_secs = 600;
    })
    .await;
    let server = server_addr(&app);
    // Far more half-sent requests than the server may hold, from one address.
    let mut slow = Vec::new();
    for _ in 0..150 {
        if let Ok(mut stream) = connect_from("127.0.0.2", server).await {
            let _ = stream.write_all(HALF_SENT).await;
            slow.push(stream);
        }
    }
    assert!(slow.len() > 100, "the slow client opened its connections");
    let body = tokio::time::timeout(HANG, app.graphql("{ __typename }", json!({})))
        .await
        .expect("a normal query answers while slow clients hold connections");
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
}

#[tokio::test]
async fn a_half_sent_request_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.http.header_read_timeout_secs = 1;
        s.server.http.idle_timeout_secs = 600;
    })
    .await;
    let mut stream = TcpStream::connect(server_addr(&app)).await.unwrap();
    stream.write_all(HALF_SENT).await.unwrap();
    let received = until_closed(&mut stream).await;
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(server_addr(&app)).await.unwrap();
    until_closed(&mut silent).await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.http.header_read_timeout_secs = 600;
        s.server.http.idle_timeout_secs = 1;
    })
    .await;
    let mut stream = TcpStream::connect(server_addr(&app)).await.unwrap();
    healthz_over(&mut stream, false).await.unwrap();
    let received = until_closed(&mut stream).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok"), "one response, then the close: {text}");
}

#[tokio::test]
async fn a_trickled_body_is_refused_after_the_body_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.http.body_read_timeout_secs = 1;
        s.server.http.header_read_timeout_secs = 600;
        s.server.http.idle_timeout_secs = 600;
    })
    .await;
    let mut stream = TcpStream::connect(server_addr(&app)).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: union360\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {}\r\nContent-Length: 100\r\n\r\n{{\"query\":",
        app.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let received = until_closed(&mut stream).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("BAD_REQUEST"), "{text}");
    assert!(text.contains("did not arrive in time"), "{text}");
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_refused_while_others_work() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.http.max_connections_per_ip = 3;
        s.server.http.header_read_timeout_secs = 600;
    })
    .await;
    let server = server_addr(&app);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.2", server).await.unwrap();
        stream.write_all(HALF_SENT).await.unwrap();
        held.push(stream);
    }
    // The fourth from that address is closed unanswered.
    let mut fourth = connect_from("127.0.0.2", server).await.unwrap();
    let _ = healthz_over(&mut fourth, true).await;
    let received = until_closed(&mut fourth).await;
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    // Other addresses are served meanwhile.
    let status = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(
        app.graphql("{ __typename }", json!({})).await["data"]["__typename"],
        "Query"
    );
    // A closed connection frees its place (once the server has seen it go).
    drop(held.pop());
    tokio::time::timeout(HANG, async {
        loop {
            let mut stream = connect_from("127.0.0.2", server).await.unwrap();
            let _ = healthz_over(&mut stream, true).await;
            if until_closed(&mut stream).await.starts_with(b"HTTP/1.1 200") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the address is admitted again");
}

/// `union360 serve` as a process, with a half-sent request and an idle
/// connection open, ends within its grace period after SIGTERM: neither
/// timer would close those connections for ten minutes.
#[cfg(unix)]
#[tokio::test]
async fn the_server_process_exits_within_its_grace_period() {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;

    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_union360"))
        .arg("serve")
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display()),
        )
        .env("UNION360_LISTEN", "127.0.0.1:0")
        .env("WECHAT_API_BASE", "http://127.0.0.1:1")
        .env("UNION360_SHUTDOWN_GRACE_SECS", "1")
        .env("UNION360_HEADER_READ_TIMEOUT_SECS", "600")
        .env("UNION360_IDLE_TIMEOUT_SECS", "600")
        .env("UNION360_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let server: SocketAddr = tokio::time::timeout(HANG, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the server logs");
            let event: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("a JSON line: {line}"));
            if let Some(addr) = event["http.addr"].as_str() {
                break addr.parse().unwrap();
            }
        }
    })
    .await
    .expect("the server starts");
    let mut half_sent = TcpStream::connect(server).await.unwrap();
    half_sent.write_all(HALF_SENT).await.unwrap();
    let mut idle = TcpStream::connect(server).await.unwrap();
    healthz_over(&mut idle, false).await.unwrap();
    let mut buf = [0u8; 1024];
    assert!(idle.read(&mut buf).await.unwrap() > 0, "the server answers");

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Keep reading the logs so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .expect("the process exits after its grace period")
        .unwrap();
    assert!(status.success(), "{status}");
}
