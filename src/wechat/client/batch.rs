//! `user/info/batchget` over any number of openids.
//!
//! WeChat takes at most 100 openids a call and fails the whole call with
//! 40003 when one of them is invalid, so a list is cut into chunks and a
//! refused chunk is halved to isolate the invalid openids ([`isolate`]),
//! within a fixed budget of calls per chunk: a chunk of made-up openids
//! costs at most `1 + ISOLATION_CALLS` calls, never one per openid. The
//! openids the budget did not reach are returned as not verified. The
//! profiles that come back are decoded one by one, so one malformed entry
//! costs only itself.

use std::future::Future;

use serde_json::{Value, json};

use super::{WechatClient, api};
use crate::wechat::error::WechatError;
use crate::wechat::token::AppCredentials;
use crate::wechat::types::UserInfo;

/// Most openids `user/info/batchget` takes in one call.
pub const BATCHGET_MAX: usize = 100;

/// Most calls spent isolating the invalid openids of one chunk, after its
/// first call failed with 40003. Twelve isolate one invalid openid among
/// 100 wherever it stands but in one place (eight would leave about three
/// valid ones unverified on average), and bound a chunk of made-up openids
/// to 13 calls.
pub const ISOLATION_CALLS: usize = 12;

/// The result of a `batchget` over any number of openids.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The users WeChat described.
    pub users: Vec<UserInfo>,
    /// OpenIDs WeChat refused as invalid (40003), isolated by splitting the batch.
    pub invalid: Vec<String>,
    /// OpenIDs in a batch WeChat refused (40003) that the isolation budget
    /// did not reach: each may be valid or not.
    pub unverified: Vec<String>,
    /// Entries that could not be decoded: the openid when readable, and why.
    pub malformed: Vec<(Option<String>, String)>,
}

impl WechatClient {
    /// `cgi-bin/user/info/batchget` over any number of openids: chunks of at
    /// most 100; the invalid openids of a chunk that WeChat fails with 40003
    /// are isolated within [`ISOLATION_CALLS`] more calls, so the others are
    /// still fetched.
    pub async fn batchget(
        &self,
        app: &AppCredentials,
        openids: &[String],
    ) -> Result<BatchOutcome, WechatError> {
        let mut outcome = BatchOutcome::default();
        for chunk in openids.chunks(BATCHGET_MAX) {
            let isolated =
                isolate(chunk, ISOLATION_CALLS, |ids| self.batchget_once(app, ids)).await?;
            for answer in isolated.answers {
                collect_users(answer, &mut outcome);
            }
            outcome
                .invalid
                .extend(isolated.invalid.into_iter().cloned());
            outcome
                .unverified
                .extend(isolated.unverified.into_iter().cloned());
        }
        Ok(outcome)
    }

    async fn batchget_once(
        &self,
        app: &AppCredentials,
        openids: &[String],
    ) -> Result<Value, WechatError> {
        if openids.is_empty() || openids.len() > BATCHGET_MAX {
            return Err(WechatError::InvalidInput(format!(
                "batchget takes 1 to {BATCHGET_MAX} openids, got {}",
                openids.len()
            )));
        }
        let body = json!({
            "user_list": openids.iter().map(|o| json!({ "openid": o, "lang": "zh_CN" })).collect::<Vec<_>>()
        });
        self.call(app, api::BATCHGET, |token| {
            self.http
                .post(self.url(api::BATCHGET))
                .query(&[("access_token", token)])
                .json(&body)
        })
        .await
    }
}

/// What [`isolate`] learned of one chunk.
#[derive(Debug, Default)]
struct Isolated<'a> {
    /// The answers of the calls that succeeded.
    answers: Vec<Value>,
    /// OpenIDs proven invalid: refused alone, or the rest of a refused set
    /// whose other part was accepted.
    invalid: Vec<&'a String>,
    /// OpenIDs in refused sets that the budget did not reach.
    unverified: Vec<&'a String>,
}

/// A set of openids still to look at, and what is known of it.
enum Pending<'a> {
    /// Not asked about yet (the other half of a refused set whose first half
    /// was refused too): it may be accepted whole.
    Unknown(&'a [String]),
    /// Holds an invalid openid: WeChat refused it, or it is what is left of
    /// a refused set once its first half was accepted.
    Refused(&'a [String]),
}

impl Pending<'_> {
    /// How many openids the next call about this set asks for: a refused set
    /// is halved first.
    fn next_call(&self) -> usize {
        match self {
            Self::Unknown(ids) => ids.len(),
            Self::Refused(ids) => ids.len() / 2,
        }
    }
}

