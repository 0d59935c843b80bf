//! Applying WeChat's pushes: follows, unfollows and QR scans, once each,
//! durably before WeChat is answered.
//!
//! A push opened by [`super::callback::open_push`] is handed to
//! [`Pushes::apply`], which answers once the push is committed. A writer
//! task commits the pushes waiting at that moment together, in one
//! transaction (two such batches at once on PostgreSQL, one on SQLite): for
//! each, a `callback_receipt` (its deduplication key, hashed) and the
//! change to its account, through the identity service, so that the
//! audience statistics follow in the same transaction. A receipt already
//! there (a retry, on this instance or another) means the push was applied
//! before: nothing is written again. An account's pushes are applied in
//! time order, and one older than the last follow or unfollow stored for
//! it (a retry that arrived after a newer push) is receipted but changes
//! nothing.
//!
//! Pushes carry no UnionID: after the commit, an account followed or
//! scanning whose profile wants fetching (never fetched, or stale) is
//! queued for a profile refresh, which links it to its person. The queue is bounded; what it cannot take
//! is refreshed when it is next read.
//!
//! Work is bounded before it starts: the writer's queue holds
//! [`QUEUE`] pushes and a full queue is refused at once
//! ([`PushError::Busy`]), so WeChat retries later and no client waits on
//! another's backlog; a caller waits at most [`ACK_WITHIN`], inside WeChat's
//! 5-second window.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use entity::{app, callback_receipt};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::apps::{Apps, AppsById};
use crate::clock::Clock;
use crate::domain::{AppId, OpenId, ProfileSource};
use crate::events::Events;
use crate::identity::{self, AccountUpsert, Follow, IdentityError, Profile};
use crate::refresh::{Refresher, freshness};
use crate::store;
use crate::wechat::callback::CallbackMessage;

/// The longest QR scene taken (WeChat's `scene_str` is at most 64 characters).
pub const MAX_SCENE: usize = 64;
/// Pushes waiting for the writer, at most; past it, pushes are refused.
pub const QUEUE: usize = 10_000;
/// Pushes committed in one transaction, at most.
pub const BATCH: usize = 500;
/// How long a push waits for its commit before it is answered as not
/// applied (WeChat then retries): under WeChat's 5-second window.
pub const ACK_WITHIN: Duration = Duration::from_secs(4);
/// How long receipts are kept, at least: far past WeChat's last retry.
pub const RECEIPT_TTL: Duration = Duration::from_secs(3600);
/// Accounts waiting for a profile refresh, at most.
pub const REFRESH_QUEUE: usize = 10_000;
/// Accounts one refresh call fetches, at most (`batchget`'s bound).
const REFRESH_BATCH: usize = 100;
/// Batches committed at once on PostgreSQL.
const WRITERS: usize = 2;
/// How often expired receipts are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// What a push asks of its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `subscribe`: the user follows, since `CreateTime`; through the QR
    /// code of this scene when the push names one.
    Follow {
        /// The QR scene (`EventKey` without its `qrscene_` prefix).
        scene: Option<String>,
    },
    /// `unsubscribe`: the user stopped following at `CreateTime`.
    Unfollow,
    /// `SCAN`: a follower scanned a parametric QR code; they follow.
    Scan,
}

impl Change {
    /// The change a message asks for; `None` for the events and messages
    /// that change no account (acknowledged and ignored).
    pub fn of(message: &CallbackMessage) -> Option<Self> {
        if message.msg_type != "event" {
            return None;
        }
        match message.event.as_deref()? {
            "subscribe" => Some(Self::Follow {
                scene: message
                    .event_key
                    .as_deref()
                    .and_then(|key| key.strip_prefix("qrscene_"))
                    .filter(|scene| !scene.is_empty())
                    .map(str::to_owned),
            }),
            "unsubscribe" => Some(Self::Unfollow),
            "SCAN" => Some(Self::Scan),
            _ => None,
        }
    }

