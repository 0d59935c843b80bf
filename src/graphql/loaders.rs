//! Request-scoped batch loaders: the reason a page of people with their
//! accounts and apps costs a constant number of SQL statements.
//!
//! Each loader collects the keys requested while one level of the query
//! resolves and loads them with one `IN (…)` statement. They are built per
//! request and cache for the request's lifetime only, so a later request
//! always sees fresh rows.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use entity::{account, app, person};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};

/// The loaders of one request.
pub struct Loaders {
    /// Accounts by person id.
    pub accounts_by_person: DataLoader<AccountsByPerson, HashMapCache>,
    /// Apps by id.
    pub apps: DataLoader<AppsById, HashMapCache>,
    /// Persons by id.
    pub persons: DataLoader<PersonsById, HashMapCache>,
}

impl Loaders {
    /// Fresh loaders over `db`.
    pub fn new(db: &DatabaseConnection) -> Self {
        Self {
            accounts_by_person: DataLoader::with_cache(
                AccountsByPerson(db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            apps: DataLoader::with_cache(AppsById(db.clone()), tokio::spawn, HashMapCache::default()),
            persons: DataLoader::with_cache(
                PersonsById(db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
        }
    }
}

/// Loads the accounts of many persons at once, each list in id order.
pub struct AccountsByPerson(DatabaseConnection);

impl Loader<i64> for AccountsByPerson {
    type Value = Vec<account::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        let rows = account::Entity::find()
            .filter(account::Column::PersonId.is_in(keys.iter().copied()))
            .order_by_asc(account::Column::Id)
            .all(&self.0)
            .await?;
        let mut map: HashMap<i64, Vec<account::Model>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            if let Some(person_id) = row.person_id {
                map.entry(person_id).or_default().push(row);
            }
        }
        Ok(map)
    }
}

/// Loads apps by id.
pub struct AppsById(DatabaseConnection);

impl Loader<i64> for AppsById {
    type Value = app::Model;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        let rows = app::Entity::find()
            .filter(app::Column::Id.is_in(keys.iter().copied()))
            .all(&self.0)
            .await?;
        Ok(rows.into_iter().map(|a| (a.id, a)).collect())
    }
}

/// Loads persons by id.
pub struct PersonsById(DatabaseConnection);

impl Loader<i64> for PersonsById {
    type Value = person::Model;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        let rows = person::Entity::find()
            .filter(person::Column::Id.is_in(keys.iter().copied()))
            .all(&self.0)
            .await?;
        Ok(rows.into_iter().map(|p| (p.id, p)).collect())
    }
}
