//! Batch loading without N+1, and without timers.
//!
//! Rows that one resolver fetched together (a page of people, a page of
//! accounts, the accounts of those people) share a [`Siblings`] value. The
//! first time any of them needs a relation, the relation is loaded for all
//! of them with one `IN (…)` statement, behind a once-cell, so concurrent
//! resolvers wait for that one statement instead of issuing their own. The
//! number of statements of a query therefore depends on its shape, never on
//! the page size or on timing. Apps are few and are loaded whole, once per
//! request ([`RequestCache`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use entity::{account, app, person};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::OnceCell;

/// Per-request caches.
#[derive(Default)]
pub struct RequestCache {
    apps: OnceCell<HashMap<i64, app::Model>>,
}

impl RequestCache {
    /// Every app by id, loaded once per request.
    pub async fn apps(&self, db: &DatabaseConnection) -> Result<&HashMap<i64, app::Model>, DbErr> {
        self.apps
            .get_or_try_init(|| async {
                let all = app::Entity::find().all(db).await?;
                Ok(all.into_iter().map(|a| (a.id, a)).collect())
            })
            .await
    }
}

/// Rows fetched together, and the relations loaded for all of them at once.
pub struct Siblings {
    person_ids: Vec<i64>,
    accounts: OnceCell<HashMap<i64, Vec<account::Model>>>,
    persons: OnceCell<HashMap<i64, person::Model>>,
}

impl Siblings {
    /// Siblings of a page of persons (whose rows are known already).
    pub fn of_persons(persons: &[person::Model]) -> Arc<Self> {
        Arc::new(Self {
            person_ids: persons.iter().map(|p| p.id).collect(),
            accounts: OnceCell::new(),
            persons: OnceCell::new_with(Some(persons.iter().map(|p| (p.id, p.clone())).collect())),
        })
    }

    /// Siblings of a set of accounts (their persons are loaded when first asked for).
    pub fn of_accounts(accounts: &[account::Model]) -> Arc<Self> {
        let ids: BTreeSet<i64> = accounts.iter().filter_map(|a| a.person_id).collect();
        Arc::new(Self {
            person_ids: ids.into_iter().collect(),
            accounts: OnceCell::new(),
            persons: OnceCell::new(),
        })
    }

    /// The accounts of person `id`, loading those of every sibling person on first use.
    pub async fn accounts_of(
        &self,
        db: &DatabaseConnection,
        id: i64,
    ) -> Result<Vec<account::Model>, DbErr> {
        let all = self
            .accounts
            .get_or_try_init(|| async {
                let rows = account::Entity::find()
                    .filter(account::Column::PersonId.is_in(self.person_ids.iter().copied()))
                    .order_by_asc(account::Column::Id)
                    .all(db)
                    .await?;
                let mut map: HashMap<i64, Vec<account::Model>> = HashMap::new();
                for row in rows {
                    if let Some(person_id) = row.person_id {
                        map.entry(person_id).or_default().push(row);
                    }
                }
                Ok::<_, DbErr>(map)
            })
            .await?;
        Ok(all.get(&id).cloned().unwrap_or_default())
    }

    /// Person `id`, loading every sibling's person on first use.
    pub async fn person(
        &self,
        db: &DatabaseConnection,
        id: i64,
    ) -> Result<Option<person::Model>, DbErr> {
        let all = self
            .persons
            .get_or_try_init(|| async {
                let rows = person::Entity::find()
                    .filter(person::Column::Id.is_in(self.person_ids.iter().copied()))
                    .all(db)
                    .await?;
                Ok::<_, DbErr>(rows.into_iter().map(|p| (p.id, p)).collect())
            })
            .await?;
        Ok(all.get(&id).cloned())
    }
}