    /// The follow values after `self` at `at`, given those of the pushes
    /// before it (in time order): a scan keeps the follow it confirms.
    fn fold(&self, before: Option<Follow>, at: DateTime<Utc>) -> Follow {
        match (self, before) {
            (Self::Scan, Some(before)) if before.subscribed == Some(true) => before,
            _ => self.follow(at),
        }
    }

    /// The follow values it reports, at `at`.
    fn follow(&self, at: DateTime<Utc>) -> Follow {
        match self {
            Self::Follow { scene } => {
                let numeric = scene.as_deref().and_then(|s| s.parse::<i64>().ok());
                Follow {
                    subscribed: Some(true),
                    subscribe_time: Some(at),
                    subscribe_scene: scene.as_ref().map(|_| "ADD_SCENE_QR_CODE".to_owned()),
                    qr_scene: numeric,
                    qr_scene_str: scene.clone().filter(|_| numeric.is_none()),
                    ..Follow::default()
                }
            }
            Self::Unfollow => Follow {
                subscribed: Some(false),
                left_at: Some(at),
                ..Follow::default()
            },
            Self::Scan => Follow {
                subscribed: Some(true),
                ..Follow::default()
            },
        }
    }
}

/// A push that changes an account, checked and ready to apply.
#[derive(Debug, Clone)]
pub struct Push {
    /// The app's row id.
    pub app_id: i64,
    /// The app.
    pub appid: AppId,
    /// The user.
    pub openid: OpenId,
    /// `CreateTime`.
    pub at: DateTime<Utc>,
    /// What it changes.
    pub change: Change,
    /// SHA-256 (hex) of the push's deduplication key.
    pub key: String,
}

impl Push {
    /// The push `message` to `app` asks for at `now`, if it changes an
    /// account; refused when its `FromUserName`, `CreateTime` (later than
    /// `window` from now: a push is never from the future) or QR scene is
    /// unusable.
    pub fn of(
        app: &app::Model,
        message: &CallbackMessage,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<Option<Self>, PushError> {
        let Some(change) = Change::of(message) else {
            return Ok(None);
        };
        let openid = OpenId::parse(message.from_user_name.clone())
            .map_err(|e| PushError::Invalid(format!("FromUserName: {e}")))?;
        let at = Utc
            .timestamp_opt(message.create_time, 0)
            .single()
            .filter(|at| {
                chrono::Duration::from_std(window)
                    .ok()
                    .and_then(|window| now.checked_add_signed(window))
                    .is_none_or(|latest| *at <= latest)
            })
            .ok_or_else(|| {
                PushError::Invalid("CreateTime is later than the replay window allows".into())
            })?;
        if let Change::Follow { scene: Some(scene) } = &change
            && (scene.chars().count() > MAX_SCENE || scene.chars().any(char::is_control))
        {
            return Err(PushError::Invalid(format!(
                "the QR scene must be at most {MAX_SCENE} characters, none a control character"
            )));
        }
        let appid = AppId::parse(app.appid.clone())
            .map_err(|e| PushError::Invalid(format!("stored appid: {e}")))?;
        Ok(Some(Self {
            app_id: app.id,
            appid,
            openid,
            at,
            change,
            key: hex::encode(Sha256::digest(message.dedup_key().as_bytes())),
        }))
    }
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now.
    Applied,
    /// Applied before (a retry): nothing changed.
    Duplicate,
    /// Older than what is stored for the account: receipted, nothing changed.
    Superseded,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Superseded => "superseded",
        }
    }
}

/// Why a push was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    /// The push names something unusable.
    #[error("{0}")]
    Invalid(String),
    /// Too many pushes are waiting: WeChat should try again.
    #[error("too many pushes are waiting; try again")]
    Busy,
    /// The commit did not come within [`ACK_WITHIN`]: it may still come,
    /// and WeChat's retry is then a duplicate.
    #[error("the push was not committed in time; try again")]
    Slow,
    /// The database failed.
    #[error("the push could not be stored: {0}")]
    Db(String),
}

