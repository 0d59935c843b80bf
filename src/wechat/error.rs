//! The WeChat client's errors and the taxonomy callers act on.
//!
//! WeChat reports errors with HTTP 200 and `{"errcode", "errmsg"}`; the
//! message carries suffixes such as ` rid: …` and is kept only for people
//! and logs. Callers branch on [`ErrorClass`], decided by `errcode`.

use chrono::{DateTime, Utc};

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The access token is invalid, expired or superseded: drop it, fetch a new one, retry once.
    TokenInvalid,
    /// Transient (system busy, transport failure, 5xx, timeout): retry with backoff.
    Retryable,
    /// The app's daily quota for this API is used up (45009): stop until it resets.
    QuotaDaily,
    /// The per-minute frequency limit was hit (45011): back off at least 60 s.
    QuotaMinute,
    /// The request was wrong (bad openid, bad code, bad list size…): do not retry.
    BadInput,
    /// The app or user has not authorised this (48001, 50001, 50002).
    Unauthorized,
    /// Anything else.
    Unknown,
}

impl ErrorClass {
    /// Every class.
    pub const ALL: [Self; 7] = [
        Self::TokenInvalid,
        Self::Retryable,
        Self::QuotaDaily,
        Self::QuotaMinute,
        Self::BadInput,
        Self::Unauthorized,
        Self::Unknown,
    ];

    /// The class of a WeChat `errcode`.
    pub fn of(errcode: i64) -> Self {
        match errcode {
            40001 | 40014 | 42001 | 41001 => Self::TokenInvalid,
            -1 => Self::Retryable,
            45009 => Self::QuotaDaily,
            45011 => Self::QuotaMinute,
            40002 | 40003 | 40013 | 40029 | 40032 | 40125 | 40163 | 40164 | 40226 | 40243
            | 41002 | 41004 | 42003 | 43002 | 47001 | 61024 => Self::BadInput,
            48001 | 50001 | 50002 => Self::Unauthorized,
            _ => Self::Unknown,
        }
    }

    /// A stable lower-case name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenInvalid => "token_invalid",
            Self::Retryable => "retryable",
            Self::QuotaDaily => "quota_daily",
            Self::QuotaMinute => "quota_minute",
            Self::BadInput => "bad_input",
            Self::Unauthorized => "unauthorized",
            Self::Unknown => "unknown",
        }
    }
}

/// An error from the WeChat client.
#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    /// WeChat answered with a non-zero `errcode`.
    #[error("WeChat error {errcode}: {errmsg}")]
    Api {
        /// The `errcode`.
        errcode: i64,
        /// The `errmsg`, as sent.
        errmsg: String,
    },
    /// The request did not complete (no DNS answer, connection refused,
    /// reset, TLS…).
    #[error("WeChat unreachable at {base}: {cause}")]
    Transport {
        /// The base URL called (`WECHAT_API_BASE`), without credentials,
        /// query or fragment.
        base: String,
        /// Why, as the chain of causes (never the request's URL, which
        /// carries secrets and access tokens in its query).
        cause: String,
    },
    /// No answer within the client's timeout.
    #[error("WeChat at {base} did not answer in time")]
    Timeout {
        /// The base URL called, as in [`Self::Transport`].
        base: String,
    },
    /// An HTTP status other than 200.
    #[error("WeChat answered HTTP {0}")]
    Http(u16),
    /// The body could not be understood.
    #[error("unreadable WeChat response: {0}")]
    Decode(String),
    /// The client refused to call: this app's quota for this API is exhausted
    /// (or it is backing off after a frequency limit) until `until`.
    #[error(
        "not calling {api} for {appid} until {until}: quota breaker open after errcode {errcode}"
    )]
    BreakerOpen {
        /// The app.
        appid: String,
        /// The API path.
        api: String,
        /// The errcode that opened the breaker.
        errcode: i64,
        /// When calls resume.
        until: DateTime<Utc>,
    },
    /// The caller's input was refused before calling (e.g. an empty openid list).
    #[error("{0}")]
    InvalidInput(String),
    /// No access token could be had: the fetch that this call waited for failed.
    #[error("no access token: {message}")]
    TokenUnavailable {
        /// The `errcode` of the failed fetch, when WeChat gave one.
        errcode: Option<i64>,
        /// What went wrong.
        message: String,
    },
    /// Sealing or opening a stored token failed.
    #[error("access token storage: {0}")]
    Storage(String),
}

