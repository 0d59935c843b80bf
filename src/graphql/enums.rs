//! The GraphQL faces of the domain's enums.
//!
//! The services' enums know nothing of GraphQL; each is mirrored here with
//! the descriptions partner teams read, and converts both ways
//! (`#[graphql(remote = …)]`).

use async_graphql::Enum;

/// The four kinds of app an open platform account can bind.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::domain::AppKind")]
pub enum AppKind {
    /// An official account (公众号): has followers, callback pushes and `user/info`.
    OfficialAccount,
    /// A mini program: users arrive through `jscode2session`.
    MiniProgram,
    /// A mobile app using WeChat sign-in.
    MobileApp,
    /// A website using WeChat QR sign-in.
    Website,
}

/// Where a profile value came from.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::domain::ProfileSource")]
pub enum ProfileSource {
    /// Imported by an operator or a backfill (`upsertAccounts`).
    Import,
    /// Fetched from `cgi-bin/user/info` (blanked nickname and avatar since 2021).
    UserInfo,
    /// Fetched from `sns/userinfo` after web OAuth sign-in.
    SnsUserinfo,
    /// Submitted by the user in a mini program.
    MiniProgram,
    /// Learned from a WeChat message push.
    Callback,
}

/// How a request wants stale profiles handled.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
#[graphql(remote = "crate::refresh::RefreshPolicy")]
pub enum RefreshPolicy {
    /// Serve what is stored; never call WeChat.
    CacheOnly,
    /// Refresh accounts whose profile is stale before answering, within the
    /// request's refresh budget; past it, or if WeChat fails, serve what is
    /// stored, marked stale, with the error.
    #[default]
    IfStale,
    /// Refresh every official-account account read, fresh or not (within the budget).
    Force,
}

/// A permission an API key can hold.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::keys::Scope")]
pub enum Scope {
    /// The identity graph without personal data: people, accounts, apps,
    /// follow status, freshness.
    Read,
    /// Personal profile fields: nickname, avatar, sex, region, language, remark.
    Pii,
    /// Audience statistics.
    Stats,
    /// Changes to the graph: refreshes (including `refresh: FORCE`), upserts.
    Write,
    /// Registering apps and changing their settings; API keys.
    Admin,
}

/// Sex as WeChat reports it. WeChat has stopped sending it in `user/info`
/// since 2021, so it is usually known only from sign-in or imports.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sex {
    /// WeChat code 1.
    Male,
    /// WeChat code 2.
    Female,
}

impl Sex {
    /// The sex of a stored WeChat code (1 or 2; anything else is unknown).
    pub fn from_code(code: Option<i32>) -> Option<Self> {
        match code {
            Some(1) => Some(Self::Male),
            Some(2) => Some(Self::Female),
            _ => None,
        }
    }

    /// The WeChat code of this sex.
    pub fn code(self) -> i32 {
        match self {
            Self::Male => 1,
            Self::Female => 2,
        }
    }
}
