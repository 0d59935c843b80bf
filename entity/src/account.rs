//! An account: one user as one app sees them, `(app, openid)`.

use sea_orm::entity::prelude::*;

/// One account with its cached profile, follow status and freshness.
///
/// Every profile field has a `*_source` column naming where its value came
/// from (`IMPORT`, `USER_INFO`, `SNS_USERINFO`, `MINI_PROGRAM`, `CALLBACK`),
/// so that an empty value from one source never blanks a value learned from
/// another.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account")]
pub struct Model {
    /// Surrogate key; also the keyset-pagination order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The app that issued the openid.
    pub app_id: i64,
    /// OpenID, unique per app.
    pub openid: String,
    /// The linked person, once a UnionID is known; a person has at most one
    /// account per app (unique with `app_id`).
    pub person_id: Option<i64>,
    /// UnionID as first reported for this account; never changes once set.
    pub unionid: Option<String>,
    /// A UnionID reported but refused (an anomaly, recorded not applied):
    /// one different from `unionid`, or, on an unlinked account, that of a
    /// person who has another account in this app.
    pub unionid_conflict: Option<String>,
    /// When the conflicting UnionID was last reported.
    pub unionid_conflict_at: Option<DateTimeUtc>,
    /// Whether the openid belongs to a snapshot-page virtual user
    /// (`is_snapshotuser`): such an account never creates or joins a person.
    pub snapshot_user: bool,
    /// Whether the user follows the (official account) app; `None` when unknown.
    pub subscribed: Option<bool>,
    /// Last follow time.
    pub subscribe_time: Option<DateTimeUtc>,
    /// When the account was last seen to stop following.
    pub unfollowed_at: Option<DateTimeUtc>,
    /// The last follower sync job that listed the account as a follower.
    pub listed_in: Option<i64>,
    /// How the user came to follow (`ADD_SCENE_…`).
    pub subscribe_scene: Option<String>,
    /// Numeric QR scene of the follow.
    pub qr_scene: Option<i64>,
    /// String QR scene of the follow.
    pub qr_scene_str: Option<String>,
    /// Operator remark.
    pub remark: Option<String>,
    /// Tag ids as a JSON array.
    pub tag_ids: Option<Json>,
    /// Nickname.
    pub nickname: Option<String>,
    /// Source of `nickname`.
    pub nickname_source: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// Source of `avatar_url`.
    pub avatar_url_source: Option<String>,
    /// WeChat sex code: 1 male, 2 female (0 is stored as `None`).
    pub sex: Option<i32>,
    /// Source of `sex`.
    pub sex_source: Option<String>,
    /// Language.
    pub language: Option<String>,
    /// Source of `language`.
    pub language_source: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Source of `city`.
    pub city_source: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// Source of `province`.
    pub province_source: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Source of `country`.
    pub country_source: Option<String>,
    /// When the profile was last fetched from WeChat; `None` when never.
    pub refreshed_at: Option<DateTimeUtc>,
    /// WeChat `errcode` of the last failed refresh.
    pub refresh_error_code: Option<i32>,
    /// Message of the last failed refresh.
    pub refresh_error_message: Option<String>,
    /// When the last refresh failed.
    pub refresh_error_at: Option<DateTimeUtc>,
    /// When the account was first stored.
    pub created_at: DateTimeUtc,
    /// When the account last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of an account.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The app that issued the openid.
    #[sea_orm(
        belongs_to = "super::app::Entity",
        from = "Column::AppId",
        to = "super::app::Column::Id"
    )]
    App,
    /// The person the account is linked to.
    #[sea_orm(
        belongs_to = "super::person::Entity",
        from = "Column::PersonId",
        to = "super::person::Column::Id"
    )]
    Person,
    /// The account's change history.
    #[sea_orm(has_many = "super::account_history::Entity")]
    AccountHistory,
}

impl Related<super::app::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::App.def()
    }
}

impl Related<super::person::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Person.def()
    }
}

impl Related<super::account_history::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AccountHistory.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// An account with its key and times and nothing else known: neither
    /// linked, nor following, nor any profile value.
    pub fn blank(id: i64, app_id: i64, openid: String, at: DateTimeUtc) -> Self {
        Self {
            id,
            app_id,
            openid,
            person_id: None,
            unionid: None,
            unionid_conflict: None,
            unionid_conflict_at: None,
            snapshot_user: false,
            subscribed: None,
            subscribe_time: None,
            unfollowed_at: None,
            listed_in: None,
            subscribe_scene: None,
            qr_scene: None,
            qr_scene_str: None,
            remark: None,
            tag_ids: None,
            nickname: None,
            nickname_source: None,
            avatar_url: None,
            avatar_url_source: None,
            sex: None,
            sex_source: None,
            language: None,
            language_source: None,
            city: None,
            city_source: None,
            province: None,
            province_source: None,
            country: None,
            country_source: None,
            refreshed_at: None,
            refresh_error_code: None,
            refresh_error_message: None,
            refresh_error_at: None,
            created_at: at,
            updated_at: at,
        }
    }
}
