//! Typed WeChat requests and responses.
//!
//! Unknown fields are ignored; fields WeChat sometimes omits are optional.

use serde::{Deserialize, Serialize};

use super::lenient::int_or_string;

/// An access token as `cgi-bin/token` and `cgi-bin/stable_token` return it.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// The token.
    pub access_token: String,
    /// Seconds until it expires (at most 7200).
    pub expires_in: i64,
}

/// The body of `POST /cgi-bin/stable_token`.
#[derive(Serialize)]
pub struct StableTokenRequest<'a> {
    /// Always `client_credential`.
    pub grant_type: &'a str,
    /// The appid.
    pub appid: &'a str,
    /// The app secret.
    pub secret: &'a str,
    /// Whether to invalidate the current token (limited to 20 a day).
    pub force_refresh: bool,
}

/// A user as `cgi-bin/user/info` (and each item of `batchget`) describes them.
///
/// Since 2021 `nickname` and `headimgurl` are empty and `sex`, `city`,
/// `province`, `country` empty or 0; the keys are still present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    /// 1 when the user follows the official account, 0 otherwise (then little else is sent).
    #[serde(default, deserialize_with = "int_or_string")]
    pub subscribe: Option<i64>,
    /// The OpenID.
    pub openid: String,
    /// The UnionID (bound apps only, and only for followers since WeChat's notice).
    #[serde(default)]
    pub unionid: Option<String>,
    /// Nickname (empty since 2021-12-27).
    #[serde(default)]
    pub nickname: Option<String>,
    /// Avatar URL (empty since 2021-12-27).
    #[serde(default)]
    pub headimgurl: Option<String>,
    /// Sex code (0 since 2021-10-20); a number or a string.
    #[serde(default, deserialize_with = "int_or_string")]
    pub sex: Option<i64>,
    /// Language.
    #[serde(default)]
    pub language: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// Province.
    #[serde(default)]
    pub province: Option<String>,
    /// Country.
    #[serde(default)]
    pub country: Option<String>,
    /// Last follow time (unix seconds).
    #[serde(default, deserialize_with = "int_or_string")]
    pub subscribe_time: Option<i64>,
    /// How the user followed (`ADD_SCENE_…`).
    #[serde(default)]
    pub subscribe_scene: Option<String>,
    /// Numeric QR scene.
    #[serde(default, deserialize_with = "int_or_string")]
    pub qr_scene: Option<i64>,
    /// String QR scene.
    #[serde(default)]
    pub qr_scene_str: Option<String>,
    /// Operator remark.
    #[serde(default)]
    pub remark: Option<String>,
    /// Tag ids.
    #[serde(default)]
    pub tagid_list: Option<Vec<i64>>,
}

/// One page of `cgi-bin/user/get`. The last page still carries a
/// `next_openid`; the call after it has `count: 0`, no `data` and an empty
/// `next_openid`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FollowersPage {
    /// Followers in all.
    #[serde(default)]
    pub total: u64,
    /// OpenIDs on this page.
    #[serde(default)]
    pub count: u64,
    /// The OpenIDs (absent on the empty page after the last).
    #[serde(default)]
    pub data: Option<FollowerIds>,
    /// Where the next page starts.
    #[serde(default)]
    pub next_openid: Option<String>,
}

/// The `data` of a followers page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FollowerIds {
    /// OpenIDs in follow order.
    #[serde(default)]
    pub openid: Vec<String>,
}

impl FollowersPage {
    /// The OpenIDs of this page.
    pub fn openids(&self) -> &[String] {
        self.data.as_ref().map_or(&[], |d| d.openid.as_slice())
    }

    /// Whether no page follows this one: a missing `data`, `count == 0`, or
    /// an empty `next_openid` each end the list.
    pub fn is_last(&self) -> bool {
        self.data.is_none()
            || self.count == 0
            || self.next_openid.as_deref().is_none_or(str::is_empty)
    }
}

/// `cgi-bin/openapi/quota/get`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Quota {
    /// Calls allowed per day.
    pub daily_limit: i64,
    /// Calls used today.
    pub used: i64,
    /// Calls left today.
    pub remain: i64,
}

/// `sns/oauth2/access_token`: a user's sign-in to a website or mobile app.
#[derive(Clone, Deserialize)]
pub struct SnsAccessToken {
    /// The user's access token (a secret).
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The refresh token (a secret).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The user's OpenID in this app.
    pub openid: String,
    /// Granted scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// The UnionID (with `snsapi_userinfo`).
    #[serde(default)]
    pub unionid: Option<String>,
    /// 1 for snapshot-page virtual users, whose ids must never make or join a person.
    #[serde(default, deserialize_with = "int_or_string")]
    pub is_snapshotuser: Option<i64>,
}

impl SnsAccessToken {
    /// Whether this is a snapshot-page virtual user.
    pub fn is_snapshot_user(&self) -> bool {
        self.is_snapshotuser == Some(1)
    }
}

/// `sns/userinfo`.
#[derive(Debug, Clone, Deserialize)]
pub struct SnsUserInfo {
    /// The OpenID.
    pub openid: String,
    /// Nickname.
    #[serde(default)]
    pub nickname: Option<String>,
    /// Sex (a number or a string).
    #[serde(default, deserialize_with = "int_or_string")]
    pub sex: Option<i64>,
    /// Province.
    #[serde(default)]
    pub province: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// Country.
    #[serde(default)]
    pub country: Option<String>,
    /// Avatar URL.
    #[serde(default)]
    pub headimgurl: Option<String>,
    /// Privileges.
    #[serde(default)]
    pub privilege: Vec<String>,
    /// The UnionID.
    #[serde(default)]
    pub unionid: Option<String>,
}

/// `sns/jscode2session`: a mini program sign-in.
#[derive(Clone, Deserialize)]
pub struct JsCodeSession {
    /// The user's OpenID in the mini program.
    pub openid: String,
    /// The session key (a secret: never store in plain text, never return).
    pub session_key: String,
    /// The UnionID (bound mini programs).
    #[serde(default)]
    pub unionid: Option<String>,
}

/// Writes a type's `Debug` with its secret fields redacted.
macro_rules! redacted_debug {
    ($ty:ty, [$($shown:ident),*], [$($hidden:ident),*]) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($shown), &self.$shown))*
                    $(.field(stringify!($hidden), &"<redacted>"))*
                    .finish()
            }
        }
    };
}

redacted_debug!(TokenResponse, [expires_in], [access_token]);
redacted_debug!(
    StableTokenRequest<'_>,
    [grant_type, appid, force_refresh],
    [secret]
);
redacted_debug!(
    SnsAccessToken,
    [expires_in, openid, scope, unionid, is_snapshotuser],
    [access_token, refresh_token]
);
redacted_debug!(JsCodeSession, [openid, unionid], [session_key]);
