//! The root subscription: live account events (`accountEvents`).
//!
//! Each subscription watches the event bus ([`crate::events`]) from the
//! moment it starts and delivers the events of the apps and kinds it asked
//! for, one GraphQL result per event. A subscription that falls more than
//! the bus's buffer behind ends, and [`Hangup`] tells its connection why,
//! so that the connection is closed rather than left to hold events.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_graphql::{Context, Enum, ErrorExtensions, ID, Object, Subscription};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use super::account::Account;
use super::context::ContextExt;
use super::error::{ApiError, ApiResult, ResultExt};
use super::scalars::DateTime;
use super::sync::SyncJob;
use crate::domain::AppId;
use crate::events::{Batch, Event, Kind};
use crate::identity::read;
use crate::keys::Scope;
use crate::refresh::RefreshPolicy;

/// Most apps one subscription may name.
const MAX_APPIDS: usize = 100;

/// What happened to an account (or a sync).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::events::Kind")]
pub enum AccountEventKind {
    /// The account follows its official account now: a first follow, or a
    /// follow again (a newer follow time).
    Followed,
    /// The account stopped following its official account.
    Unfollowed,
    /// The account was linked to its person: its UnionID became known (by
    /// a sync, a refresh, a sign-in or an import).
    Linked,
    /// A profile value of the account changed (nickname, avatar, sex,
    /// language, places, remark).
    ProfileChanged,
    /// A follower sync saved a page of followers, or ended; `syncJob` tells
    /// where it stands.
    SyncProgress,
}

/// Something that happened to the company's accounts, delivered as it is
/// stored.
pub struct AccountEvent {
    event: Event,
    appid: Arc<str>,
}

/// Something that happened to the company's accounts, delivered as it is
/// stored, whichever way it came in: a follower sync, a WeChat push, a
/// sign-in, a refresh from WeChat or an import.
#[Object]
impl AccountEvent {
    /// What happened.
    async fn kind(&self) -> AccountEventKind {
        self.event.kind.into()
    }

    /// When union360 stored it.
    async fn at(&self) -> DateTime {
        DateTime(self.event.at)
    }

    /// The app it happened in.
    async fn appid(&self) -> &str {
        &self.appid
    }

    /// The account's OpenID within that app; null for SYNC_PROGRESS.
    async fn openid(&self) -> Option<&str> {
        self.event.openid.as_deref()
    }

    /// The account as stored when the event is delivered (never refreshed
    /// from WeChat for it; a later change may already show); null for
    /// SYNC_PROGRESS. Its personal fields need the `pii` scope, as
    /// everywhere.
    async fn account(&self, ctx: &Context<'_>) -> ApiResult<Option<Account>> {
        let Some(id) = self.event.account_id else {
            return Ok(None);
        };
        let state = ctx.state()?;
        let found = read::accounts_by_ids(state.db(), &[id]).await.api()?;
        ctx.read_rows(found.len())?;
        Ok(Account::batch(found, RefreshPolicy::CacheOnly, None).pop())
    }

    /// For SYNC_PROGRESS: the job, as it stands when the event is
    /// delivered; null for other kinds.
    async fn sync_job(&self, ctx: &Context<'_>) -> ApiResult<Option<SyncJob>> {
        let Some(id) = self.event.job_id else {
            return Ok(None);
        };
        let syncer = ctx.state()?.syncer();
        Ok(syncer
            .job(id)
            .await
            .api()?
            .map(|job| SyncJob::new(job, self.appid.to_string())))
    }

    /// An id for the event, unique while the server runs (for keys in
    /// lists).
    async fn id(&self) -> ID {
        let key = match (self.event.account_id, self.event.job_id) {
            (Some(account), _) => format!("a{account}"),
            (None, Some(job)) => format!("s{job}"),
            (None, None) => String::new(),
        };
        ID(format!(
            "{}:{:?}:{}",
            key,
            self.event.kind,
            self.event.at.timestamp_micros()
        ))
    }
}

/// Tells a subscription's connection that it must end, and why.
#[derive(Clone, Default)]
pub struct Hangup(Arc<(Notify, Mutex<Option<String>>)>);

impl Hangup {
    /// Asks for the connection to be closed for `reason`.
    pub fn hang_up(&self, reason: String) {
        let (notify, why) = &*self.0;
        why.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
        notify.notify_one();
    }

    /// Waits for a reason to close the connection.
    pub async fn wanted(&self) -> String {
        let (notify, why) = &*self.0;
        loop {
            if let Some(reason) = why.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return reason;
            }
            notify.notified().await;
        }
    }
}

/// The root subscription.
#[derive(Default)]
pub struct EventSubscription;

