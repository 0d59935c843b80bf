//! The README's GraphQL examples run as written.
//!
//! Every ```` ```graphql ```` block of `README.md` is run, in the order the
//! README gives them, against one real server connected to a WeChat
//! simulator built exactly as `union360 simulator` builds it with no flag
//! (so the README may show that world's appids, secrets and UnionIDs). The
//! server starts empty; the blocks run one after another on it, so a block
//! sees what the blocks before it did (the walkthrough registers the apps
//! the later examples use).
//!
//! # Writing an example
//!
//! - One named operation per block (`query FollowersOfMainAccount { … }`):
//!   the playground and `curl` run it as it is, with nothing to pick.
//! - Variables go in a ```` ```json ```` block right after the GraphQL
//!   block (blank lines may separate them); nothing else may.
//! - The example fails on any error in the answer, and on a root field
//!   that is null: an example should show something.
//!
//! # Markers
//!
//! An HTML comment on the line before the opening fence, invisible on a
//! rendered README, changes how a block runs; several may be given,
//! separated by commas: `<!-- example: after-sync, null-ok -->`.
//!
//! - `skip (why)`: not run, for what cannot run here (it needs real WeChat
//!   apps, say). Keep these few: an example that is not run goes stale.
//! - `after-sync`: the block needs the followers of the registered official
//!   accounts. Before it, once, the followers of every registered official
//!   account are imported from the simulator as a follower sync does
//!   (`user/get`, then `upsertAccounts` with `following: true`, then
//!   `refreshAccounts`, which fetches their profiles and UnionIDs); later
//!   blocks see them too.
//! - `null-ok`: a null root field is a fine answer here.

use std::sync::LazyLock;

use futures::StreamExt;
use serde_json::{Value, json};
use union360::cli::{Cli, Command};
use union360::clock::Clock;
use union360::simulator::SimConfig;
use union360::wechat::{AppCredentials, ClientConfig, WechatClient};

use crate::helpers::{Backend, TestApp, spawn_app_in};

/// One GraphQL example of the README.
#[derive(Debug)]
struct Example {
    /// Where its block starts in the README (1-based), for messages.
    line: usize,
    /// The index of its closing fence among the README's lines.
    end: usize,
    /// The operation.
    query: String,
    /// The variables of the ```json block after it, if any.
    variables: Value,
    /// Its markers (`skip (why)`, `after-sync`, `null-ok`).
    markers: Vec<String>,
}

impl Example {
    fn marked(&self, marker: &str) -> bool {
        self.markers
            .iter()
            .any(|m| m == marker || m.starts_with(&format!("{marker} ")))
    }
}

/// The markers of `<!-- example: a, b -->`, or `None` for another line.
fn markers(line: &str) -> Option<Vec<String>> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim()
        .strip_prefix("example:")?;
    Some(inner.split(',').map(|m| m.trim().to_owned()).collect())
}

/// The GraphQL examples of `readme`, in order.
fn examples(readme: &str) -> Vec<Example> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut found: Vec<Example> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(language) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let mut end = i + 1;
        while end < lines.len() && lines[end].trim_start() != "```" {
            end += 1;
        }
        assert!(end < lines.len(), "README.md:{}: unclosed block", start + 1);
        let body = lines[start + 1..end].join("\n");
        let previous = lines[..start].iter().rev().find(|l| !l.trim().is_empty());
        let marked = previous.and_then(|l| markers(l)).unwrap_or_default();
        match language.trim() {
            "graphql" => found.push(Example {
                line: start + 1,
                end,
                query: body,
                variables: Value::Null,
                markers: marked,
            }),
            "json" => {
                // Variables belong to the GraphQL block just before, with
                // nothing but blank lines between them.
                let right_after =
                    |e: &&mut Example| lines[e.end + 1..start].iter().all(|l| l.trim().is_empty());
                if let Some(example) = found.last_mut().filter(right_after) {
                    example.variables = serde_json::from_str(&body).unwrap_or_else(|e| {
                        panic!("README.md:{}: variables are not JSON: {e}", start + 1)
                    });
                }
            }
            _ => {}
        }
        i = end + 1;
    }
    found
}

/// The one named operation of an example, or why it is not one.
fn operation_name(example: &Example) -> Result<String, String> {
    use async_graphql::parser::types::DocumentOperations;
    let document = async_graphql::parser::parse_query(&example.query)
        .map_err(|e| format!("does not parse: {e}"))?;
    match document.operations {
        DocumentOperations::Multiple(operations) if operations.len() == 1 => operations
            .keys()
            .next()
            .map(|name| name.to_string())
            .ok_or_else(|| "no operation".to_owned()),
        DocumentOperations::Multiple(operations) => Err(format!(
            "{} operations in one block: give each its own",
            operations.len()
        )),
        DocumentOperations::Single(_) => {
            Err("an anonymous operation: give it a name (`query Name { … }`)".to_owned())
        }
    }
}

