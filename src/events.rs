//! Live account events: what the writers of the identity graph changed,
//! told to whoever watches (the `accountEvents` subscription).
//!
//! Writers publish after they commit: [`Events::accounts`] with the results
//! of an upsert (follows, unfollows, links to a person, profile changes),
//! [`Events::sync_progress`] when a follower sync saves a page or ends.
//! Watchers [`Events::subscribe`] and receive [`Batch`]es of at most
//! [`BATCH_BYTES`] each.
//!
//! - **On SQLite** (one instance), a batch goes straight to this process's
//!   watchers.
//! - **On PostgreSQL** (a fleet), a batch goes out as a `NOTIFY` on the
//!   `union360_events` channel from a publishing task, and every instance,
//!   this one included, hands what its `LISTEN`ing connection receives to
//!   its watchers: an event from any instance reaches every watcher, once.
//!
//! Events are told, not kept: a watcher sees what is committed while it
//! watches, nothing from before. Nothing here waits for a watcher. The
//! batches not yet read by the slowest watcher are held in a ring of
//! [`EventSettings::buffer`] batches; a watcher that falls further behind
//! loses its place ([`tokio::sync::broadcast`]'s lag), and its connection
//! is closed, so no watcher holds memory without bound. When the
//! `LISTEN`ing connection is lost, watchers are told
//! ([`Batch::Interrupted`]): what was sent meanwhile never reaches them. A
//! publishing task that cannot keep up drops batches and counts them
//! (`union360_events_dropped_total`) rather than hold writers back.
//!
//! Each writer publishes after its own commit, so the events of two writers
//! that commit at nearly the same moment may arrive in either order: an
//! event says what changed, and the account as stored says where it stands.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbBackend};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

use crate::identity::UpsertResult;

/// The PostgreSQL channel events travel on.
pub const CHANNEL: &str = "union360_events";

/// The most bytes of one batch as JSON: under PostgreSQL's 8,000-byte
/// `NOTIFY` payload, with room to spare.
pub const BATCH_BYTES: usize = 7_000;

/// Batches waiting for the publishing task (PostgreSQL).
const OUTBOX: usize = 4_096;

/// Parts (of at most [`BATCH_BYTES`]) sent in one `NOTIFY` statement, about.
const MAX_PARTS_PER_STATEMENT: usize = 256;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An account follows its official account now (a first follow, or a
    /// follow again).
    Followed,
    /// An account stopped following.
    Unfollowed,
    /// An account was linked to its person (its UnionID became known).
    Linked,
    /// A profile value of an account changed.
    ProfileChanged,
    /// A follower sync saved a page, or ended.
    SyncProgress,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Followed,
        Kind::Unfollowed,
        Kind::Linked,
        Kind::ProfileChanged,
        Kind::SyncProgress,
    ];

    /// The kind's bit in an account change.
    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// One event, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// When it was stored.
    pub at: DateTime<Utc>,
    /// The app (its id) it happened in.
    pub app_id: i64,
    /// The account, for account events.
    pub account_id: Option<i64>,
    /// The account's OpenID, for account events.
    pub openid: Option<String>,
    /// The sync job, for [`Kind::SyncProgress`].
    pub job_id: Option<i64>,
}

/// Events committed together, as they travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Batch {
    /// Changes to accounts: `(account id, app id, openid, kind bits)` each.
    #[serde(rename = "a")]
    Accounts {
        /// When they were stored.
        #[serde(rename = "t")]
        at: DateTime<Utc>,
        /// The accounts changed.
        #[serde(rename = "c")]
        changes: Vec<(i64, i64, String, u8)>,
    },
    /// Events stopped reaching this process for a while (the connection
    /// listening for them was lost): watchers may have missed some. Never
    /// travels between processes.
    #[serde(skip)]
    Interrupted,
    /// A follower sync's progress.
    #[serde(rename = "s")]
    Sync {
        /// When it was saved.
        #[serde(rename = "t")]
        at: DateTime<Utc>,
        /// The job.
        #[serde(rename = "j")]
        job: i64,
        /// The app it syncs.
        #[serde(rename = "p")]
        app: i64,
    },
}

