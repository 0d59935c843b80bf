//! The application state shared by every request.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::apps::AppCache;
use crate::clock::Clock;
use crate::crypto::MasterKey;
use crate::refresh::Refresher;
use crate::settings::Settings;
use crate::store::Store;
use crate::wechat::WechatClient;

/// Everything a request may need, cheap to clone (an `Arc` inside).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Inner {
    /// The database.
    pub store: Store,
    /// The key that seals secrets at rest.
    pub master_key: MasterKey,
    /// The settings the server was built with.
    pub settings: Settings,
    /// The WeChat API client.
    pub wechat: WechatClient,
    /// Refreshes in flight (process-wide single flight).
    pub refresher: Refresher,
    /// The registered apps, kept in memory.
    pub apps: AppCache,
    /// The time source of freshness, tokens and breakers.
    pub clock: Clock,
}

impl AppState {
    /// Wraps the parts into a shared state.
    pub fn new(
        store: Store,
        master_key: MasterKey,
        settings: Settings,
        wechat: WechatClient,
        clock: Clock,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            master_key,
            settings,
            wechat,
            refresher: Refresher::default(),
            apps: AppCache::default(),
            clock,
        }))
    }

    /// The current time, as the service's clock says.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.clock.now()
    }

    /// Refreshes in flight.
    pub fn refresher(&self) -> &Refresher {
        &self.0.refresher
    }

    /// The registered apps, kept in memory.
    pub fn apps(&self) -> &AppCache {
        &self.0.apps
    }

    /// The WeChat API client.
    pub fn wechat(&self) -> &WechatClient {
        &self.0.wechat
    }

    /// The database connection pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.0.store.db
    }

    /// The database with its statement counter.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The master key.
    pub fn master_key(&self) -> &MasterKey {
        &self.0.master_key
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }
}