/// The push service, cheap to clone.
#[derive(Clone)]
pub struct Pushes(Arc<Inner>);

struct Inner {
    writer: Writer,
    sender: OnceLock<mpsc::Sender<Waiting>>,
}

impl std::fmt::Debug for Pushes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pushes").finish_non_exhaustive()
    }
}

/// Per push, its outcome and whether its account wants a refresh; and
/// what the identity service wrote.
type PushesWritten = (
    Vec<Result<(Outcome, bool), PushError>>,
    Vec<identity::UpsertResult>,
);

/// A push waiting for its commit.
struct Waiting {
    push: Push,
    done: oneshot::Sender<Result<Outcome, PushError>>,
}

/// What the writer task needs.
#[derive(Clone)]
struct Writer {
    db: DatabaseConnection,
    apps: Apps,
    clock: Clock,
    refresher: Refresher,
    events: Events,
    receipt_ttl: chrono::Duration,
}

impl Pushes {
    /// The service over its parts; receipts outlive `replay_window` twice
    /// over, and [`RECEIPT_TTL`] at least.
    pub fn new(
        db: DatabaseConnection,
        apps: Apps,
        clock: Clock,
        refresher: Refresher,
        events: Events,
        replay_window: Duration,
    ) -> Self {
        let ttl = RECEIPT_TTL.max(replay_window.saturating_mul(2));
        Self(Arc::new(Inner {
            writer: Writer {
                db,
                apps,
                clock,
                refresher,
                events,
                receipt_ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(365)),
            },
            sender: OnceLock::new(),
        }))
    }

    /// Applies `push`, answering once it is committed (or found applied
    /// before), within [`ACK_WITHIN`].
    pub async fn apply(&self, push: Push) -> Result<Outcome, PushError> {
        let (done, answer) = oneshot::channel();
        self.sender()
            .try_send(Waiting { push, done })
            .map_err(|_| PushError::Busy)?;
        match tokio::time::timeout(ACK_WITHIN, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PushError::Db("the writer stopped".into())),
            Err(_) => Err(PushError::Slow),
        }
    }

    /// The writer's queue, its task started on first use (inside the
    /// runtime that serves the pushes).
    fn sender(&self) -> &mpsc::Sender<Waiting> {
        self.0.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            let (refresh, refresh_queue) = mpsc::channel(REFRESH_QUEUE);
            let writer = self.0.writer.clone();
            tokio::spawn(store::in_background(
                writer.clone().write(receiver, refresh),
            ));
            tokio::spawn(store::in_background(writer.refresh(refresh_queue)));
            sender
        })
    }
}

impl Writer {
    /// Commits what is waiting, a batch at a time (two at once on
    /// PostgreSQL, one on SQLite, whose writes take turns anyway), until
    /// every sender is gone.
    async fn write(
        self,
        mut receiver: mpsc::Receiver<Waiting>,
        refresh: mpsc::Sender<(AppId, OpenId)>,
    ) {
        let writers = match self.db.get_database_backend() {
            DbBackend::Sqlite => 1,
            _ => WRITERS,
        };
        let free = Arc::new(Semaphore::new(writers));
        let purge_every = chrono::Duration::from_std(PURGE_EVERY).unwrap_or_default();
        let mut purged_at: Option<DateTime<Utc>> = None;
        loop {
            // A writer first, then everything waiting by then: batches
            // grow while the writers are busy.
            let Ok(writer) = free.clone().acquire_owned().await else {
                return;
            };
            let mut batch = Vec::with_capacity(BATCH);
            if receiver.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
            let now = self.clock.now();
            if purged_at.is_none_or(|at| now - at >= purge_every) {
                purged_at = Some(now);
                if let Err(e) = self.purge(now).await {
                    tracing::warn!(error = %e, "could not delete expired callback receipts");
                }
            }
            let (this, refresh) = (self.clone(), refresh.clone());
            tokio::spawn(store::in_background(async move {
                this.settle(batch, &refresh, now).await;
                drop(writer);
            }));
        }
    }