impl Batch {
    /// The events of the batch, one per account and kind.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        let (accounts, sync) = match self {
            Batch::Accounts { at, changes } => (Some((at, changes)), None),
            Batch::Sync { at, job, app } => (None, Some((at, job, app))),
            Batch::Interrupted => (None, None),
        };
        let accounts = accounts.into_iter().flat_map(|(at, changes)| {
            changes
                .iter()
                .flat_map(move |(account, app, openid, bits)| {
                    Kind::ALL
                        .into_iter()
                        .filter(move |kind| bits & kind.bit() != 0)
                        .map(move |kind| Event {
                            kind,
                            at: *at,
                            app_id: *app,
                            account_id: Some(*account),
                            openid: Some(openid.clone()),
                            job_id: None,
                        })
                })
        });
        let sync = sync.into_iter().map(|(at, job, app)| Event {
            kind: Kind::SyncProgress,
            at: *at,
            app_id: *app,
            account_id: None,
            openid: None,
            job_id: Some(*job),
        });
        accounts.chain(sync)
    }

    /// The batch cut into batches of at most [`BATCH_BYTES`] of JSON each.
    fn split(self) -> Vec<Batch> {
        let Batch::Accounts { at, changes } = self else {
            return vec![self];
        };
        let mut out = Vec::new();
        let mut part = Vec::new();
        let mut size = 0;
        for change in changes {
            // The change's share of the JSON, at most: the OpenID with its
            // escapes (it holds no control characters), three numbers of
            // at most 20 characters, brackets, quotes and commas.
            let escapes = change.2.chars().filter(|c| matches!(c, '"' | '\\')).count();
            let len = change.2.len() + escapes + 3 * 20 + 8;
            if size + len > BATCH_BYTES - 64 && !part.is_empty() {
                out.push(Batch::Accounts {
                    at,
                    changes: std::mem::take(&mut part),
                });
                size = 0;
            }
            part.push(change);
            size += len;
        }
        if !part.is_empty() {
            out.push(Batch::Accounts { at, changes: part });
        }
        out
    }

    /// The batch as JSON, cut as [`Self::split`] cuts it.
    fn encode(self) -> Vec<String> {
        self.split()
            .iter()
            .filter_map(|part| serde_json::to_string(part).ok())
            .collect()
    }
}

/// How the event bus is sized.
#[derive(Debug, Clone, Copy)]
pub struct EventSettings {
    /// Batches held for the slowest watcher before it loses its place.
    pub buffer: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { buffer: 1_024 }
    }
}

/// The event bus of this process (see the module docs). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Events(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    watchers: broadcast::Sender<Arc<Batch>>,
    /// To the publishing task, on PostgreSQL.
    outbox: Option<mpsc::Sender<Batch>>,
    /// Whether events from the database reach this process's watchers
    /// (always, on SQLite; while `LISTEN` holds, on PostgreSQL).
    listening: watch::Receiver<bool>,
}

impl Events {
    /// The bus for `db`. On PostgreSQL, starts the publishing and the
    /// listening tasks on the current Tokio runtime (they end with it).
    pub fn new(db: &DatabaseConnection, settings: EventSettings) -> Self {
        let (watchers, _) = broadcast::channel(settings.buffer.max(1));
        let postgres = db.get_database_backend() == DbBackend::Postgres
            && tokio::runtime::Handle::try_current().is_ok();
        if !postgres {
            let (_, listening) = watch::channel(true);
            return Self(Arc::new(Inner {
                watchers,
                outbox: None,
                listening,
            }));
        }
        let pool = db.get_postgres_connection_pool().clone();
        let (outbox, queued) = mpsc::channel(OUTBOX);
        let (listening_tx, listening) = watch::channel(false);
        tokio::spawn(crate::store::in_background(publish(pool.clone(), queued)));
        tokio::spawn(crate::store::in_background(listen(
            pool,
            watchers.clone(),
            listening_tx,
        )));
        Self(Arc::new(Inner {
            watchers,
            outbox: Some(outbox),
            listening,
        }))
    }

    /// Tells watchers what `results` (of an upsert that has committed,
    /// stored `at`) changed.
    pub fn accounts(&self, results: &[UpsertResult], at: DateTime<Utc>) {
        if !self.anyone_may_watch() {
            return;
        }
        let changes: Vec<(i64, i64, String, u8)> = results
            .iter()
            .filter(|r| r.changed.any())
            .map(|r| {
                let c = r.changed;
                let bits = [
                    (c.followed, Kind::Followed),
                    (c.unfollowed, Kind::Unfollowed),
                    (c.linked, Kind::Linked),
                    (c.profile, Kind::ProfileChanged),
                ]
                .into_iter()
                .filter(|(on, _)| *on)
                .fold(0, |bits, (_, kind)| bits | kind.bit());
                (
                    r.account.id,
                    r.account.app_id,
                    r.account.openid.clone(),
                    bits,
                )
            })
            .collect();
        if !changes.is_empty() {
            self.publish(Batch::Accounts { at, changes });
        }
    }

    /// Tells watchers that sync job `job` of app `app` saved its progress
    /// (or ended) `at`.
    pub fn sync_progress(&self, job: i64, app: i64, at: DateTime<Utc>) {
        self.publish(Batch::Sync { at, job, app });
    }

