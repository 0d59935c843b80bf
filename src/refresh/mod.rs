//! The refresh service: account profiles from WeChat, fresh when read.
//!
//! [`Refresher`] is the service's handle. It takes what it needs explicitly
//! (the database, the WeChat client, the apps service, a clock and its own
//! [`RefreshSettings`]) and knows nothing of GraphQL or HTTP, so follower
//! sync and the webhook use the same rules as reads.
//!
//! - [`freshness`]: the freshness rule (one function decides staleness);
//! - `fetch`: fetching accounts with `user/info/batchget` (grouped by app,
//!   100 per call, apps in parallel) and writing what WeChat said through the
//!   identity service, so the identity rules hold for refreshes exactly as
//!   for imports; a failed fetch never touches the stored profile, it is
//!   recorded on the account as its last refresh error;
//! - `flight`: the process-wide single flight (concurrent readers of one
//!   stale account share one WeChat call);
//! - `lease`: refresh leases across instances (PostgreSQL);
//! - `plan`: the refresh of what one read touched, within the read's
//!   deadline, and the accounts as that read sees them afterwards.

mod fetch;
mod flight;
pub mod freshness;
mod lease;
mod plan;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use entity::{account, app};
use sea_orm::{DatabaseConnection, DbErr};

pub use fetch::{RefreshReport, upsert_from};
pub use flight::RECENT;
pub use plan::{Refreshed, SeenAccount};

use crate::apps::Apps;
use crate::clock::Clock;
use crate::domain::{AppId, OpenId, ParseError};
use crate::events::Events;
use crate::identity::{self, IdentityError, LookupError};
use crate::wechat::WechatClient;

/// How a read wants stale profiles handled.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum RefreshPolicy {
    /// Serve what is stored; never call WeChat.
    CacheOnly,
    /// Refresh accounts whose profile is stale before answering, within the
    /// read's budget; past it, or if WeChat fails, serve what is stored,
    /// marked stale, with the error.
    #[default]
    IfStale,
    /// Refresh every official-account account read, fresh or not (within the budget).
    Force,
}

/// The refresh service's settings (their defaults are the server's, in `settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSettings {
    /// How long a profile stays fresh for apps without a TTL of their own.
    pub default_ttl: chrono::Duration,
    /// How long one read may wait for its refreshes.
    pub budget: Duration,
}

/// Why a refresh could not be made or written. WeChat's failures are not
/// errors here: they are recorded on the accounts and counted in the report.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The accounts asked for are not all known.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Writing what WeChat said failed.
    #[error("writing refreshed profiles")]
    Write(#[from] IdentityError),
    /// A stored app's appid no longer parses.
    #[error("stored app {appid} has an unusable appid")]
    StoredApp {
        /// The stored appid.
        appid: String,
        /// Why it does not parse.
        source: ParseError,
    },
    /// The database failed.
    #[error("database")]
    Db(#[from] DbErr),
}

/// The refresh service, cheap to clone.
#[derive(Clone)]
pub struct Refresher(Arc<Inner>);

struct Inner {
    db: DatabaseConnection,
    wechat: Arc<WechatClient>,
    apps: Apps,
    clock: Clock,
    events: Events,
    settings: RefreshSettings,
    flights: flight::Flights,
    /// Reads whose refresh stopped waiting for the rest of the read at its budget.
    incomplete_rounds: AtomicU64,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("settings", &self.0.settings)
            .field("flights", &self.0.flights)
            .finish_non_exhaustive()
    }
}

impl Refresher {
    /// The service over its parts.
    pub fn new(
        db: DatabaseConnection,
        wechat: Arc<WechatClient>,
        apps: Apps,
        clock: Clock,
        events: Events,
        settings: RefreshSettings,
    ) -> Self {
        Self(Arc::new(Inner {
            db,
            wechat,
            apps,
            clock,
            events,
            settings,
            flights: flight::Flights::default(),
            incomplete_rounds: AtomicU64::default(),
        }))
    }

    /// The settings the service runs with.
    pub fn settings(&self) -> &RefreshSettings {
        &self.0.settings
    }

    /// The freshness TTL of `app`'s profiles.
    pub fn ttl(&self, app: &app::Model) -> chrono::Duration {
        freshness::ttl(app, self.0.settings.default_ttl)
    }

    /// Whether `account` of `app` is stale now, by the service's clock.
    pub fn is_stale(&self, account: &account::Model, app: &app::Model) -> bool {
        freshness::is_stale(account, self.ttl(app), self.0.clock.now())
    }

    /// Accounts whose refresh this process started.
    pub fn started(&self) -> u64 {
        self.0.flights.started()
    }

    /// Accounts whose refresh joined one already in flight.
    pub fn coalesced(&self) -> u64 {
        self.0.flights.coalesced()
    }

    /// Records that a read's refresh stopped waiting for the rest of the
    /// read (its other root fields) at the read's budget: a safety bound
    /// that should never trigger.
    pub fn note_incomplete_round(&self) {
        self.0.incomplete_rounds.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("union360_refresh_round_incomplete_total").increment(1);
    }

    /// How many reads' refreshes stopped waiting at their budget ([`Self::note_incomplete_round`]).
    pub fn incomplete_rounds(&self) -> u64 {
        self.0.incomplete_rounds.load(Ordering::Relaxed)
    }

    /// Fetches the accounts of `keys` from WeChat now, whatever their
    /// freshness; returns what happened and the accounts as stored
    /// afterwards, in the order of `keys`.
    #[tracing::instrument(name = "refresh.accounts", skip_all, fields(accounts = keys.len()))]
    pub async fn refresh_accounts(
        &self,
        keys: &[(AppId, OpenId)],
    ) -> Result<(RefreshReport, Vec<account::Model>), RefreshError> {
        let accounts = identity::read::find_accounts(&self.0.db, &self.0.apps, keys).await?;
        let report = self.fetch(&accounts).await?;
        let ids: Vec<i64> = accounts.iter().map(|a| a.id).collect();
        let stored = identity::read::accounts_by_ids(&self.0.db, &ids).await?;
        Ok((report, stored))
    }
}
