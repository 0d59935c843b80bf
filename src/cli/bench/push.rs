//! `union360 bench push`: WeChat's message pushes to the callback, signed
//! and sealed in safe mode, as fast as the server takes them.
//!
//! A company that has synced its followers receives their follows and
//! unfollows live. The harness registers 4 official accounts (with a
//! callback token and an EncodingAESKey), writes `--people` followers of
//! each as a sync would (fetched, fresh, following), then plays WeChat:
//! `--events` pushes (`subscribe` and `unsubscribe` alternately per
//! account, each a second later than the account's previous one), sealed
//! and signed before the clock starts, sent by `--clients` concurrent
//! connections in a shuffled order (so that an account's pushes arrive out
//! of order), plus `--retries` of them sent again as WeChat's retries
//! (signed anew). Each push is answered `success` only once it is stored.
//!
//! Afterwards it checks that nothing was lost or applied twice: one receipt
//! per distinct push, every account following exactly when its newest
//! push says so, and the audience counts equal to a count of those
//! accounts.
//!
//! Meanwhile `--subscribers` dashboards watch: clients subscribed to
//! `accountEvents` over `/graphql/ws` (as a browser would) receive the
//! follows and unfollows; the report gives how many each received and how
//! long after each was stored.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chrono::Utc;
use futures::StreamExt;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use super::{BenchDb, mb, ms, peak_rss, quantile};
use crate::clock::Clock;
use crate::domain::{OpenId, ProfileSource, UnionId};
use crate::identity::{self, AccountUpsert, Follow, MAX_UPSERT_BATCH, Profile};
use crate::settings::DatabaseSettings;
use crate::startup::Application;
use crate::store;
use crate::wechat::callback::{
    MessageCrypto, encrypted_envelope_xml, event_xml, msg_signature, signature,
};

/// Options of `union360 bench push`.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// Followers of each official account, written before the pushes.
    #[arg(long, default_value_t = 5_000)]
    pub people: u32,
    /// Distinct pushes (follows and unfollows) sent.
    #[arg(long, default_value_t = 60_000)]
    pub events: u32,
    /// Of those, how many are sent a second time, as WeChat's retries.
    #[arg(long, default_value_t = 6_000)]
    pub retries: u32,
    /// Connections sending at once. WeChat does not wait for one push's
    /// answer before sending the next, so the pushes in flight grow with
    /// the rate: 3,000 a second answered in 40 ms are 120 in flight.
    #[arg(long, default_value_t = 128)]
    pub clients: usize,
    /// Dashboards watching: clients subscribed to the follows and unfollows
    /// over `/graphql/ws` while the pushes come in.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
}

/// The official accounts pushed to.
const APPS: usize = 4;

