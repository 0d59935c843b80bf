//! Sign-in code exchange: right after a user signs in with WeChat, the
//! frontend hands the code to union360, which exchanges it and puts the
//! user's account (and, with a UnionID, their person) into the identity
//! graph. This is how a UnionID, and since 2021 a nickname and avatar,
//! usually reaches the company.
//!
//! - Websites, mobile apps and official-account web pages:
//!   `sns/oauth2/access_token`, then `sns/userinfo` when the scope granted
//!   allows it (`snsapi_userinfo`, `snsapi_login`).
//! - Mini programs: `sns/jscode2session`.
//!
//! A code is single-use, so nothing here is retried. The user's access and
//! refresh tokens and the mini program's `session_key` are used and
//! dropped: never stored, never returned. A snapshot-page virtual user
//! (`is_snapshotuser`) is stored as such and never creates or joins a
//! person (identity rule 4).

use chrono::{DateTime, Utc};
use entity::account;
use sea_orm::DatabaseConnection;

use crate::apps::Apps;
use crate::domain::{AppId, AppKind, OpenId, ProfileSource, UnionId};
use crate::events::Events;
use crate::identity::{self, AccountUpsert, Follow, IdentityError, Profile};
use crate::wechat::{WechatClient, WechatError};

/// The WeChat errcodes of a code that cannot be exchanged: invalid (40029),
/// used already (40163), expired (42003), blocked (40226, a mini program's
/// code from a user WeChat holds as risky).
pub const CODE_ERRORS: [i64; 4] = [40029, 40163, 42003, 40226];

/// Scopes that allow `sns/userinfo`.
const USERINFO_SCOPES: [&str; 2] = ["snsapi_userinfo", "snsapi_login"];

/// Whom a sign-in code belongs to, as stored.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The account, as stored after the sign-in.
    pub account: account::Model,
    /// Whether the user is a snapshot-page virtual user.
    pub snapshot_user: bool,
}

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// No app has this appid.
    #[error("app {0} is not registered")]
    UnknownApp(String),
    /// The code is not one WeChat exchanges (invalid, used or expired).
    #[error("WeChat refused the sign-in code (errcode {errcode}: {errmsg})")]
    Code {
        /// The errcode.
        errcode: i64,
        /// WeChat's message.
        errmsg: String,
    },
    /// The code is malformed.
    #[error("{0}")]
    Invalid(String),
    /// WeChat failed or could not be reached while exchanging the code
    /// (which it may or may not have used).
    #[error("WeChat could not exchange the code: {0}")]
    Upstream(#[source] WechatError),
    /// What WeChat sent could not be stored.
    #[error("WeChat sent an unusable {0}")]
    Unusable(&'static str),
    /// Writing the account failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The app's secret could not be opened, or the database failed.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<WechatError> for SignInError {
    fn from(e: WechatError) -> Self {
        match e {
            WechatError::Api { errcode, errmsg } if CODE_ERRORS.contains(&errcode) => {
                Self::Code { errcode, errmsg }
            }
            other => {
                tracing::warn!(wechat.errcode = other.errcode(), error = %other, "a sign-in code could not be exchanged");
                Self::Upstream(other)
            }
        }
    }
}

/// The longest code taken (WeChat's are 32 characters).
const MAX_CODE: usize = 128;

/// Exchanges the sign-in `code` of app `appid` and writes what it tells
/// about the user through the identity service.
pub async fn sign_in(
    db: &DatabaseConnection,
    events: &Events,
    apps: &Apps,
    wechat: &WechatClient,
    appid: &AppId,
    code: &str,
    now: DateTime<Utc>,
) -> Result<SignedIn, SignInError> {
    if code.is_empty() || code.len() > MAX_CODE || !code.chars().all(|c| c.is_ascii_graphic()) {
        return Err(SignInError::Invalid(format!(
            "a sign-in code is 1 to {MAX_CODE} printable ASCII characters"
        )));
    }
    let app = apps
        .by_appid(appid)
        .await
        .map_err(|e| SignInError::Internal(e.into()))?
        .ok_or_else(|| SignInError::UnknownApp(appid.to_string()))?;
    let credentials = apps
        .credentials(&app)
        .map_err(|e| SignInError::Internal(e.into()))?;
    let (openid, unionid, snapshot_user, profile, source) = match crate::apps::kind_of(&app) {
        Some(AppKind::MiniProgram) => {
            let session = wechat.jscode2session(&credentials, code).await?;
            (
                session.openid,
                session.unionid,
                false,
                Profile::default(),
                ProfileSource::MiniProgram,
            )
        }
        _ => {
            let token = wechat.sns_access_token(&credentials, code).await?;
            let snapshot = token.is_snapshot_user();
            let allows_userinfo = token.scope.as_deref().is_some_and(|scopes| {
                scopes
                    .split(',')
                    .any(|s| USERINFO_SCOPES.contains(&s.trim()))
            });
            // The code is spent now: a profile WeChat does not give leaves
            // the sign-in without one, never fails it.
            let user = if allows_userinfo && !snapshot {
                wechat
                    .sns_userinfo(&token.access_token, &token.openid)
                    .await
                    .inspect_err(|e| {
                        tracing::warn!(wechat.errcode = e.errcode(), error = %e, "sns/userinfo failed; signing in without the profile");
                    })
                    .ok()
            } else {
                None
            };
            let (profile, unionid) = if let Some(user) = user {
                let profile = Profile {
                    nickname: user.nickname.clone(),
                    avatar_url: user.headimgurl.clone(),
                    sex: user.sex.and_then(|s| i32::try_from(s).ok()),
                    language: None,
                    city: user.city.clone(),
                    province: user.province.clone(),
                    country: user.country.clone(),
                };
                (profile, user.unionid.clone().or(token.unionid.clone()))
            } else {
                (Profile::default(), token.unionid.clone())
            };
            (
                token.openid.clone(),
                unionid,
                snapshot,
                profile,
                ProfileSource::SnsUserinfo,
            )
        }
    };
    let openid = OpenId::parse(openid).map_err(|_| SignInError::Unusable("openid"))?;
    let unionid = unionid
        .filter(|u| !u.is_empty() && !snapshot_user)
        .map(UnionId::parse)
        .transpose()
        .map_err(|_| SignInError::Unusable("unionid"))?;
    let mut row = AccountUpsert {
        appid: appid.clone(),
        openid,
        unionid,
        snapshot_user,
        profile,
        follow: Follow::default(),
        refreshed: false,
    };
    identity::make_storable(&mut row);
    let mut written = identity::upsert_accounts(db, vec![row], source, now).await?;
    events.accounts(&written, now);
    let account = written
        .pop()
        .map(|r| r.account)
        .ok_or_else(|| SignInError::Internal(anyhow::anyhow!("the sign-in wrote no account")))?;
    tracing::info!(app.appid = %appid, snapshot_user, linked = account.person_id.is_some(), "signed in");
    Ok(SignedIn {
        account,
        snapshot_user,
    })
}
