//! The identity service's vocabulary: what a source reports about an
//! account, what an upsert did, and why a call is refused.

use chrono::{DateTime, Utc};
use entity::account;
use sea_orm::DbErr;

use crate::domain::{AppId, OpenId, UnionId};

/// Most accounts one call may upsert.
pub const MAX_UPSERT_BATCH: usize = 1000;

/// Profile values as one source reports them; `None` means "not reported".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Nickname.
    pub nickname: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// WeChat sex code (1 male, 2 female, 0 unknown, which counts as empty).
    pub sex: Option<i32>,
    /// Language.
    pub language: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// Country.
    pub country: Option<String>,
}

/// One account as a source reports it.
#[derive(Debug, Clone)]
pub struct AccountUpsert {
    /// The app that issued the openid.
    pub appid: AppId,
    /// The openid.
    pub openid: OpenId,
    /// The UnionID, when the source knows it.
    pub unionid: Option<UnionId>,
    /// Whether the openid is a snapshot-page virtual user's (`is_snapshotuser`):
    /// the account is stored, marked, and never creates or joins a person.
    pub snapshot_user: bool,
    /// Profile values.
    pub profile: Profile,
    /// Follow status and what comes with it, as far as the source knows.
    pub follow: Follow,
    /// Whether this row is a fetch from WeChat: sets `refreshed_at` and clears
    /// the last refresh error.
    pub refreshed: bool,
}

/// Follow status of an official-account user; `None` means "not reported".
/// These values come from WeChat (or an operator's import) and replace what
/// is stored whenever reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Follow {
    /// Whether the user follows the official account.
    pub subscribed: Option<bool>,
    /// Last follow time.
    pub subscribe_time: Option<DateTime<Utc>>,
    /// When the user stopped following, when the source knows it (a push's
    /// `CreateTime`); otherwise an unfollow is dated with `as_of`, else
    /// with the write's time.
    pub left_at: Option<DateTime<Utc>>,
    /// When the reported status was true, when the source knows it (the
    /// time WeChat was asked). A status as of a time no later than (to the
    /// second) a stored change the other way is out of date and not
    /// applied: a fetch that was answered before a push arrived must not
    /// undo it.
    pub as_of: Option<DateTime<Utc>>,
    /// How the user followed (`ADD_SCENE_…`).
    pub subscribe_scene: Option<String>,
    /// Numeric QR scene.
    pub qr_scene: Option<i64>,
    /// String QR scene.
    pub qr_scene_str: Option<String>,
    /// Operator remark (an empty string clears it).
    pub remark: Option<String>,
    /// Tag ids.
    pub tag_ids: Option<Vec<i64>>,
    /// The follower sync job whose listing of the app's followers included
    /// this account (kept on the account so that the job can tell, at its
    /// end, who was not listed; not history).
    pub listed_in: Option<i64>,
}

/// What an upsert did to one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The account was new.
    Created,
    /// The account existed and was linked to a person now.
    Linked,
    /// The account existed and some value changed.
    Updated,
    /// Nothing changed.
    Unchanged,
    /// The row's UnionID was refused: it differs from the account's, which
    /// never changes. The conflict is recorded on the account; the rest of the
    /// row (profile, follow status, freshness) applied as usual.
    RefusedUnionidConflict,
    /// The row's UnionID was refused: its person already has another account
    /// in this app, and a person has one account per app. The UnionID is
    /// recorded on the account as a conflict and the account stays unlinked;
    /// the rest of the row applied as usual (the account is created if new).
    RefusedSecondAccountInApp,
}

/// The result for one input row.
#[derive(Debug, Clone)]
pub struct UpsertResult {
    /// Position of the row in the input.
    pub index: usize,
    /// What happened.
    pub outcome: Outcome,
    /// Whether this row's UnionID created a new person.
    pub person_created: bool,
    /// What the call changed that others may watch for.
    pub changed: Changed,
    /// The account as stored after the call.
    pub account: account::Model,
}

/// What an upsert changed in one account, as others watch for it (the
/// live account events).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// The account follows now and did not, or followed again (a newer
    /// follow time).
    pub followed: bool,
    /// The account stopped following.
    pub unfollowed: bool,
    /// The account was linked to its person by this call.
    pub linked: bool,
    /// A profile value (nickname, avatar, sex, language, places, remark)
    /// changed.
    pub profile: bool,
}

impl Changed {
    /// Whether anything watched for changed.
    pub fn any(self) -> bool {
        self.followed || self.unfollowed || self.linked || self.profile
    }
}

/// Why a call was refused as a whole (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// More rows than [`MAX_UPSERT_BATCH`].
    #[error("at most {MAX_UPSERT_BATCH} accounts per call, got {0}")]
    TooMany(usize),
    /// Rows name apps that are not registered.
    #[error("{}", not_registered(.0))]
    UnknownApps(Vec<String>),
    /// The same account appears twice in one call.
    #[error("account {appid}/{openid} appears more than once (rows {first} and {second})")]
    DuplicateRow {
        /// The appid.
        appid: String,
        /// The openid.
        openid: String,
        /// First row.
        first: usize,
        /// Second row.
        second: usize,
    },
    /// A profile value is unacceptable.
    #[error("row {index}: {message}")]
    InvalidRow {
        /// The row.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl IdentityError {
    /// Whether the call failed only because a concurrent call got to a
    /// unique key (or a deadlock) first: written again, it sees what the
    /// other did.
    pub fn lost_a_race(&self) -> bool {
        matches!(self, Self::Db(e) if super::upsert::lost_a_race(e))
    }
}

/// "app X is not registered", or "apps X, Y are not registered": the words
/// every refusal of an unregistered app uses.
pub(crate) fn not_registered(appids: &[String]) -> String {
    match appids {
        [one] => format!("app {one} is not registered"),
        many => format!("apps {} are not registered", many.join(", ")),
    }
}
