//! The registered apps, kept in memory.
//!
//! Apps are few, change rarely, and nearly every read needs them (their kind
//! and freshness TTL), so reads take them from here instead of the database.
//! A copy is reloaded when it is older than [`CACHE_MAX_AGE`] by the
//! service's clock, when an app asked for is not in it (registered by another
//! instance), and after this process changes an app. Concurrent reloads are
//! one statement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Duration, Utc};
use entity::app;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait};

use crate::clock::Clock;
use crate::domain::AppId;

/// How long a process trusts its in-memory copy of the apps: the longest
/// another instance's change (a new freshness TTL) takes to show here.
pub const CACHE_MAX_AGE: Duration = Duration::seconds(30);

/// How often a lookup anyone can make without an API key (an unknown appid
/// in a callback URL) may reload the copy on a miss.
pub const UNKEYED_MISS_RELOAD_INTERVAL: Duration = Duration::seconds(1);

/// Every registered app, by id.
pub type AppsById = HashMap<i64, app::Model>;

/// The app of `apps` with `appid`.
fn find_appid(apps: &AppsById, appid: &AppId) -> Option<app::Model> {
    apps.values().find(|a| a.appid == appid.as_str()).cloned()
}

/// The in-memory copy of the registered apps.
#[derive(Debug)]
pub struct AppCache {
    clock: Clock,
    copy: RwLock<Option<Loaded>>,
    /// Bumped by every change; a reload that started before one is not kept.
    generation: AtomicU64,
    /// Numbers the loads in the order they start.
    loads: AtomicU64,
    loading: tokio::sync::Mutex<()>,
    /// When a lookup without an API key last reloaded on a miss.
    unkeyed_reload: std::sync::Mutex<Option<DateTime<Utc>>>,
}

#[derive(Debug, Clone)]
struct Loaded {
    /// The number of the load that made this copy.
    load: u64,
    /// When it was loaded, by the cache's clock.
    at: DateTime<Utc>,
    apps: Arc<AppsById>,
}

impl AppCache {
    /// An empty cache whose copies age by `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            copy: RwLock::default(),
            generation: AtomicU64::default(),
            loads: AtomicU64::default(),
            loading: tokio::sync::Mutex::default(),
            unkeyed_reload: std::sync::Mutex::default(),
        }
    }

    /// The apps, from memory unless the copy is too old.
    pub async fn get<C: ConnectionTrait>(&self, db: &C) -> Result<Arc<AppsById>, DbErr> {
        let asked = self.loads.load(Ordering::Acquire);
        match self.current() {
            Some(copy) if self.clock.within(copy.at, CACHE_MAX_AGE) => Ok(copy.apps),
            _ => self.reload(db, asked).await,
        }
    }

    /// The apps, including every one of `ids` that is registered: reloaded
    /// once when the copy lacks one.
    pub async fn covering<C: ConnectionTrait>(
        &self,
        db: &C,
        ids: impl IntoIterator<Item = i64>,
    ) -> Result<Arc<AppsById>, DbErr> {
        let apps = self.get(db).await?;
        if ids.into_iter().all(|id| apps.contains_key(&id)) {
            return Ok(apps);
        }
        self.reload(db, self.loads.load(Ordering::Acquire)).await
    }

    /// One app by appid (reloaded once when the copy does not have it).
    pub async fn by_appid<C: ConnectionTrait>(
        &self,
        db: &C,
        appid: &AppId,
    ) -> Result<Option<app::Model>, DbErr> {
        Ok(self.by_appids(db, &[appid]).await?.pop().flatten())
    }

    /// Apps by appid, in the order of `appids`: the copy reloaded at most
    /// once, when it lacks one of them.
    pub async fn by_appids<C: ConnectionTrait>(
        &self,
        db: &C,
        appids: &[&AppId],
    ) -> Result<Vec<Option<app::Model>>, DbErr> {
        let find = |apps: &AppsById| -> Vec<Option<app::Model>> {
            appids.iter().map(|appid| find_appid(apps, appid)).collect()
        };
        let apps = self.get(db).await?;
        let found = find(&apps);
        if found.iter().all(Option::is_some) {
            return Ok(found);
        }
        let asked = self.loads.load(Ordering::Acquire);
        Ok(find(&*self.reload(db, asked).await?))
    }

    /// One app by appid, for lookups anyone can make without an API key:
    /// a miss reloads the copy at most once per
    /// [`UNKEYED_MISS_RELOAD_INTERVAL`], however many unknown appids arrive.
    pub async fn by_appid_unkeyed<C: ConnectionTrait>(
        &self,
        db: &C,
        appid: &AppId,
    ) -> Result<Option<app::Model>, DbErr> {
        let apps = self.get(db).await?;
        if let Some(found) = find_appid(&apps, appid) {
            return Ok(Some(found));
        }
        {
            let mut last = self
                .unkeyed_reload
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| self.clock.within(at, UNKEYED_MISS_RELOAD_INTERVAL)) {
                return Ok(None);
            }
            *last = Some(self.clock.now());
        }
        let asked = self.loads.load(Ordering::Acquire);
        Ok(find_appid(&*self.reload(db, asked).await?, appid))
    }

    /// Forgets the copy: an app changed.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.copy.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn current(&self) -> Option<Loaded> {
        self.copy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Loads the apps, unless a load that started after `asked` loads had
    /// started has landed meanwhile (it saw everything this caller wants).
    async fn reload<C: ConnectionTrait>(&self, db: &C, asked: u64) -> Result<Arc<AppsById>, DbErr> {
        let _one_at_a_time = self.loading.lock().await;
        if let Some(copy) = self.current().filter(|c| c.load > asked) {
            return Ok(copy.apps);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let load = self.loads.fetch_add(1, Ordering::AcqRel) + 1;
        let at = self.clock.now();
        let apps: AppsById = app::Entity::find()
            .all(db)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let apps = Arc::new(apps);
        let mut copy = self.copy.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) == generation {
            *copy = Some(Loaded {
                load,
                at,
                apps: apps.clone(),
            });
        }
        Ok(apps)
    }
}