/// A subscriber to `accountEvents` over `/graphql/ws`, noting how long
/// after its storing each event arrived.
struct Watcher {
    task: tokio::task::JoinHandle<Watched>,
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// What the subscriber saw.
#[derive(Default)]
struct Watched {
    /// Per event, from its storing to its receipt, sorted.
    lags: Vec<Duration>,
    /// Why the server disconnected it, if it did.
    closed: Option<String>,
}

impl Watcher {
    /// Connects to the server at `address` with `key` and subscribes.
    async fn start(address: &str, key: &str) -> anyhow::Result<Self> {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request =
            format!("{}/graphql/ws", address.replacen("http", "ws", 1)).into_client_request()?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        let send = |v: serde_json::Value| Message::Text(v.to_string().into());
        socket
            .send(send(serde_json::json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {key}") } })))
            .await?;
        socket
            .send(send(serde_json::json!({ "type": "subscribe", "id": "1", "payload": {
                "query": "subscription BenchWatch { accountEvents(kinds: [FOLLOWED, UNFOLLOWED]) { at } }"
            } })))
            .await?;
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = received.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut watched = Watched::default();
            loop {
                let frame = tokio::select! {
                    frame = socket.next() => frame,
                    _ = &mut stopped => break,
                };
                let Some(frame) = frame else { break };
                let now = Utc::now();
                match frame {
                    Ok(Message::Text(text)) => {
                        let message: serde_json::Value =
                            serde_json::from_str(&text).unwrap_or_default();
                        let at = message["payload"]["data"]["accountEvents"]["at"]
                            .as_str()
                            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
                        if let Some(at) = at {
                            let lag = (now - at.with_timezone(&Utc)).to_std().unwrap_or_default();
                            watched.lags.push(lag);
                            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Ok(Message::Close(frame)) => {
                        watched.closed = Some(frame.map_or("no reason".to_owned(), |f| {
                            format!("{} {}", u16::from(f.code), f.reason)
                        }));
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        watched.closed = Some(e.to_string());
                        break;
                    }
                }
            }
            watched
        });
        Ok(Self {
            task,
            received,
            stop,
        })
    }

    /// Waits until no event has come for a second, then stops.
    async fn finish(self) -> Watched {
        let mut last = usize::MAX;
        loop {
            let now = self.received.load(std::sync::atomic::Ordering::Relaxed);
            if now == last || self.task.is_finished() {
                break;
            }
            last = now;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let _ = self.stop.send(());
        let mut watched = self.task.await.unwrap_or_default();
        watched.lags.sort_unstable();
        watched
    }
}

/// One push, ready to send.
struct Prepared {
    appid: usize,
    query: String,
    body: String,
}

/// Runs the scenario and prints its report.
pub(super) async fn run(database: &DatabaseSettings, args: PushArgs) -> anyhow::Result<()> {
    let bench_db = BenchDb::new(database, "push")?;
    let mut settings = bench_db.settings();
    settings.server.listen = "127.0.0.1:0".parse()?;
    let app = Application::build_with_clock(settings, Clock::system()).await?;
    let address = format!("http://{}", app.local_addr()?);
    let state = app.state().clone();
    bench_db.ensure_empty(state.db()).await?;
    let apps = super::register_official_accounts(&state, "wxbe0c4b0500000", APPS, true).await?;
    let secrets: Vec<(String, String)> = (0..APPS).map(super::callback_secrets).collect();

    // The followers, as a sync leaves them: fetched, linked, following.
    let started = Instant::now();
    let openid = |app: usize, person: u32| format!("oBenchPush{app}x{person:017}");
    let synced_at = Utc::now() - chrono::Duration::hours(1);
    for (a, appid) in apps.iter().enumerate() {
        let rows: Vec<AccountUpsert> = (0..args.people)
            .map(|person| {
                Ok(AccountUpsert {
                    appid: appid.clone(),
                    openid: OpenId::parse(openid(a, person))?,
                    unionid: Some(UnionId::parse(format!("oBenchUnion{person:017}"))?),
                    snapshot_user: false,
                    profile: Profile::default(),
                    follow: Follow {
                        subscribed: Some(true),
                        subscribe_time: Some(synced_at - chrono::Duration::days(30)),
                        ..Follow::default()
                    },
                    refreshed: true,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        for chunk in rows.chunks(MAX_UPSERT_BATCH) {
            identity::upsert_accounts(
                state.db(),
                chunk.to_vec(),
                ProfileSource::UserInfo,
                synced_at,
            )
            .await?;
        }
    }
    // A sync refreshes the tables' statistics after its first page (and
    // each time the pages it wrote double): without them, PostgreSQL plans
    // the pushes' lookups by key as scans of every row.
    store::refresh_statistics(state.db(), &["account", "person"]).await?;
    eprintln!(
        "{} followers of {APPS} official accounts written in {:.1} s",
        u64::from(args.people) * APPS as u64,
        started.elapsed().as_secs_f64()
    );
    let server = tokio::spawn(app.run_until(std::future::pending()));
    let key = super::unlimited_key(&state).await?;
    let mut watchers = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        watchers.push(Watcher::start(&address, &key).await?);
    }
    ensure!(
        state.events().ready(Duration::from_secs(10)).await,
        "the server does not listen for events"
    );
    while state.events().watchers() < args.subscribers {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // WeChat's side: every push sealed and signed before the clock starts.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let base = Utc::now().timestamp() - 3_600;
    let mut sequence: HashMap<(usize, u32), i64> = HashMap::new();
    let mut expected: HashMap<(usize, u32), bool> = HashMap::new();
    let cryptos: Vec<MessageCrypto> = apps
        .iter()
        .zip(&secrets)
        .map(|(appid, (_, key))| MessageCrypto::new(key, appid.as_str()))
        .collect::<Result<_, _>>()?;
    let timestamp = Utc::now().timestamp().to_string();
    let mut pushes: Vec<Prepared> = Vec::with_capacity((args.events + args.retries) as usize);
    let mut originals: Vec<(usize, String)> = Vec::with_capacity(args.events as usize);
    for i in 0..args.events {
        let a = rng.gen_range(0..APPS);
        let person = rng.gen_range(0..args.people.max(1));
        let k = sequence.entry((a, person)).or_insert(0);
        *k += 1;
        // Followers to start with: odd pushes unfollow, even ones follow again.
        let follows = *k % 2 == 0;
        expected.insert((a, person), follows);
        let event = if follows { "subscribe" } else { "unsubscribe" };
        let xml = event_xml("gh_bench", &openid(a, person), base + *k, event, None, None);
        let encrypt = cryptos[a].encrypt(&xml);
        originals.push((a, encrypt.clone()));
        pushes.push(signed(
            a,
            &secrets[a].0,
            &timestamp,
            &format!("n{i}"),
            &encrypt,
        ));
    }
    pushes.shuffle(&mut rng);
    for r in 0..args.retries {
        let (a, encrypt) = &originals[rng.gen_range(0..originals.len())];
        pushes.push(signed(
            *a,
            &secrets[*a].0,
            &timestamp,
            &format!("r{r}"),
            encrypt,
        ));
    }
    let urls: Vec<String> = apps
        .iter()
        .map(|appid| format!("{address}/wechat/{appid}/callback"))
        .collect();

    let client = reqwest::Client::new();
    let statements_before = state.store().statements.get();
    let started = Instant::now();
    let answers: Vec<anyhow::Result<Duration>> = futures::stream::iter(pushes)
        .map(|push| {
            let (client, url) = (client.clone(), urls[push.appid].clone());
            async move {
                let sent = Instant::now();
                let response = client
                    .post(format!("{url}?{}", push.query))
                    .header("content-type", "text/xml")
                    .body(push.body)
                    .send()
                    .await?;
                let status = response.status();
                let text = response.text().await?;
                ensure!(status.is_success() && text == "success", "{status}: {text}");
                Ok(sent.elapsed())
            }
        })
        .buffer_unordered(args.clients.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let statements = state.store().statements.get() - statements_before;
    let sent = answers.len();
    let mut latencies = Vec::with_capacity(sent);
    let mut failures = Vec::new();
    for answer in answers {
        match answer {
            Ok(latency) => latencies.push(latency),
            Err(e) => failures.push(e.to_string()),
        }
    }
    latencies.sort_unstable();
    let mut watched = Vec::with_capacity(watchers.len());
    for watcher in watchers {
        watched.push(watcher.finish().await);
    }
    server.abort();

    // Nothing lost, nothing applied twice.
    let receipts = entity::callback_receipt::Entity::find()
        .count(state.db())
        .await?;
    let mut wrong = 0usize;
    let mut following = [0u64; APPS];
    let stored: Vec<(i64, String, Option<bool>)> = entity::account::Entity::find()
        .all(state.db())
        .await?
        .into_iter()
        .map(|a| (a.app_id, a.openid, a.subscribed))
        .collect();
    let app_ids: HashMap<i64, usize> = {
        let mut ids = HashMap::new();
        for (a, appid) in apps.iter().enumerate() {
            let model = state
                .apps()
                .find(appid)
                .await?
                .context("a registered app")?;
            ids.insert(model.id, a);
        }
        ids
    };
    let index: HashMap<String, u32> = (0..args.people)
        .flat_map(|p| (0..APPS).map(move |a| (a, p)))
        .map(|(a, p)| (openid(a, p), p))
        .collect();
    for (app_id, openid, subscribed) in &stored {
        let a = app_ids[app_id];
        let person = index[openid];
        let want = expected.get(&(a, person)).copied().unwrap_or(true);
        if *subscribed != Some(want) {
            wrong += 1;
        }
        if want {
            following[a] += 1;
        }
    }
    let counted: Vec<u64> = crate::stats::audience(state.db(), Some(&apps), None)
        .await?
        .apps
        .iter()
        .map(|a| a.followers())
        .collect();
    let applied = entity::account::Entity::find()
        .filter(entity::account::Column::UnfollowedAt.is_not_null())
        .count(state.db())
        .await?;

    let rate = |n: usize| n as f64 / elapsed.as_secs_f64();
    println!("## Pushes to the callback ({})", bench_db.backend());
    println!();
    println!(
        "{APPS} official accounts with {} followers each; {} distinct pushes and {} retries sealed in safe mode, sent by {} connections in a shuffled order; {} subscribers watching.",
        args.people, args.events, args.retries, args.clients, args.subscribers
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| pushes answered `success` | {} of {sent} |",
        latencies.len()
    );
    println!("| wall time | {:.2} s |", elapsed.as_secs_f64());
    println!(
        "| pushes per second (retries included) | {:.0} |",
        rate(sent)
    );
    println!(
        "| distinct pushes per second | {:.0} |",
        rate(args.events as usize)
    );
    println!(
        "| latency p50 / p99 / max | {} / {} / {} |",
        ms(quantile(&latencies, 0.5)),
        ms(quantile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "| SQL statements per push | {:.2} |",
        statements as f64 / sent.max(1) as f64
    );
    println!(
        "| receipts (one per distinct push) | {receipts} of {} |",
        args.events
    );
    println!(
        "| accounts whose follow status is not their newest push's | {wrong} of {} |",
        stored.len()
    );
    println!("| accounts that unfollowed at least once | {applied} |");
    println!(
        "| audience followers per app (counted / expected) | {} |",
        (0..APPS)
            .map(|a| format!(
                "{} / {}",
                counted.get(a).copied().unwrap_or(0),
                following[a]
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, watched) in watched.iter().enumerate() {
        println!(
            "| subscriber {}: events received (follows and unfollows stored) | {}{} |",
            i + 1,
            watched.lags.len(),
            watched
                .closed
                .as_ref()
                .map(|why| format!(", then disconnected: {why}"))
                .unwrap_or_default()
        );
        println!(
            "| subscriber {}: delay from store to receipt p50 / p99 / max | {} / {} / {} |",
            i + 1,
            ms(quantile(&watched.lags, 0.5)),
            ms(quantile(&watched.lags, 0.99)),
            ms(watched.lags.last().copied().unwrap_or_default())
        );
    }
    println!("| peak RSS (server and harness) | {} |", mb(peak_rss()));
    if let Some(first) = failures.first() {
        println!();
        println!("{} pushes failed; the first: {first}", failures.len());
    }
    ensure!(
        failures.is_empty(),
        "{} pushes were not answered success",
        failures.len()
    );
    ensure!(
        receipts == u64::from(args.events),
        "{receipts} receipts for {} distinct pushes",
        args.events
    );
    ensure!(
        wrong == 0,
        "{wrong} accounts do not follow as their newest push says"
    );
    ensure!(
        counted == following.to_vec(),
        "the audience counts {counted:?} differ from the accounts {following:?}"
    );
    Ok(())
}

/// A safe-mode push of `encrypt` to app `appid`, signed with `token`.
fn signed(appid: usize, token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> Prepared {
    let signature = signature(token, timestamp, nonce);
    let msg_signature = msg_signature(token, timestamp, nonce, encrypt);
    Prepared {
        appid,
        query: format!(
            "signature={signature}&timestamp={timestamp}&nonce={nonce}&openid=o&encrypt_type=aes&msg_signature={msg_signature}"
        ),
        body: encrypted_envelope_xml("gh_bench", encrypt),
    }
}
