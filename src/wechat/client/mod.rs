//! The typed, resilient WeChat API client.
//!
//! One `reqwest::Client` with timeouts serves every app. Each data call
//! takes the app's token from the [`TokenManager`], honours the quota
//! [`Breakers`], retries transient failures with jittered backoff within a
//! bounded number of attempts and total time, and retries once with a
//! fresh token when WeChat rejects the token. Success is decided by
//! `errcode`, never by HTTP status alone.
//!
//! - `retry`: sending, retries with backoff, the one retry on a rejected token;
//! - `batch`: `batchget` over any number of openids, isolating 40003;
//! - `sns`: the sign-in code exchanges.

mod batch;
mod retry;
mod sns;

use std::time::Duration;

use futures::Stream;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::breaker::Breakers;
use super::error::WechatError;
use super::token::{
    AccessToken, AppCredentials, FetchFuture, TokenEndpoint, TokenManager, TokenStore,
};
use super::types::{FollowersPage, Quota, StableTokenRequest, TokenResponse, UserInfo};
use crate::clock::Clock;
use secrecy::ExposeSecret;

pub use batch::{BATCHGET_MAX, BatchOutcome, ISOLATION_CALLS};
pub use retry::RetryPolicy;

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
            .map_err(|e| WechatError::transport(&config.base_url, e))?;
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
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, WechatError> {
    serde_json::from_value(value).map_err(|e| WechatError::Decode(e.to_string()))
}