impl WechatError {
    /// What a caller should do about this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { errcode, .. } => ErrorClass::of(*errcode),
            Self::Transport { .. } | Self::Timeout { .. } => ErrorClass::Retryable,
            Self::Http(status) if *status >= 500 => ErrorClass::Retryable,
            Self::Http(_) | Self::Decode(_) | Self::Storage(_) => ErrorClass::Unknown,
            Self::BreakerOpen { errcode, .. } => ErrorClass::of(*errcode),
            Self::InvalidInput(_) => ErrorClass::BadInput,
            Self::TokenUnavailable { errcode, .. } => {
                errcode.map_or(ErrorClass::Retryable, ErrorClass::of)
            }
        }
    }

    /// The WeChat `errcode`, when there is one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } | Self::BreakerOpen { errcode, .. } => Some(*errcode),
            Self::TokenUnavailable { errcode, .. } => *errcode,
            _ => None,
        }
    }
}

impl WechatError {
    /// The error of a request to `base` that did not complete. The request's
    /// URL is dropped: WeChat URLs carry the app secret or the access token
    /// in their query, and errors end up in logs and in `refreshError`.
    pub fn transport(base: &str, e: reqwest::Error) -> Self {
        let base = shown_base(base);
        if e.is_timeout() {
            return Self::Timeout { base };
        }
        let e = e.without_url();
        // reqwest's own message ("error sending request") only repeats
        // "unreachable": its causes say why.
        let cause = match std::error::Error::source(&e) {
            Some(source) => cause_chain(source),
            None => e.to_string(),
        };
        Self::Transport { base, cause }
    }
}

/// A base URL fit for a message: scheme, host, port and path, without
/// credentials, query or fragment.
fn shown_base(base: &str) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => "an invalid WECHAT_API_BASE".to_owned(),
    }
}

/// An error and its sources, `: `-separated, each message once.
fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let message = e.to_string();
        if !message.is_empty() && !parts.iter().any(|p| p.contains(&message)) {
            parts.push(message);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_map_to_the_classes_of_the_wechat_facts() {
        for code in [40001, 40014, 42001, 41001] {
            assert_eq!(ErrorClass::of(code), ErrorClass::TokenInvalid);
        }
        assert_eq!(ErrorClass::of(-1), ErrorClass::Retryable);
        assert_eq!(ErrorClass::of(45009), ErrorClass::QuotaDaily);
        assert_eq!(ErrorClass::of(45011), ErrorClass::QuotaMinute);
        for code in [40003, 40032, 40029, 40163, 42003] {
            assert_eq!(ErrorClass::of(code), ErrorClass::BadInput);
        }
        for code in [48001, 50001, 50002] {
            assert_eq!(ErrorClass::of(code), ErrorClass::Unauthorized);
        }
        assert_eq!(ErrorClass::of(99999), ErrorClass::Unknown);
    }

    #[test]
    fn a_base_url_is_shown_without_credentials_or_query() {
        assert_eq!(
            shown_base("https://api.weixin.qq.com"),
            "https://api.weixin.qq.com"
        );
        assert_eq!(
            shown_base("http://user:pw@127.0.0.1:9090/wechat/?secret=s#x"),
            "http://127.0.0.1:9090/wechat"
        );
        assert_eq!(shown_base("not a url"), "an invalid WECHAT_API_BASE");
    }

    #[test]
    fn a_cause_chain_names_each_cause_once() {
        let io = std::io::Error::other("failed to lookup address");
        let outer = std::io::Error::other(io);
        assert_eq!(cause_chain(&outer), "failed to lookup address");
    }
}