    /// Commits `batch` and answers each push in it.
    async fn settle(
        &self,
        batch: Vec<Waiting>,
        refresh: &mpsc::Sender<(AppId, OpenId)>,
        now: DateTime<Utc>,
    ) {
        let pushes: Vec<Push> = batch.iter().map(|w| w.push.clone()).collect();
        let results = match self.commit(&pushes, now).await {
            Ok(results) => results,
            // One push must not fail the others: each on its own.
            Err(e) if pushes.len() > 1 => {
                tracing::warn!(error = %e, pushes = pushes.len(), "a batch of pushes failed; writing them one by one");
                let mut results = Vec::with_capacity(pushes.len());
                for push in &pushes {
                    results.push(match self.commit(std::slice::from_ref(push), now).await {
                        Ok(mut one) => one.pop().unwrap_or(Err(PushError::Db("no result".into()))),
                        Err(e) => Err(PushError::Db(e.to_string())),
                    });
                }
                results
            }
            Err(e) => vec![Err(PushError::Db(e.to_string()))],
        };
        for (waiting, result) in batch.into_iter().zip(results) {
            if let Ok((Outcome::Applied, true)) = &result {
                // Full: refreshed when it is next read instead.
                if refresh
                    .try_send((waiting.push.appid.clone(), waiting.push.openid.clone()))
                    .is_err()
                {
                    metrics::counter!("union360_callback_refresh_dropped_total").increment(1);
                }
            }
            let result = result.map(|(outcome, _)| outcome);
            let label = match &result {
                Ok(outcome) => outcome.as_str(),
                Err(_) => "failed",
            };
            metrics::counter!("union360_callback_pushes_total", "outcome" => label).increment(1);
            let _ = waiting.done.send(result);
        }
    }

