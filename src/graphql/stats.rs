//! Audience statistics in the API (`stats` scope): distinct followers of
//! the company's official accounts, their overlaps, and their history.

use async_graphql::{Context, Object, SimpleObject};

use super::context::ContextExt;
use super::error::{ApiError, ApiResult, ResultExt};
use super::limits::cost;
use super::scalars::Date;
use crate::domain::AppId;
use crate::stats::{self, StatsError};

impl From<StatsError> for ApiError {
    fn from(e: StatsError) -> Self {
        match e {
            StatsError::NotRegistered(_) => Self::NotFound(e.to_string()),
            StatsError::NotOfficialAccount(_)
            | StatsError::NotCounted(_)
            | StatsError::Repeated(_)
            | StatsError::BadRange(_) => Self::BadUserInput(e.to_string()),
            StatsError::Db(e) => Self::internal(e),
        }
    }
}

/// The audience of a set of official accounts, as the API shows it.
pub struct Audience(stats::Audience);

/// Bounds on a count that cannot be known exactly.
#[derive(SimpleObject)]
pub struct CountRange {
    /// The count is at least this.
    at_least: u64,
    /// The count is at most this.
    at_most: u64,
}

/// One official account's followers.
#[derive(SimpleObject)]
pub struct AudienceApp {
    /// The WeChat appid (`wx…`).
    appid: String,
    /// The app's display name.
    name: String,
    /// All its followers.
    followers: u64,
    /// Followers linked to a person (UnionID known).
    linked_followers: u64,
    /// Followers whose UnionID is not known.
    unlinked_followers: u64,
}

/// Two apps and the linked people following both.
#[derive(SimpleObject)]
pub struct AudiencePair {
    /// The two appids, in the order of `Audience.apps`.
    appids: Vec<String>,
    /// Linked people following both (whatever else they follow).
    people: u64,
}

/// How many linked people follow exactly `apps` of the apps counted.
#[derive(SimpleObject)]
pub struct FollowCount {
    /// How many of the apps (1 to the number counted).
    apps: u64,
    /// Linked people following exactly that many.
    people: u64,
}

/// A set of apps followed together: the data of one bar of an UpSet chart,
/// or one region of a Venn diagram.
#[derive(SimpleObject)]
pub struct AudienceCombination {
    /// The apps, in the order of `Audience.apps`.
    appids: Vec<String>,
    /// Linked people following exactly these apps among those counted.
    people: u64,
}

/// Who follows a set of the company's official accounts, counted once per
/// person by UnionID. Followers whose UnionID is not known (the app is not
/// bound to the open platform, or their profile was not fetched yet) cannot
/// be matched across apps; they are counted apart and never guessed.
#[Object]
impl Audience {
    /// The day the numbers are as of (at its end), or null for now.
    async fn day(&self) -> Option<Date> {
        self.0.day.map(Date)
    }

    /// The official accounts counted, in registration order, with their followers.
    async fn apps(&self) -> Vec<AudienceApp> {
        self.0
            .apps
            .iter()
            .map(|a| AudienceApp {
                appid: a.appid.clone(),
                name: a.name.clone(),
                followers: a.followers(),
                linked_followers: a.linked,
                unlinked_followers: a.unlinked,
            })
            .collect()
    }

    /// Distinct people following at least one of the apps. Exact when every
    /// follower is linked; otherwise at least `linkedPeople` and at most
    /// that plus `unlinkedFollowers` (each unlinked follow may or may not be
    /// someone already counted).
    async fn distinct_people(&self) -> CountRange {
        let (at_least, at_most) = self.0.distinct_people();
        CountRange { at_least, at_most }
    }

    /// People with a known UnionID following at least one of the apps, each counted once.
    async fn linked_people(&self) -> u64 {
        self.0.linked_people
    }

    /// Follows whose UnionID is not known, summed over the apps.
    async fn unlinked_followers(&self) -> u64 {
        self.0.unlinked_followers
    }

    /// Every pair of the apps, with the linked people following both.
    async fn pairs(&self) -> Vec<AudiencePair> {
        let appid = |i: usize| self.0.apps[i].appid.clone();
        self.0
            .pairs
            .iter()
            .map(|&(i, j, people)| AudiencePair {
                appids: vec![appid(i), appid(j)],
                people,
            })
            .collect()
    }

    /// For each k from 1 to the number of apps, the linked people following exactly k of them.
    async fn follow_counts(&self) -> Vec<FollowCount> {
        (1..)
            .zip(&self.0.follow_counts)
            .map(|(apps, &people)| FollowCount { apps, people })
            .collect()
    }

    /// Every set of the apps that linked people follow together (exactly
    /// that set, among the apps counted), largest first. Their people add
    /// up to `linkedPeople`.
    async fn combinations(&self) -> Vec<AudienceCombination> {
        self.0
            .combinations
            .iter()
            .map(|(members, people)| AudienceCombination {
                appids: members
                    .iter()
                    .map(|&i| self.0.apps[i].appid.clone())
                    .collect(),
                people: *people,
            })
            .collect()
    }
}

/// Parses the appids asked about.
fn parse_appids(list: Option<Vec<String>>) -> ApiResult<Option<Vec<AppId>>> {
    list.map(|l| {
        l.into_iter()
            .map(AppId::parse)
            .collect::<Result<Vec<_>, _>>()
    })
    .transpose()
    .api()
}

/// Queries about the audience.
#[derive(Default)]
pub struct StatsQuery;

#[Object]
impl StatsQuery {
    /// Who follows the company's official accounts: now, or at the end of `day`.
    async fn audience(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The official accounts to count (appids); all of them when omitted.")]
        appids: Option<Vec<String>>,
        #[graphql(
            desc = "Count as of the end of this day (China Standard Time); now when omitted."
        )]
        day: Option<Date>,
    ) -> ApiResult<Audience> {
        let appids = parse_appids(appids)?;
        let state = ctx.state()?;
        let audience = stats::audience(state.db(), appids.as_deref(), day.map(|d| d.0))
            .await
            .api()?;
        ctx.read_rows(audience.combinations.len() + audience.apps.len())?;
        Ok(Audience(audience))
    }

    /// The audience at the end of each day from `from` to `to` (inclusive,
    /// at most 366 days), oldest first. Days before union360 first counted
    /// a follower are left out.
    #[graphql(complexity = "cost::rows(days(from, to), child_complexity)")]
    async fn audience_history(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The official accounts to count (appids); all of them when omitted.")]
        appids: Option<Vec<String>>,
        #[graphql(desc = "The first day (China Standard Time).")] from: Date,
        #[graphql(desc = "The last day (China Standard Time).")] to: Date,
    ) -> ApiResult<Vec<Audience>> {
        let appids = parse_appids(appids)?;
        let state = ctx.state()?;
        let series = stats::audience_history(state.db(), appids.as_deref(), from.0, to.0)
            .await
            .api()?;
        ctx.read_rows(
            series
                .iter()
                .map(|a| a.combinations.len() + a.apps.len())
                .sum(),
        )?;
        Ok(series.into_iter().map(Audience).collect())
    }
}

/// Days from `from` to `to`, inclusive, for the cost of a history (at
/// least one, at most the longest history).
fn days(from: Date, to: Date) -> usize {
    let span = from
        .0
        .days_until(to.0)
        .clamp(0, stats::MAX_HISTORY_DAYS - 1);
    usize::try_from(span + 1).unwrap_or(1)
}
