//! Apps in the API: reading them, and registering new ones.

use crate::graphql::scalars::DateTime;
use async_graphql::{Context, ID, InputObject, Object};
use entity::app;
use secrecy::SecretString;

use super::context::ContextExt;
use super::enums::AppKind;
use super::error::{ApiResult, ResultExt};
use super::limits::cost;
use super::node::NodeId;
use crate::apps::{self, AppInput};
use crate::domain::AppId;

/// A stored app as the API shows it.
pub struct App(pub(crate) app::Model);

/// A WeChat app bound to the company's open platform account. Its secrets
/// are write-only: the API says whether they are set, never what they are.
#[Object]
impl App {
    /// The app's global id (see `Node.id`).
    pub async fn id(&self, _ctx: &Context<'_>) -> async_graphql::Result<ID> {
        Ok(NodeId::App(AppId::parse(self.0.appid.clone()).api()?).encode())
    }

    /// The WeChat appid (`wx…`).
    async fn appid(&self) -> &str {
        &self.0.appid
    }

    /// What kind of app this is.
    async fn kind(&self) -> Option<AppKind> {
        apps::kind_of(&self.0).map(AppKind::from)
    }

    /// The display name given at registration.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether a callback token and EncodingAESKey are configured (official accounts),
    /// which WeChat message pushes need.
    async fn callback_configured(&self) -> bool {
        self.0.callback_token_sealed.is_some() && self.0.aes_key_sealed.is_some()
    }

    /// How long this app's profiles stay fresh, in seconds, when set for this app;
    /// null means the server-wide default.
    async fn freshness_ttl_seconds(&self) -> Option<i64> {
        self.0.freshness_ttl_secs
    }

    /// When the app was registered.
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }

    /// When the app was last changed.
    async fn updated_at(&self) -> DateTime {
        self.0.updated_at.into()
    }
}

/// Queries about apps.
#[derive(Default)]
pub struct AppQuery;

#[Object]
impl AppQuery {
    /// One app by appid, or null when it is not registered.
    async fn app(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The WeChat appid (`wx…`).")] appid: String,
    ) -> ApiResult<Option<App>> {
        let appid = AppId::parse(appid).api()?;
        let found = ctx.state()?.apps().find(&appid).await.api()?;
        Ok(found.map(App))
    }

    /// Every registered app, in registration order.
    #[graphql(complexity = "cost::list(false, child_complexity)")]
    async fn apps(&self, ctx: &Context<'_>) -> ApiResult<Vec<App>> {
        let all = ctx.state()?.apps().list().await.api()?;
        ctx.read_rows(all.len())?;
        Ok(all.into_iter().map(App).collect())
    }
}

/// A new app and its secrets. Secrets are stored encrypted and never returned.
#[derive(InputObject)]
pub struct RegisterAppInput {
    /// The WeChat appid (`wx…`).
    pub appid: String,
    /// What kind of app it is.
    pub kind: AppKind,
    /// A display name (1 to 100 characters).
    pub name: String,
    /// The AppSecret from the WeChat console: 32 hexadecimal characters.
    #[graphql(secret)]
    pub secret: String,
    /// Official accounts: the callback token configured in the WeChat console
    /// (3 to 32 letters or digits).
    #[graphql(secret)]
    pub callback_token: Option<String>,
    /// Official accounts: the 43-character EncodingAESKey.
    #[graphql(secret)]
    pub encoding_aes_key: Option<String>,
    /// How long this app's profiles stay fresh, in seconds; omit for the server's default.
    pub freshness_ttl_seconds: Option<i64>,
}

/// Mutations of apps.
#[derive(Default)]
pub struct AppMutation;

#[Object]
impl AppMutation {
    /// Registers a WeChat app. Fails with BAD_USER_INPUT when the appid is taken, or
    /// when fields are invalid: one error names every invalid field, in its message
    /// and in `extensions.fields`.
    async fn register_app(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The app and its secrets.")] input: RegisterAppInput,
    ) -> ApiResult<App> {
        let new = AppInput {
            appid: input.appid,
            kind: crate::domain::AppKind::from(input.kind).as_str().to_owned(),
            name: input.name,
            secret: SecretString::from(input.secret),
            callback_token: input.callback_token.map(SecretString::from),
            aes_key: input.encoding_aes_key.map(SecretString::from),
            freshness_ttl_secs: input.freshness_ttl_seconds,
        }
        .parse()
        .api()?;
        let model = ctx.state()?.apps().register(new).await.api()?;
        Ok(App(model))
    }

    /// Sets how long an app's profiles stay fresh (null: the server's default).
    /// Fails with NOT_FOUND when the app is not registered.
    async fn set_freshness_ttl(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The appid.")] appid: String,
        #[graphql(desc = "Seconds, at least 60; null for the server's default.")] seconds: Option<
            i64,
        >,
    ) -> ApiResult<App> {
        let appid = AppId::parse(appid).api()?;
        let apps = ctx.state()?.apps();
        Ok(App(apps.set_freshness_ttl(&appid, seconds).await.api()?))
    }

    /// Sets a new EncodingAESKey for an official account and keeps the
    /// current one: pushes sealed with either are opened until the next
    /// change. Set it here first, then in the WeChat console. Fails with
    /// NOT_FOUND when the app is not registered, BAD_USER_INPUT when it is
    /// not an official account or the key is not one.
    async fn rotate_encoding_aes_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The official account's appid.")] appid: String,
        #[graphql(
            secret,
            desc = "The new 43-character EncodingAESKey from the WeChat console."
        )]
        encoding_aes_key: String,
    ) -> ApiResult<App> {
        let appid = AppId::parse(appid).api()?;
        let apps = ctx.state()?.apps();
        let key = SecretString::from(encoding_aes_key);
        Ok(App(apps.rotate_aes_key(&appid, key).await.api()?))
    }
}
