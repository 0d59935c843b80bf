//! Sending: how one WeChat call is made, retried and authenticated.
//!
//! Every request goes through here so that success is decided by `errcode`
//! in one place, transient failures are retried with bounded, jittered
//! backoff, and a rejected token is replaced and retried exactly once,
//! tripping the quota breakers on the way out.

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::WechatClient;
use crate::wechat::error::{ErrorClass, WechatError};
use crate::wechat::lenient;
use crate::wechat::token::AppCredentials;

/// How transient failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (the first included).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, with full jitter.
    pub base_delay: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_total: Duration::from_secs(3),
        }
    }
}

impl WechatClient {
    /// Sends one request and decodes the body, deciding success by `errcode`.
    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, WechatError> {
        let transport = |e| WechatError::transport(&self.config.base_url, e);
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(WechatError::Http(status.as_u16()));
        }
        let body = response.bytes().await.map_err(transport)?;
        let value = lenient::parse(&body).map_err(|e| WechatError::Decode(e.to_string()))?;
        match value.get("errcode").and_then(Value::as_i64) {
            Some(0) | None => Ok(value),
            Some(errcode) => Err(WechatError::Api {
                errcode,
                errmsg: value
                    .get("errmsg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }),
        }
    }

    /// Sends with retries of transient failures (bounded, jittered).
    pub(super) async fn send_retrying(
        &self,
        api: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, WechatError> {
        let policy = self.config.retry;
        let started = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            let timer = tokio::time::Instant::now();
            let result = self.send(build()).await;
            let outcome = result
                .as_ref()
                .map_or_else(|e| e.class().as_str(), |_| "ok");
            metrics::histogram!(
                "union360_wechat_request_duration_seconds",
                "api" => api.to_owned(),
                "outcome" => outcome,
            )
            .record(timer.elapsed().as_secs_f64());
            tracing::debug!(
                wechat.api = api,
                elapsed_ms = timer.elapsed().as_millis() as u64,
                outcome,
                "WeChat call"
            );
            match result {
                Err(e) if e.class() == ErrorClass::Retryable && attempt < policy.max_attempts => {
                    let ceiling = policy.base_delay * 2u32.pow(attempt - 1);
                    let delay = ceiling.mul_f64(rand::thread_rng().gen_range(0.0..=1.0));
                    if started.elapsed() + delay >= policy.max_total {
                        return Err(e);
                    }
                    tracing::info!(wechat.api = api, attempt, error = %e, "retrying WeChat call");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Calls a token-authenticated API: breaker, token, one retry on a rejected token.
    pub(super) async fn call(
        &self,
        app: &AppCredentials,
        api: &str,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Value, WechatError> {
        self.breakers.check(&app.appid, api)?;
        let mut token = self.access_token(app).await?;
        let mut retried_token = false;
        loop {
            let result = self.send_retrying(api, || build(token.secret())).await;
            match result {
                Err(e) if e.class() == ErrorClass::TokenInvalid && !retried_token => {
                    tracing::info!(
                        app.appid = %app.appid,
                        wechat.api = api,
                        wechat.errcode = e.errcode(),
                        "access token rejected; fetching a new one and retrying once"
                    );
                    self.tokens.expire(&app.appid, &token).await;
                    let fresh = self.access_token(app).await?;
                    if fresh.secret() == token.secret() {
                        // WeChat handed back the very token it just refused
                        // (stable_token does until it is force-refreshed):
                        // retrying would fail the same way.
                        return Err(e);
                    }
                    token = fresh;
                    retried_token = true;
                }
                Err(e) => {
                    if let Some(code @ (45009 | 45011)) = e.errcode() {
                        self.breakers.trip(&app.appid, api, code);
                    }
                    return Err(e);
                }
                Ok(value) => return Ok(value),
            }
        }
    }
}
