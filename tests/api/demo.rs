//! `union360 demo` as a new user runs it: the real binary, from nothing to
//! a server with synced followers, a key, the audience and the playground's
//! examples, then Ctrl-C and nothing left behind.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Long enough to mean "hung" for a small demo world in a debug build.
const HANG: Duration = Duration::from_secs(120);

/// The value after `label` on the line holding it.
fn after<'a>(lines: &'a [String], label: &str) -> &'a str {
    let line = lines
        .iter()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in {lines:#?}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
}

#[tokio::test]
async fn the_demo_serves_synced_followers_their_audience_and_examples_then_stops_cleanly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_union360"))
        .args(["demo", "--people", "3000", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    tokio::time::timeout(HANG, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let done = line.starts_with("Press Ctrl-C");
            lines.push(line);
            if done {
                return;
            }
        }
        panic!("the demo ended before it was ready: {lines:#?}");
    })
    .await
    .expect("the demo was not ready in time");
    let dashboard = after(&lines, "Dashboard:").to_owned();
    let base = dashboard.trim_end_matches("/dashboard").to_owned();
    let key = after(&lines, "API key:").to_owned();
    let data = after(&lines, "Data:").to_owned();
    assert!(std::path::Path::new(&data).exists(), "{data}");
    // The three official accounts' followers were imported: one is unbound,
    // so its followers count apart, as bounds.
    let http = reqwest::Client::new();
    let graphql = |query: String| {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        async move {
            let body: Value = http
                .post(format!("{base}/graphql"))
                .bearer_auth(key)
                .json(&json!({ "query": query }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(body.get("errors").is_none(), "{body:#}");
            body["data"].clone()
        }
    };
    let data_now = graphql(
        "{ audience { distinctPeople { atLeast atMost } linkedPeople unlinkedFollowers apps { followers unlinkedFollowers } } }"
            .to_owned(),
    )
    .await;
    let audience = &data_now["audience"];
    assert_eq!(audience["apps"].as_array().unwrap().len(), 3, "{audience}");
    let linked = audience["linkedPeople"].as_u64().unwrap();
    let unlinked = audience["unlinkedFollowers"].as_u64().unwrap();
    assert!(linked > 0 && unlinked > 0, "{audience}");
    assert_eq!(
        audience["distinctPeople"]["atMost"].as_u64(),
        Some(linked + unlinked)
    );
    let followers: u64 = audience["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["followers"].as_u64().unwrap())
        .sum();
    let jobs = graphql("{ syncJobs { state listed } }".to_owned()).await;
    let listed: u64 = jobs["syncJobs"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|j| assert_eq!(j["state"], "SUCCEEDED", "{jobs}"))
        .map(|j| j["listed"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, followers, "{jobs} {audience}");
    // The playground's examples run as they are.
    let examples: Value = http
        .get(format!("{base}/graphiql/examples"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let examples = examples.as_array().unwrap();
    assert_eq!(examples.len(), 3, "{examples:?}");
    for example in examples {
        let data = graphql(example["query"].as_str().unwrap().to_owned()).await;
        assert!(
            data.as_object().unwrap().values().all(|v| !v.is_null()),
            "{example} gave {data}"
        );
    }
    // The dashboard is served.
    let page = http.get(&dashboard).send().await.unwrap();
    assert_eq!(page.status(), 200);

    // Ctrl-C: everything stops, and the temporary data is gone.
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .expect("the demo did not stop")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !std::path::Path::new(&data).exists(),
        "{data} was left behind"
    );
}
