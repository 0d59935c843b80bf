//! The typed, resilient WeChat API client.
//!
//! One `reqwest::Client` with timeouts serves every app. Each data call
//! takes the app's token from the [`TokenManager`], honours the quota
//! [`Breakers`], retries transient failures with jittered backoff within a
//! bounded number of attempts and total time, and retries once with a
//! fresh token when WeChat rejects the token. Success is decided by
//! `errcode`, never by HTTP status alone.

use std::time::Duration;

use futures::Stream;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::breaker::Breakers;
use super::error::{ErrorClass, WechatError};
use super::lenient;
use super::token::{
    AccessToken, AppCredentials, FetchFuture, TokenEndpoint, TokenManager, TokenStore,
};
use super::types::{
    FollowersPage, JsCodeSession, Quota, SnsAccessToken, SnsUserInfo, StableTokenRequest,
    TokenResponse, UserInfo,
};
use crate::clock::Clock;
use secrecy::ExposeSecret;

/// Most openids `user/info/batchget` takes in one call.
pub const BATCHGET_MAX: usize = 100;

/// Paths of the WeChat APIs, as used for breakers, metrics and logs.
pub mod api {
    /// `GET /cgi-bin/token`.
    pub const TOKEN: &str = "/cgi-bin/token";
    /// `POST /cgi-bin/stable_token`.
    pub const STABLE_TOKEN: &str = "/cgi-bin/stable_token";
    /// `GET /cgi-bin/user/info`.
    pub const USER_INFO: &str = "/cgi-bin/user/info";
    /// `POST /cgi-bin/user/info/batchget`.
    pub const BATCHGET: &str = "/cgi-bin/user/info/batchget";
    /// `GET /cgi-bin/user/get`.
    pub const USER_GET: &str = "/cgi-bin/user/get";
    /// `POST /cgi-bin/openapi/quota/get`.
    pub const QUOTA_GET: &str = "/cgi-bin/openapi/quota/get";
    /// `GET /sns/oauth2/access_token`.
    pub const SNS_ACCESS_TOKEN: &str = "/sns/oauth2/access_token";
    /// `GET /sns/userinfo`.
    pub const SNS_USERINFO: &str = "/sns/userinfo";
    /// `GET /sns/jscode2session`.
    pub const JSCODE2SESSION: &str = "/sns/jscode2session";
}

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

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL (`https://api.weixin.qq.com` or a simulator).
    pub base_url: String,
    /// Which endpoint issues tokens.
    pub token_endpoint: TokenEndpoint,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// Defaults for `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token_endpoint: TokenEndpoint::Stable,
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

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

/// The WeChat API client.
#[derive(Debug)]
pub struct WechatClient {
    http: reqwest::Client,
    config: ClientConfig,
    tokens: TokenManager,
    breakers: Breakers,
}

impl WechatClient {
    /// A client sharing tokens through `store` (in memory only without one).
    pub fn new(
        config: ClientConfig,
        store: Option<TokenStore>,
        clock: Clock,
    ) -> Result<Self, WechatError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(config.request_timeout)
            .user_agent(concat!("union360/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WechatError::Transport)?;
        Ok(Self {
            http,
            config,
            tokens: TokenManager::new(store, clock.clone()),
            breakers: Breakers::new(clock),
        })
    }

    /// The token manager (for metrics and tests).
    pub fn tokens(&self) -> &TokenManager {
        &self.tokens
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url)
    }

