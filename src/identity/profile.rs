//! A person's best-known profile across their accounts.
//!
//! Values the user gave themselves (sign-in, mini programs) beat an
//! operator's import, which beats `user/info` (blanked by WeChat since 2021);
//! among equals, the most recently updated account wins. Empty values never
//! count.

use chrono::{DateTime, Utc};
use entity::account;

use super::types::Profile;
use crate::domain::ProfileSource;

/// The best value of each profile field across one person's `accounts`
/// (sex as its WeChat code, 1 or 2).
pub fn best_profile(accounts: &[account::Model]) -> Profile {
    let text = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    Profile {
        nickname: best(accounts, |a| (text(&a.nickname), &a.nickname_source)),
        avatar_url: best(accounts, |a| (text(&a.avatar_url), &a.avatar_url_source)),
        sex: best(accounts, |a| {
            (a.sex.filter(|s| (1..=2).contains(s)), &a.sex_source)
        }),
        language: best(accounts, |a| (text(&a.language), &a.language_source)),
        city: best(accounts, |a| (text(&a.city), &a.city_source)),
        province: best(accounts, |a| (text(&a.province), &a.province_source)),
        country: best(accounts, |a| (text(&a.country), &a.country_source)),
    }
}

/// The best value of one field: from the most trusted source, then the most
/// recently updated account.
fn best<T>(
    accounts: &[account::Model],
    field: impl Fn(&account::Model) -> (Option<T>, &Option<String>),
) -> Option<T> {
    accounts
        .iter()
        .filter_map(|a| {
            let (value, source) = field(a);
            let rank = source
                .as_deref()
                .and_then(ProfileSource::from_stored)
                .map_or(0, ProfileSource::rank);
            value.map(|v| ((rank, a.updated_at), v))
        })
        .max_by_key(|(key, _)| *key)
        .map(|(_, v)| v)
}

/// When the least recently fetched of `accounts` was fetched from WeChat;
/// `None` when any was never fetched, or there are none.
pub fn oldest_refreshed_at(accounts: &[account::Model]) -> Option<DateTime<Utc>> {
    let times: Option<Vec<DateTime<Utc>>> = accounts.iter().map(|a| a.refreshed_at).collect();
    times.and_then(|t| t.into_iter().min())
}