/// The world of `union360 simulator` without flags.
fn simulator_world() -> SimConfig {
    let cli = Cli::try_parse_args_from(["union360", "simulator"]).expect("the command parses");
    match cli.command {
        Some(Command::Simulator(args)) => args.config(),
        other => panic!("not the simulator: {other:?}"),
    }
}

/// Imports the followers of every registered official account, as a
/// follower sync does.
async fn sync_followers(app: &TestApp) {
    let registered = app
        .data("query Apps { apps { appid kind } }", json!({}))
        .await;
    let sim_apps = app.sim.sim.apps();
    let wechat = WechatClient::new(ClientConfig::new(app.sim.base_url()), None, Clock::system())
        .expect("a WeChat client");
    for registered in registered["apps"].as_array().expect("apps") {
        if registered["kind"] != "OFFICIAL_ACCOUNT" {
            continue;
        }
        let appid = registered["appid"].as_str().expect("appid");
        let sim_app = sim_apps
            .iter()
            .find(|a| a.appid == appid)
            .unwrap_or_else(|| panic!("{appid} is not an app of the simulator"));
        let credentials = AppCredentials {
            appid: appid.to_owned(),
            secret: sim_app.secret.clone().into(),
        };
        let mut openids = Vec::new();
        let mut pages = std::pin::pin!(wechat.followers(&credentials));
        while let Some(page) = pages.next().await {
            openids.extend(page.expect("a page of followers").openids().iter().cloned());
        }
        for chunk in openids.chunks(1000) {
            let rows: Vec<Value> = chunk
                .iter()
                .map(|openid| json!({ "appid": appid, "openid": openid, "following": true }))
                .collect();
            app.upsert(json!(rows)).await;
            let keys: Vec<Value> = chunk
                .iter()
                .map(|openid| json!({ "appid": appid, "openid": openid }))
                .collect();
            let refreshed = app
                .data(
                    "mutation Refresh($keys: [AccountKey!]!) { refreshAccounts(keys: $keys) { fetched } }",
                    json!({ "keys": keys }),
                )
                .await;
            assert_eq!(
                refreshed["refreshAccounts"]["fetched"],
                chunk.len(),
                "every follower of {appid} fetched"
            );
        }
    }
}

static README: LazyLock<String> = LazyLock::new(|| {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable")
});

#[test]
fn every_example_is_one_named_operation() {
    let examples = examples(&README);
    assert!(!examples.is_empty(), "README.md has GraphQL examples");
    let problems: Vec<String> = examples
        .iter()
        .filter_map(|e| {
            operation_name(e)
                .err()
                .map(|why| format!("README.md:{}: {why}", e.line))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_runs_as_written() {
    let app = spawn_app_in(Backend::Sqlite, Clock::system(), simulator_world(), |_| {}).await;
    let mut synced = false;
    let mut ran = 0;
    for example in examples(&README) {
        let at = format!("README.md:{}", example.line);
        if example.marked("skip") {
            continue;
        }
        if example.marked("after-sync") && !synced {
            sync_followers(&app).await;
            synced = true;
        }
        let name = operation_name(&example).unwrap_or_else(|why| panic!("{at}: {why}"));
        let body = app.graphql(&example.query, example.variables.clone()).await;
        assert!(
            body.get("errors").is_none(),
            "{at}: {name} failed:\n{body:#}"
        );
        let data = body["data"]
            .as_object()
            .unwrap_or_else(|| panic!("{at}: {name}: no data: {body}"));
        if !example.marked("null-ok") {
            for (field, value) in data {
                assert!(!value.is_null(), "{at}: {name}: {field} is null:\n{body:#}");
            }
        }
        ran += 1;
    }
    assert!(ran > 0, "no example ran");
}

#[test]
fn markers_and_variables_are_read_from_around_a_block() {
    let readme = "text\n\n<!-- example: after-sync, null-ok -->\n```graphql\nquery A { apps { appid } }\n```\n\n```json\n{\"x\": 1}\n```\n\n```json\n{\"y\": 2}\n```\n\n<!-- example: skip (needs real WeChat) -->\n```graphql\nquery B { apps { appid } }\n```\n\nSome text.\n\n```json\n{\"z\": 3}\n```\n";
    let found = examples(readme);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].line, 4);
    assert_eq!(found[0].markers, ["after-sync", "null-ok"]);
    assert!(found[0].marked("after-sync") && !found[0].marked("skip"));
    assert_eq!(
        found[0].variables,
        json!({ "x": 1 }),
        "only the block right after"
    );
    assert!(found[1].marked("skip"));
    assert_eq!(found[1].variables, Value::Null, "text comes between");
    assert_eq!(operation_name(&found[0]).unwrap(), "A");
    let anonymous = Example {
        line: 1,
        end: 2,
        query: "{ apps { appid } }".to_owned(),
        variables: Value::Null,
        markers: Vec::new(),
    };
    assert!(operation_name(&anonymous).is_err());
    let two = Example {
        query: "query A { apps { appid } } query B { apps { appid } }".to_owned(),
        ..anonymous
    };
    assert!(operation_name(&two).is_err());
}