/// Calls `call` on `openids`; if WeChat refuses it with 40003, isolates the
/// invalid openids with at most `budget` more calls.
///
/// A refused set is halved and its first half asked about: if accepted, the
/// second half is known to hold the invalid openid without a call; if
/// refused, the second half is asked about later. The next call is always
/// the one asking for the most openids, so the budget fetches as many
/// profiles as it can; what it does not reach is returned as unverified.
async fn isolate<'a, F, Fut>(
    openids: &'a [String],
    budget: usize,
    mut call: F,
) -> Result<Isolated<'a>, WechatError>
where
    F: FnMut(&'a [String]) -> Fut,
    Fut: Future<Output = Result<Value, WechatError>>,
{
    let mut isolated = Isolated::default();
    let mut pending = vec![Pending::Unknown(openids)];
    let mut calls = 0;
    // The first call is the chunk's own; the budget counts the ones after it.
    while let Some(next) = (0..pending.len()).max_by_key(|&i| pending[i].next_call()) {
        let item = pending.swap_remove(next);
        if let Pending::Refused([only]) = item {
            isolated.invalid.push(only);
            continue;
        }
        if calls > budget {
            let (Pending::Unknown(ids) | Pending::Refused(ids)) = item;
            isolated.unverified.extend(ids);
            continue;
        }
        calls += 1;
        let (asked, rest) = match item {
            Pending::Unknown(ids) => (ids, None),
            Pending::Refused(ids) => {
                let (first, second) = ids.split_at(ids.len() / 2);
                (first, Some(second))
            }
        };
        match call(asked).await {
            Ok(answer) => {
                isolated.answers.push(answer);
                pending.extend(rest.map(Pending::Refused));
            }
            Err(WechatError::Api { errcode: 40003, .. }) => {
                pending.push(Pending::Refused(asked));
                pending.extend(rest.map(Pending::Unknown));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(isolated)
}

/// Decodes each profile of a batch on its own: one malformed entry is reported, not fatal.
fn collect_users(value: Value, outcome: &mut BatchOutcome) {
    let Some(Value::Array(items)) = value.get("user_info_list").cloned() else {
        outcome
            .malformed
            .push((None, "no user_info_list in the response".to_owned()));
        return;
    };
    for item in items {
        let openid = item
            .get("openid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match serde_json::from_value::<UserInfo>(item) {
            Ok(user) => outcome.users.push(user),
            Err(e) => outcome.malformed.push((openid, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeSet;

    use super::*;

    /// Isolates a chunk of `n` openids of which `bad` are invalid; returns
    /// the calls made and what was learned, as indexes.
    async fn run(
        n: usize,
        bad: &[usize],
        budget: usize,
    ) -> (usize, Vec<usize>, Vec<usize>, Vec<usize>) {
        let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let bad: BTreeSet<String> = bad.iter().map(|i| i.to_string()).collect();
        let calls = Cell::new(0);
        let isolated = isolate(&ids, budget, |asked: &[String]| {
            calls.set(calls.get() + 1);
            let refused = asked.iter().any(|id| bad.contains(id));
            let answer = json!(asked);
            async move {
                if refused {
                    Err(WechatError::Api {
                        errcode: 40003,
                        errmsg: "invalid openid".to_owned(),
                    })
                } else {
                    Ok(answer)
                }
            }
        })
        .await
        .unwrap();
        let index = |id: &String| id.parse::<usize>().unwrap();
        let mut fetched: Vec<usize> = isolated
            .answers
            .iter()
            .flat_map(|a| {
                a.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().parse().unwrap())
            })
            .collect();
        fetched.sort_unstable();
        let mut invalid: Vec<usize> = isolated.invalid.into_iter().map(index).collect();
        invalid.sort_unstable();
        let mut unverified: Vec<usize> = isolated.unverified.into_iter().map(index).collect();
        unverified.sort_unstable();
        (calls.get(), fetched, invalid, unverified)
    }

    #[tokio::test]
    async fn a_chunk_of_made_up_openids_costs_at_most_the_budget() {
        let all: Vec<usize> = (0..100).collect();
        let (calls, fetched, invalid, unverified) = run(100, &all, ISOLATION_CALLS).await;
        assert_eq!(calls, 1 + ISOLATION_CALLS);
        assert!(fetched.is_empty());
        let mut seen = [invalid, unverified].concat();
        seen.sort_unstable();
        assert_eq!(seen, all, "every openid is invalid or unverified, once");
    }

    #[tokio::test]
    async fn one_invalid_openid_is_isolated_within_the_budget_almost_anywhere() {
        let mut isolated = 0;
        for position in 0..100 {
            let (calls, fetched, invalid, unverified) =
                run(100, &[position], ISOLATION_CALLS).await;
            assert!(calls <= 1 + ISOLATION_CALLS, "{position}: {calls} calls");
            assert!(!fetched.contains(&position));
            assert!(unverified.len() <= 3, "{position}: {unverified:?}");
            assert_eq!(fetched.len() + invalid.len() + unverified.len(), 100);
            if invalid == [position] && fetched.len() == 99 {
                isolated += 1;
            }
        }
        assert!(isolated >= 99, "isolated at {isolated} of 100 positions");
    }

    #[tokio::test]
    async fn a_valid_chunk_costs_one_call_and_a_spent_budget_only_marks() {
        assert_eq!(
            run(100, &[], ISOLATION_CALLS).await,
            (1, (0..100).collect(), vec![], vec![])
        );
        // No budget: the refused chunk is left unverified, never split.
        assert_eq!(
            run(10, &[3], 0).await,
            (1, vec![], vec![], (0..10).collect())
        );
        // A single openid refused is invalid, whatever the budget.
        assert_eq!(run(1, &[0], 0).await, (1, vec![], vec![0], vec![]));
    }
}
