//! `user/info/batchget` over any number of openids.
//!
//! WeChat takes at most 100 openids a call and fails the whole call with
//! 40003 when one of them is invalid, so a list is cut into chunks and a
//! refused chunk is halved until the invalid openids are isolated; the
//! profiles that come back are decoded one by one, so one malformed entry
//! costs only itself.

use serde_json::{Value, json};

use super::{WechatClient, api};
use crate::wechat::error::WechatError;
use crate::wechat::token::AppCredentials;
use crate::wechat::types::UserInfo;

/// Most openids `user/info/batchget` takes in one call.
pub const BATCHGET_MAX: usize = 100;

/// The result of a `batchget` over any number of openids.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The users WeChat described.
    pub users: Vec<UserInfo>,
    /// OpenIDs WeChat refused as invalid (40003), isolated by splitting the batch.
    pub invalid: Vec<String>,
    /// Entries that could not be decoded: the openid when readable, and why.
    pub malformed: Vec<(Option<String>, String)>,
}

impl WechatClient {
    /// `cgi-bin/user/info/batchget` over any number of openids: chunks of at
    /// most 100; a chunk that WeChat fails with 40003 is split in halves until
    /// the invalid openids are isolated, so the others are still fetched.
    pub async fn batchget(
        &self,
        app: &AppCredentials,
        openids: &[String],
    ) -> Result<BatchOutcome, WechatError> {
        let mut outcome = BatchOutcome::default();
        for chunk in openids.chunks(BATCHGET_MAX) {
            self.batch_isolating(app, chunk, &mut outcome).await?;
        }
        Ok(outcome)
    }

    async fn batch_isolating(
        &self,
        app: &AppCredentials,
        openids: &[String],
        outcome: &mut BatchOutcome,
    ) -> Result<(), WechatError> {
        // Depth-first over halves; a stack instead of recursion keeps the future small.
        let mut pending = vec![openids];
        while let Some(ids) = pending.pop() {
            match self.batchget_once(app, ids).await {
                Ok(value) => collect_users(value, outcome),
                Err(WechatError::Api { errcode: 40003, .. }) if ids.len() > 1 => {
                    let (left, right) = ids.split_at(ids.len() / 2);
                    pending.push(right);
                    pending.push(left);
                }
                Err(WechatError::Api { errcode: 40003, .. }) => {
                    outcome.invalid.extend(ids.iter().cloned());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
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
