//! The application state: the composition root that hands each service to
//! the HTTP and GraphQL layers.
//!
//! Services never see it: [`AppState::new`] builds each from explicit parts
//! (a connection, the WeChat client, the apps service, a clock, its own
//! settings), and only `http` and `graphql` read them back from here.

use std::sync::{Arc, RwLock};

use sea_orm::DatabaseConnection;

use crate::apps::Apps;
use crate::clock::Clock;
use crate::crypto::MasterKey;
use crate::events::Events;
use crate::ingest::push::Pushes;
use crate::ingest::sync::Syncer;
use crate::keys::Keys;
use crate::refresh::{RefreshSettings, Refresher};
use crate::settings::Settings;
use crate::store::Store;
use crate::wechat::WechatClient;

/// Everything a request may need, cheap to clone (an `Arc` inside).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Store,
    master_key: MasterKey,
    settings: Settings,
    wechat: Arc<WechatClient>,
    apps: Apps,
    keys: Keys,
    refresher: Refresher,
    syncer: Syncer,
    pushes: Pushes,
    events: Events,
    clock: Clock,
    /// Set when the server begins to shut down.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Example operations the playground opens with: (tab title, document).
    playground_examples: RwLock<Vec<(String, String)>>,
}

impl AppState {
    /// Builds the services over the parts.
    pub fn new(
        store: Store,
        master_key: MasterKey,
        settings: Settings,
        wechat: WechatClient,
        clock: Clock,
    ) -> Self {
        let wechat = Arc::new(wechat);
        let events = Events::new(&store.db, settings.server.subscriptions.events());
        let apps = Apps::new(store.db.clone(), master_key.clone(), clock.clone());
        let keys = Keys::new(
            store.db.clone(),
            clock.clone(),
            settings.server.keys.limits(),
        );
        let refresher = Refresher::new(
            store.db.clone(),
            wechat.clone(),
            apps.clone(),
            clock.clone(),
            events.clone(),
            RefreshSettings {
                default_ttl: settings.freshness_ttl(),
                budget: settings.refresh_budget(),
            },
        );
        let syncer = Syncer::new(
            store.db.clone(),
            wechat.clone(),
            apps.clone(),
            clock.clone(),
            events.clone(),
            settings.server.sync.settings(),
        );
        let pushes = Pushes::new(
            store.db.clone(),
            apps.clone(),
            clock.clone(),
            refresher.clone(),
            events.clone(),
            std::time::Duration::from_secs(settings.server.callback_replay_window_secs),
        );
        Self(Arc::new(Inner {
            store,
            master_key,
            settings,
            wechat,
            apps,
            keys,
            refresher,
            syncer,
            pushes,
            events,
            clock,
            stopping: tokio::sync::watch::Sender::new(false),
            playground_examples: RwLock::default(),
        }))
    }

    /// Sets the example operations the playground opens with (the demo
    /// fills them in for its data; they are public, like the page).
    pub fn set_playground_examples(&self, examples: Vec<(String, String)>) {
        *self
            .0
            .playground_examples
            .write()
            .unwrap_or_else(|e| e.into_inner()) = examples;
    }

    /// The example operations the playground opens with, if any.
    pub fn playground_examples(&self) -> Vec<(String, String)> {
        self.0
            .playground_examples
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The follower sync service.
    pub fn syncer(&self) -> &Syncer {
        &self.0.syncer
    }

    /// Tells long-lived connections (subscriptions) that the server is
    /// shutting down.
    pub fn begin_stopping(&self) {
        self.0.stopping.send_replace(true);
    }

    /// Whether the server is shutting down, as it changes.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.stopping.subscribe()
    }

    /// The live account events.
    pub fn events(&self) -> &Events {
        &self.0.events
    }

    /// The push service (WeChat's message pushes).
    pub fn pushes(&self) -> &Pushes {
        &self.0.pushes
    }

    /// The current time, as the service's clock says.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.clock.now()
    }

    /// The refresh service.
    pub fn refresher(&self) -> &Refresher {
        &self.0.refresher
    }

    /// The apps service.
    pub fn apps(&self) -> &Apps {
        &self.0.apps
    }

    /// The API-key service.
    pub fn keys(&self) -> &Keys {
        &self.0.keys
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