    fn publish(&self, batch: Batch) {
        match &self.0.outbox {
            Some(outbox) => {
                if outbox.try_send(batch).is_err() {
                    metrics::counter!("union360_events_dropped_total").increment(1);
                }
            }
            // Cut as on PostgreSQL, so that watchers see the same batches.
            None => {
                if !self.anyone_may_watch() {
                    return;
                }
                for part in batch.split() {
                    let _ = self.0.watchers.send(Arc::new(part));
                }
            }
        }
    }

    /// Whether a batch may reach a watcher: always on PostgreSQL (other
    /// instances' watchers cannot be counted), while this process has one
    /// on SQLite. Nothing is built for a batch nobody can see.
    fn anyone_may_watch(&self) -> bool {
        self.0.outbox.is_some() || self.0.watchers.receiver_count() > 0
    }

    /// A new watcher: it receives the batches committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.0.watchers.subscribe()
    }

    /// Watchers in this process.
    pub fn watchers(&self) -> usize {
        self.0.watchers.receiver_count()
    }

    /// Waits (at most `within`) until events from the database reach this
    /// process's watchers; whether they do.
    pub async fn ready(&self, within: Duration) -> bool {
        let mut listening = self.0.listening.clone();
        tokio::time::timeout(within, listening.wait_for(|on| *on))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Sends what is queued as `NOTIFY`s, one statement for all the parts of
/// a batch.
async fn publish(pool: sea_orm::sqlx::PgPool, mut queued: mpsc::Receiver<Batch>) {
    while let Some(batch) = queued.recv().await {
        // What queued meanwhile goes in the same statement: under load,
        // one round trip carries many writers' events.
        let mut parts = batch.encode();
        while parts.len() < MAX_PARTS_PER_STATEMENT {
            match queued.try_recv() {
                Ok(more) => parts.extend(more.encode()),
                Err(_) => break,
            }
        }
        let sent =
            sea_orm::sqlx::query("SELECT pg_notify($1, part) FROM unnest($2::text[]) AS part")
                .bind(CHANNEL)
                .bind(&parts)
                .execute(&pool)
                .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not publish account events");
            metrics::counter!("union360_events_dropped_total").increment(1);
        }
    }
}

/// Hands what the `LISTEN`ing connection receives to the watchers;
/// connects again when the connection is lost (what was sent meanwhile is
/// lost to this process).
async fn listen(
    pool: sea_orm::sqlx::PgPool,
    watchers: broadcast::Sender<Arc<Batch>>,
    listening: watch::Sender<bool>,
) {
    use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
    // A connection of its own, outside the pool the requests share.
    let own = PgPoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&own).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        }
        .await;
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "could not listen for account events; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = listening.send(true);
        // Until the connection is lost.
        while let Ok(Some(notification)) = listener.try_recv().await {
            match serde_json::from_str::<Batch>(notification.payload()) {
                Ok(batch) => {
                    let _ = watchers.send(Arc::new(batch));
                }
                Err(e) => tracing::warn!(error = %e, "an account event could not be read"),
            }
        }
        let _ = listening.send(false);
        let _ = watchers.send(Arc::new(Batch::Interrupted));
        tracing::warn!("the connection listening for account events was lost; connecting again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_cut_under_the_notify_payload_limit_and_loses_nothing() {
        let at = Utc::now();
        let changes: Vec<_> = (0..1_000)
            .map(|i| {
                (
                    i,
                    7,
                    format!("o{:027}", i),
                    Kind::Followed.bit() | Kind::Linked.bit(),
                )
            })
            .collect();
        let batch = Batch::Accounts {
            at,
            changes: changes.clone(),
        };
        let parts = batch.clone().encode();
        assert!(parts.len() > 1);
        let mut back = Vec::new();
        for part in &parts {
            assert!(part.len() <= BATCH_BYTES, "{} bytes", part.len());
            let Batch::Accounts { changes, .. } = serde_json::from_str(part).unwrap() else {
                panic!("not accounts")
            };
            back.extend(changes);
        }
        assert_eq!(back, changes);
        let events: Vec<Event> = batch.events().collect();
        assert_eq!(events.len(), 2_000);
        assert_eq!(events[0].kind, Kind::Followed);
        assert_eq!(events[1].kind, Kind::Linked);
        assert_eq!(
            events[1].openid.as_deref(),
            Some("o000000000000000000000000000")
        );
    }

    #[test]
    fn a_sync_batch_is_one_event() {
        let at = Utc::now();
        let batch = Batch::Sync { at, job: 3, app: 9 };
        let parts = batch.clone().encode();
        assert_eq!(parts.len(), 1);
        assert_eq!(serde_json::from_str::<Batch>(&parts[0]).unwrap(), batch);
        let events: Vec<Event> = batch.events().collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, Kind::SyncProgress);
        assert_eq!(events[0].job_id, Some(3));
    }
}
