//! `signIn`: a frontend hands over the code of a WeChat sign-in, and gets
//! the account and its person ([`crate::ingest::signin`]).

use async_graphql::{Context, Object, SimpleObject};

use super::access;
use super::account::Account;
use super::context::ContextExt;
use super::error::{ApiError, ApiResult, ResultExt};
use crate::domain::AppId;
use crate::ingest::signin::{self, SignInError};
use crate::refresh::RefreshPolicy;

/// Who signed in.
#[derive(SimpleObject)]
pub struct SignInPayload {
    /// The account the code belongs to, as stored after the sign-in; its
    /// `person` is the person of its UnionID, when WeChat gave one.
    pub account: Account,
    /// Whether the user is a snapshot-page virtual user (WeChat's
    /// `is_snapshotuser`): a placeholder identity that never creates or
    /// joins a person.
    pub snapshot_user: bool,
}

/// The sign-in mutation.
#[derive(Default)]
pub struct SignInMutation;

#[Object]
impl SignInMutation {
    /// Exchanges the code of a WeChat sign-in and puts the user into the
    /// identity graph: for a website, mobile app or official-account web
    /// page the OAuth code (`sns/oauth2/access_token`, then `sns/userinfo`
    /// when the scope granted allows it, for the nickname and avatar); for a
    /// mini program the `wx.login` code (`sns/jscode2session`). The user's
    /// tokens and session key are never stored or returned. A code is
    /// single-use and never retried. Reading the payload's account takes
    /// `read` (and `pii` for its profile) besides `write`. Fails with
    /// BAD_USER_INPUT when WeChat refuses the code (invalid, used, expired
    /// or blocked: `extensions.wechatErrcode` is 40029, 40163, 42003 or
    /// 40226), NOT_FOUND when the app is not registered,
    /// UPSTREAM_UNAVAILABLE when WeChat fails during the exchange (the code
    /// may or may not have been used).
    async fn sign_in(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The app the user signed in to.")] appid: String,
        #[graphql(secret, desc = "The sign-in code WeChat gave the frontend.")] code: String,
    ) -> ApiResult<SignInPayload> {
        let state = ctx.state()?;
        let appid = AppId::parse(appid).api()?;
        // One token per sign-in beyond the request's own: each costs WeChat
        // calls made with the app's secret.
        access::spend(access::caller(ctx)?, 1, "sign-ins")?;
        let signed_in = signin::sign_in(
            state.db(),
            state.events(),
            state.apps(),
            state.wechat(),
            &appid,
            &code,
            state.now(),
        )
        .await
        .api()?;
        let account = Account::batch(vec![signed_in.account], RefreshPolicy::CacheOnly, None)
            .pop()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no account")))
            .api()?;
        Ok(SignInPayload {
            account,
            snapshot_user: signed_in.snapshot_user,
        })
    }
}

impl From<SignInError> for ApiError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::UnknownApp(_) => Self::NotFound(e.to_string()),
            SignInError::Code { errcode, .. } => Self::WechatRefused {
                message: e.to_string(),
                errcode,
            },
            SignInError::Invalid(_) => Self::BadUserInput(e.to_string()),
            SignInError::Upstream(ref cause) => Self::Upstream {
                message: e.to_string(),
                errcode: cause.errcode(),
            },
            SignInError::Identity(e) => e.into(),
            SignInError::Unusable(_) | SignInError::Internal(_) => Self::internal(e),
        }
    }
}
