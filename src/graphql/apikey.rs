//! API keys in the API: listing, creating and revoking them (`admin` scope).

use crate::graphql::scalars::DateTime;
use async_graphql::{Context, InputObject, Object, SimpleObject};
use secrecy::ExposeSecret;

use super::context::ContextExt;
use super::enums::Scope;
use super::error::{ApiError, ApiResult, ResultExt};
use super::limits::cost;
use crate::keys::{KeyError, KeyInfo, KeyLimits, NewKey};

/// An API key as listings show it: never the key itself, which is shown
/// once, when created.
pub struct ApiKey(KeyInfo);

/// An API key: who may call union360, with which scopes and limits.
#[Object]
impl ApiKey {
    /// The key's public id (`u360_` and 12 hex digits): the start of the key,
    /// safe to show and log; used to revoke it.
    async fn key_id(&self) -> &str {
        &self.0.key_id
    }

    /// Who or what uses the key.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// What the key may read and do.
    async fn scopes(&self) -> Vec<Scope> {
        self.0.scopes.iter().map(Scope::from).collect()
    }

    /// Requests per second the key may make; null means the server's default.
    async fn rate_per_sec(&self) -> Option<u32> {
        self.0.limits.rate_per_sec
    }

    /// The largest burst of requests; null means the server's default.
    async fn burst(&self) -> Option<u32> {
        self.0.limits.burst
    }

    /// Requests in flight at once; null means the server's default.
    async fn max_concurrent(&self) -> Option<u32> {
        self.0.limits.max_concurrent
    }

    /// When the key was created.
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }

    /// When the key was last used, as last recorded (recorded about once a
    /// minute, not on every request).
    async fn last_used_at(&self) -> Option<DateTime> {
        self.0.last_used_at.map(DateTime)
    }

    /// When the key was revoked; a revoked key is refused with UNAUTHENTICATED.
    async fn revoked_at(&self) -> Option<DateTime> {
        self.0.revoked_at.map(DateTime)
    }
}

/// A key just created.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The whole key, shown this once: union360 keeps only its hash. Send it
    /// as `Authorization: Bearer <key>`.
    key: String,
    /// The key as listings show it.
    api_key: ApiKey,
}

/// A key to create.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// Who or what will use the key (1 to 200 characters).
    pub name: String,
    /// What the key may read and do (at least one).
    pub scopes: Vec<Scope>,
    /// Requests per second; omit for the server's default.
    pub rate_per_sec: Option<u32>,
    /// The largest burst of requests; omit for the server's default.
    pub burst: Option<u32>,
    /// Requests in flight at once; omit for the server's default.
    pub max_concurrent: Option<u32>,
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Invalid(_) => Self::BadUserInput(e.to_string()),
            KeyError::NotFound(_) => Self::NotFound(e.to_string()),
            KeyError::Db(e) => Self::internal(e),
        }
    }
}

/// Queries about API keys.
#[derive(Default)]
pub struct ApiKeyQuery;

#[Object]
impl ApiKeyQuery {
    /// Every API key, oldest first, revoked ones included.
    #[graphql(complexity = "cost::list(false, child_complexity)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> ApiResult<Vec<ApiKey>> {
        let keys = ctx.state()?.keys().list().await.api()?;
        ctx.read_rows(keys.len())?;
        Ok(keys.into_iter().map(ApiKey).collect())
    }
}

/// Mutations of API keys.
#[derive(Default)]
pub struct ApiKeyMutation;

#[Object]
impl ApiKeyMutation {
    /// Creates an API key and returns it, the only time it is shown.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key's name, scopes and limits.")] input: CreateApiKeyInput,
    ) -> ApiResult<CreatedApiKey> {
        let new = NewKey {
            name: input.name,
            scopes: input.scopes.into_iter().map(Into::into).collect(),
            limits: KeyLimits {
                rate_per_sec: input.rate_per_sec,
                burst: input.burst,
                max_concurrent: input.max_concurrent,
            },
        };
        let created = ctx.state()?.keys().create(new).await.api()?;
        Ok(CreatedApiKey {
            key: created.key.expose_secret().to_owned(),
            api_key: ApiKey(created.info),
        })
    }

    /// Revokes an API key: requests with it are refused from now on (on
    /// other instances within seconds). Fails with NOT_FOUND for an unknown id.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key's public id (`keyId`).")] key_id: String,
    ) -> ApiResult<ApiKey> {
        Ok(ApiKey(ctx.state()?.keys().revoke(&key_id).await.api()?))
    }
}