/// The root subscription: what happens to the company's accounts, as it
/// happens. Subscriptions run over WebSocket at `/graphql/ws` (protocol
/// `graphql-transport-ws`, the API key in `connection_init`), never over
/// `POST /graphql`.
#[Subscription(name = "Subscription")]
impl EventSubscription {
    /// Follows, unfollows, links to a person, profile changes and sync
    /// progress, as they are stored, from every way in (follower syncs,
    /// WeChat pushes, sign-ins, refreshes, imports) and, on PostgreSQL,
    /// from every instance. Runs over WebSocket only (`/graphql/ws`,
    /// protocol `graphql-transport-ws`, the API key in `connection_init`).
    /// Events stored before the subscription started are not delivered. A
    /// subscriber that reads too slowly is disconnected (close code 1013)
    /// and subscribes again. BAD_USER_INPUT for too many appids, NOT_FOUND
    /// for one not registered.
    async fn account_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the events of these apps (at most 100); all apps when absent.")]
        appids: Option<Vec<String>>,
        #[graphql(desc = "Only these kinds of event; all kinds when absent.")] kinds: Option<
            Vec<AccountEventKind>,
        >,
    ) -> async_graphql::Result<BoxStream<'static, AccountEvent>> {
        let caller = super::access::caller(ctx)?;
        if !caller.may(Scope::Read) {
            return Err(ApiError::Forbidden(
                "`Subscription.accountEvents` needs the `read` scope, which this API key does not have"
                    .to_owned(),
            )
            .extend());
        }
        let state = ctx.state()?;
        let apps = state.apps().all().await.api()?;
        let wanted_apps: Option<HashSet<i64>> = match appids {
            None => None,
            Some(appids) if appids.len() > MAX_APPIDS => {
                return Err(ApiError::BadUserInput(format!(
                    "at most {MAX_APPIDS} appids, got {}",
                    appids.len()
                ))
                .extend());
            }
            Some(appids) => {
                let appids: Vec<AppId> = appids
                    .into_iter()
                    .map(AppId::parse)
                    .collect::<Result<_, _>>()
                    .api()?;
                let refs: Vec<&AppId> = appids.iter().collect();
                // Reloaded once for one registered on another instance.
                let found = state.apps().by_appids(&refs).await.api()?;
                let mut ids = HashSet::new();
                for (appid, app) in appids.iter().zip(found) {
                    let app = app.ok_or_else(|| {
                        ApiError::NotFound(format!("app {appid} is not registered")).extend()
                    })?;
                    ids.insert(app.id);
                }
                Some(ids)
            }
        };
        let wanted_kinds: Option<HashSet<Kind>> =
            kinds.map(|kinds| kinds.into_iter().map(Kind::from).collect());
        let hangup = ctx.data_opt::<Hangup>().cloned();
        let events = state.events().clone();
        let apps_service = state.apps().clone();
        let receiver = events.subscribe();
        let stream = futures::stream::unfold(
            (receiver, apps),
            move |(mut receiver, mut apps)| {
                let wanted_apps = wanted_apps.clone();
                let wanted_kinds = wanted_kinds.clone();
                let hangup = hangup.clone();
                let apps_service = apps_service.clone();
                async move {
                    loop {
                        let missed = match receiver.recv().await {
                            Ok(batch) if matches!(*batch, Batch::Interrupted) => {
                                "events stopped reaching this server for a moment (its database connection was lost); subscribe again".to_owned()
                            }
                            Ok(batch) => {
                                let mut out = Vec::new();
                                for event in batch.events() {
                                    if wanted_apps.as_ref().is_some_and(|w| !w.contains(&event.app_id))
                                        || wanted_kinds.as_ref().is_some_and(|w| !w.contains(&event.kind))
                                    {
                                        continue;
                                    }
                                    // An app registered since the subscription began.
                                    if !apps.contains_key(&event.app_id)
                                        && let Ok(fresh) = apps_service.covering([event.app_id]).await
                                    {
                                        apps = fresh;
                                    }
                                    let Some(app) = apps.get(&event.app_id) else {
                                        continue;
                                    };
                                    let appid: Arc<str> = Arc::from(app.appid.as_str());
                                    out.push(AccountEvent { event, appid });
                                }
                                if out.is_empty() {
                                    continue;
                                }
                                return Some((futures::stream::iter(out), (receiver, apps)));
                            }
                            Err(RecvError::Lagged(missed)) => format!(
                                "too slow: {missed} batches of events were missed; subscribe again"
                            ),
                            Err(RecvError::Closed) => return None,
                        };
                        // The connection is closed for it; the subscription
                        // never completes, so its client subscribes again.
                        match &hangup {
                            Some(hangup) => {
                                hangup.hang_up(missed);
                                futures::future::pending::<()>().await;
                            }
                            None => return None,
                        }
                    }
                }
            },
        )
        .flatten()
        .boxed();
        Ok(stream)
    }
}