    /// Sends one request and decodes the body, deciding success by `errcode`.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, WechatError> {
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(WechatError::Http(status.as_u16()));
        }
        let body = response.bytes().await?;
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
    async fn send_retrying(
        &self,
        api: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, WechatError> {
        let policy = self.config.retry;
        let started = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            let timer = std::time::Instant::now();
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

    fn fetch_token<'a>(&'a self, app: &'a AppCredentials) -> FetchFuture<'a> {
        Box::pin(async move {
            let path = match self.config.token_endpoint {
                TokenEndpoint::Stable => api::STABLE_TOKEN,
                TokenEndpoint::Classic => api::TOKEN,
            };
            self.breakers.check(&app.appid, path)?;
            metrics::counter!("union360_wechat_token_fetches_total", "api" => path).increment(1);
            let secret = app.secret.expose_secret();
            let value = match self.config.token_endpoint {
                TokenEndpoint::Stable => {
                    let body = StableTokenRequest {
                        grant_type: "client_credential",
                        appid: &app.appid,
                        secret,
                        force_refresh: false,
                    };
                    self.send_retrying(api::STABLE_TOKEN, || {
                        self.http.post(self.url(api::STABLE_TOKEN)).json(&body)
                    })
                    .await
                }
                TokenEndpoint::Classic => {
                    self.send_retrying(api::TOKEN, || {
                        self.http.get(self.url(api::TOKEN)).query(&[
                            ("grant_type", "client_credential"),
                            ("appid", app.appid.as_str()),
                            ("secret", secret),
                        ])
                    })
                    .await
                }
            };
            if let Err(e) = &value
                && let Some(code @ (45009 | 45011)) = e.errcode()
            {
                self.breakers.trip(&app.appid, path, code);
            }
            let token: TokenResponse = decode(value?)?;
            Ok((token.access_token, token.expires_in))
        })
    }

    /// A valid access token for `app` (shared, refreshed ahead of expiry).
    pub async fn access_token(&self, app: &AppCredentials) -> Result<AccessToken, WechatError> {
        self.tokens.get(&app.appid, || self.fetch_token(app)).await
    }

    /// Calls a token-authenticated API: breaker, token, one retry on a rejected token.
    async fn call(
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

    /// `cgi-bin/user/info` for one user.
    pub async fn user_info(
        &self,
        app: &AppCredentials,
        openid: &str,
    ) -> Result<UserInfo, WechatError> {
        let value = self
            .call(app, api::USER_INFO, |token| {
                self.http.get(self.url(api::USER_INFO)).query(&[
                    ("access_token", token),
                    ("openid", openid),
                    ("lang", "zh_CN"),
                ])
            })
            .await?;
        decode(value)
    }

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

    /// One page of `cgi-bin/user/get`, starting after `next_openid`.
    pub async fn followers_page(
        &self,
        app: &AppCredentials,
        next_openid: Option<&str>,
    ) -> Result<FollowersPage, WechatError> {
        let value = self
            .call(app, api::USER_GET, |token| {
                let mut query = vec![("access_token", token)];
                if let Some(next) = next_openid {
                    query.push(("next_openid", next));
                }
                self.http.get(self.url(api::USER_GET)).query(&query)
            })
            .await?;
        decode(value)
    }

    /// Every follower of an official account, page by page, ending on every
    /// documented end-of-list shape.
    pub fn followers<'a>(
        &'a self,
        app: &'a AppCredentials,
    ) -> impl Stream<Item = Result<FollowersPage, WechatError>> + 'a {
        // State: where the next page starts (`None` for the first), or the end.
        futures::stream::unfold(Some(None::<String>), move |state| async move {
            let next = state?;
            match self.followers_page(app, next.as_deref()).await {
                Err(e) => Some((Err(e), None)),
                Ok(page) => {
                    if page.openids().is_empty() && page.is_last() {
                        // The empty page after the last one carries nothing to yield.
                        return None;
                    }
                    let following = if page.is_last() {
                        None
                    } else if page.next_openid == next {
                        // A cursor that does not move would page forever.
                        return Some((
                            Err(WechatError::Decode(
                                "user/get returned the same next_openid twice".to_owned(),
                            )),
                            None,
                        ));
                    } else {
                        Some(page.next_openid.clone())
                    };
                    Some((Ok(page), following))
                }
            }
        })
    }

    /// `cgi-bin/openapi/quota/get` for one API path.
    pub async fn quota(&self, app: &AppCredentials, cgi_path: &str) -> Result<Quota, WechatError> {
        let body = json!({ "cgi_path": cgi_path });
        let value = self
            .call(app, api::QUOTA_GET, |token| {
                self.http
                    .post(self.url(api::QUOTA_GET))
                    .query(&[("access_token", token)])
                    .json(&body)
            })
            .await?;
        decode(value.get("quota").cloned().unwrap_or(Value::Null))
    }

    /// `sns/oauth2/access_token`: exchanges a web or mobile sign-in code.
    ///
    /// Not retried: a code is single-use, and a retry after a request that
    /// did reach WeChat would only earn 40163 "code been used".
    pub async fn sns_access_token(
        &self,
        app: &AppCredentials,
        code: &str,
    ) -> Result<SnsAccessToken, WechatError> {
        let secret = app.secret.expose_secret();
        let request = self.http.get(self.url(api::SNS_ACCESS_TOKEN)).query(&[
            ("appid", app.appid.as_str()),
            ("secret", secret),
            ("code", code),
            ("grant_type", "authorization_code"),
        ]);
        decode(self.send(request).await?)
    }

    /// `sns/userinfo` with a user's access token from [`Self::sns_access_token`].
    pub async fn sns_userinfo(
        &self,
        user_access_token: &str,
        openid: &str,
    ) -> Result<SnsUserInfo, WechatError> {
        let value = self
            .send_retrying(api::SNS_USERINFO, || {
                self.http.get(self.url(api::SNS_USERINFO)).query(&[
                    ("access_token", user_access_token),
                    ("openid", openid),
                    ("lang", "zh_CN"),
                ])
            })
            .await?;
        decode(value)
    }

    /// `sns/jscode2session`: exchanges a mini program sign-in code.
    ///
    /// Not retried (the code is single-use). Its 45011 is a per-user limit
    /// (100 codes a minute), so it opens no per-app breaker.
    pub async fn jscode2session(
        &self,
        app: &AppCredentials,
        js_code: &str,
    ) -> Result<JsCodeSession, WechatError> {
        let secret = app.secret.expose_secret();
        let request = self.http.get(self.url(api::JSCODE2SESSION)).query(&[
            ("appid", app.appid.as_str()),
            ("secret", secret),
            ("js_code", js_code),
            ("grant_type", "authorization_code"),
        ]);
        decode(self.send(request).await?)
    }
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, WechatError> {
    serde_json::from_value(value).map_err(|e| WechatError::Decode(e.to_string()))
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