    /// Commits `pushes` in one transaction, written again when it loses a
    /// race; per push, its outcome and whether its account wants a refresh.
    async fn commit(
        &self,
        pushes: &[Push],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<(Outcome, bool), PushError>>, IdentityError> {
        // Read before the transaction: nothing waits on the app cache while
        // the write lock is held.
        let apps = self.apps.covering(pushes.iter().map(|p| p.app_id)).await?;
        let mut attempts = identity::Attempts::default();
        loop {
            let written = async {
                let txn = store::begin_write(&self.db).await?;
                let (results, written) = self.write_within(&txn, pushes, &apps, now).await?;
                txn.commit().await?;
                self.events.accounts(&written, now);
                Ok::<_, IdentityError>(results)
            }
            .await;
            match written {
                Err(e) if attempts.again(&e) => {}
                result => return result,
            }
        }
    }

    async fn write_within<C: ConnectionTrait>(
        &self,
        txn: &C,
        pushes: &[Push],
        apps: &AppsById,
        now: DateTime<Utc>,
    ) -> Result<PushesWritten, IdentityError> {
        // Receipts first: those inserted are the pushes new here.
        let new = self.receipt(txn, pushes, now).await?;
        let mut outcomes: Vec<Outcome> = (0..pushes.len())
            .map(|i| {
                if new.contains(&i) {
                    Outcome::Superseded
                } else {
                    Outcome::Duplicate
                }
            })
            .collect();
        // Per account, its new pushes in time order (arrival order among equals).
        let mut by_account: BTreeMap<(i64, &str), Vec<usize>> = BTreeMap::new();
        for &i in &new {
            let push = &pushes[i];
            by_account
                .entry((push.app_id, push.openid.as_str()))
                .or_default()
                .push(i);
        }
        // Locked (on PostgreSQL), so that of two writers with pushes for
        // one account, the second sees what the first wrote.
        let keys: Vec<(i64, &str)> = by_account.keys().copied().collect();
        let stored = identity::existing_accounts(txn, &keys).await?;
        let mut rows = Vec::with_capacity(by_account.len());
        // Per row, the last push folded into it.
        let mut last_of_row = Vec::with_capacity(by_account.len());
        for ((app_id, openid), mut indexes) in by_account {
            indexes.sort_by_key(|&i| pushes[i].at);
            let account = stored.get(&(app_id, openid.to_owned()));
            // A push older (to the second) than the last follow or unfollow
            // stored, or folded before it, changes nothing.
            let mut last = account.and_then(|a| a.subscribe_time.max(a.unfollowed_at));
            let mut follow: Option<Follow> = None;
            let mut folded = None;
            for i in indexes {
                let push = &pushes[i];
                if last.is_some_and(|last| last.timestamp() > push.at.timestamp()) {
                    continue;
                }
                follow = Some(push.change.fold(follow, push.at));
                if push.change != Change::Scan {
                    last = Some(push.at);
                }
                outcomes[i] = Outcome::Applied;
                folded = Some(i);
            }
            let (Some(follow), Some(i)) = (follow, folded) else {
                continue;
            };
            rows.push(AccountUpsert {
                appid: pushes[i].appid.clone(),
                openid: pushes[i].openid.clone(),
                unionid: None,
                snapshot_user: false,
                profile: Profile::default(),
                follow,
                refreshed: false,
            });
            last_of_row.push(i);
        }
        let written = if rows.is_empty() {
            Vec::new()
        } else {
            identity::upsert_within(txn, &rows, ProfileSource::Callback, now).await?
        };
        // A follow or scan fetches the profile (the UnionID, and how the
        // user came to follow) when it wants fetching: never fetched, or
        // stale. A fresh one is not fetched again for a re-follow: WeChat's
        // quota is spent on new people first.
        let mut refresh: HashSet<usize> = HashSet::new();
        for result in &written {
            let i = last_of_row[result.index];
            // A follower not linked yet is fetched even when fresh: a
            // profile fetched while they did not follow has no UnionID.
            let account = &result.account;
            let wants = pushes[i].change != Change::Unfollow
                && ((account.unionid.is_none() && !account.snapshot_user)
                    || apps.get(&pushes[i].app_id).is_none_or(|app| {
                        freshness::wants_fetch(account, self.refresher.ttl(app), now)
                    }));
            if wants {
                refresh.insert(i);
            }
        }
        let outcomes = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, outcome)| Ok((outcome, refresh.contains(&i))))
            .collect();
        Ok((outcomes, written))
    }

    /// Inserts the receipts of `pushes`; returns the indexes of the pushes
    /// whose receipt was new (the first of equal keys in the batch).
    async fn receipt<C: ConnectionTrait>(
        &self,
        txn: &C,
        pushes: &[Push],
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, DbErr> {
        let mut first: HashMap<(i64, &str), usize> = HashMap::new();
        for (i, push) in pushes.iter().enumerate() {
            first.entry((push.app_id, push.key.as_str())).or_insert(i);
        }
        let expires = now
            .checked_add_signed(self.receipt_ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut insert = Query::insert();
        insert
            .into_table(callback_receipt::Entity)
            .columns([
                callback_receipt::Column::AppId,
                callback_receipt::Column::Key,
                callback_receipt::Column::ReceivedAt,
                callback_receipt::Column::ExpiresAt,
            ])
            .on_conflict(
                OnConflict::columns([
                    callback_receipt::Column::AppId,
                    callback_receipt::Column::Key,
                ])
                .do_nothing()
                .to_owned(),
            )
            .returning(Query::returning().columns([
                callback_receipt::Column::AppId,
                callback_receipt::Column::Key,
            ]));
        // In key order: two writers inserting the same receipts wait for
        // each other rather than deadlock.
        let mut keys: Vec<(i64, &str)> = first.keys().copied().collect();
        keys.sort_unstable();
        for (app_id, key) in keys {
            insert.values_panic([app_id.into(), key.into(), now.into(), expires.into()]);
        }
        let mut new = Vec::new();
        for row in txn.query_all(&insert).await? {
            let app_id: i64 = row.try_get("", "app_id")?;
            let key: String = row.try_get("", "key")?;
            if let Some(&i) = first.get(&(app_id, key.as_str())) {
                new.push(i);
            }
        }
        new.sort_unstable();
        Ok(new)
    }

    /// Deletes the receipts expired at `now`.
    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, DbErr> {
        let deleted = callback_receipt::Entity::delete_many()
            .filter(callback_receipt::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Refreshes the profiles of the accounts queued, [`REFRESH_BATCH`] at a time.
    async fn refresh(self, mut queue: mpsc::Receiver<(AppId, OpenId)>) {
        let mut keys = Vec::with_capacity(REFRESH_BATCH);
        while queue.recv_many(&mut keys, REFRESH_BATCH).await > 0 {
            keys.sort();
            keys.dedup();
            if let Err(e) = self.refresher.refresh_accounts(&keys).await {
                tracing::warn!(error = %e, accounts = keys.len(), "refreshing pushed accounts failed");
            }
            keys.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: &str, key: Option<&str>) -> CallbackMessage {
        CallbackMessage {
            to_user_name: "gh_1".into(),
            from_user_name: "o1".into(),
            create_time: 1_714_037_059,
            msg_type: "event".into(),
            event: Some(event.into()),
            event_key: key.map(Into::into),
            ticket: None,
            msg_id: None,
            content: None,
        }
    }

    #[test]
    fn each_event_asks_its_change() {
        assert_eq!(
            Change::of(&message("subscribe", None)),
            Some(Change::Follow { scene: None })
        );
        assert_eq!(
            Change::of(&message("subscribe", Some("qrscene_123"))),
            Some(Change::Follow {
                scene: Some("123".into())
            })
        );
        assert_eq!(
            Change::of(&message("unsubscribe", None)),
            Some(Change::Unfollow)
        );
        assert_eq!(
            Change::of(&message("SCAN", Some("123"))),
            Some(Change::Scan)
        );
        assert_eq!(Change::of(&message("CLICK", Some("menu"))), None);
        let mut text = message("subscribe", None);
        text.msg_type = "text".into();
        assert_eq!(Change::of(&text), None);
    }

    #[test]
    fn a_scan_keeps_the_follow_it_confirms() {
        let (t100, t101) = (
            Utc.timestamp_opt(100, 0).unwrap(),
            Utc.timestamp_opt(101, 0).unwrap(),
        );
        let qr = Change::Follow {
            scene: Some("7".into()),
        };
        let followed = qr.fold(None, t100);
        let scanned = Change::Scan.fold(Some(followed.clone()), t101);
        assert_eq!(scanned, followed);
        // After an unfollow, or alone, a scan says only that the user follows.
        let left = Change::Unfollow.fold(Some(followed), t100);
        let scanned = Change::Scan.fold(Some(left), t101);
        assert_eq!(scanned.subscribed, Some(true));
        assert_eq!((scanned.subscribe_time, scanned.left_at), (None, None));
        assert_eq!(Change::Scan.fold(None, t101), Change::Scan.follow(t101));
    }

    #[test]
    fn a_qr_scene_is_numeric_or_text() {
        let at = Utc.timestamp_opt(100, 0).unwrap();
        let numeric = Change::Follow {
            scene: Some("123".into()),
        }
        .follow(at);
        assert_eq!(numeric.qr_scene, Some(123));
        assert_eq!(numeric.qr_scene_str, None);
        assert_eq!(
            numeric.subscribe_scene.as_deref(),
            Some("ADD_SCENE_QR_CODE")
        );
        assert_eq!(numeric.subscribe_time, Some(at));
        let text = Change::Follow {
            scene: Some("spring-sale".into()),
        }
        .follow(at);
        assert_eq!(text.qr_scene, None);
        assert_eq!(text.qr_scene_str.as_deref(), Some("spring-sale"));
        let plain = Change::Follow { scene: None }.follow(at);
        assert_eq!(plain.subscribe_scene, None);
        let left = Change::Unfollow.follow(at);
        assert_eq!((left.subscribed, left.left_at), (Some(false), Some(at)));
    }
}
