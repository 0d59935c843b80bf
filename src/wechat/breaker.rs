//! Quota breakers: stop calling an API for an app once WeChat says its quota is gone.
//!
//! 45009 (daily quota reached) opens the breaker for that app and API until
//! WeChat's quotas reset at midnight Beijing time; 45011 (per-minute
//! frequency limit) opens it for 60 s. While open, calls fail at once with
//! [`WechatError::BreakerOpen`] instead of hot-looping against WeChat.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, NaiveTime, Utc};

use super::error::WechatError;
use crate::clock::Clock;

/// Per-app, per-API breakers.
#[derive(Debug, Default)]
pub struct Breakers {
    clock: Clock,
    open: Mutex<HashMap<(String, String), Trip>>,
}

/// Why and until when one breaker is open.
#[derive(Debug, Clone, Copy)]
struct Trip {
    errcode: i64,
    until: DateTime<Utc>,
}

/// The next midnight in Beijing (UTC+8) after `now`: when WeChat's daily quotas reset.
pub fn next_quota_reset(now: DateTime<Utc>) -> DateTime<Utc> {
    // Beijing has no daylight saving time: a fixed UTC+8 is exact.
    let local = now.naive_utc() + Duration::hours(8);
    let midnight = (local.date() + Duration::days(1)).and_time(NaiveTime::MIN);
    (midnight - Duration::hours(8)).and_utc()
}

impl Breakers {
    /// Breakers reading time from `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            open: Mutex::default(),
        }
    }

    /// Fails when the breaker of `appid` and `api` is open.
    pub fn check(&self, appid: &str, api: &str) -> Result<(), WechatError> {
        let now = self.clock.now();
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (appid.to_owned(), api.to_owned());
        match open.get(&key) {
            Some(&Trip { errcode, until }) if until > now => Err(WechatError::BreakerOpen {
                appid: appid.to_owned(),
                api: api.to_owned(),
                errcode,
                until,
            }),
            Some(_) => {
                open.remove(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Opens the breaker after `errcode` (45009 or 45011; others are ignored).
    pub fn trip(&self, appid: &str, api: &str, errcode: i64) {
        let now = self.clock.now();
        let until = match errcode {
            45009 => next_quota_reset(now),
            45011 => now + Duration::seconds(60),
            _ => return,
        };
        tracing::warn!(
            app.appid = appid,
            wechat.api = api,
            wechat.errcode = errcode,
            until = %until,
            "WeChat quota reached; not calling this API for this app until then"
        );
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((appid.to_owned(), api.to_owned()), Trip { errcode, until });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_quotas_reset_at_midnight_beijing_time() {
        let now = "2026-11-24T15:59:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            next_quota_reset(now),
            "2026-11-24T16:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let now = "2026-11-24T16:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            next_quota_reset(now),
            "2026-11-25T16:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn a_tripped_breaker_refuses_until_its_window_passes() {
        let clock = Clock::manual("2026-11-24T01:00:00Z".parse().unwrap());
        let breakers = Breakers::new(clock.clone());
        breakers.trip("wx1", "/cgi-bin/user/info", 45011);
        assert!(breakers.check("wx1", "/cgi-bin/user/info").is_err());
        assert!(breakers.check("wx1", "/cgi-bin/user/get").is_ok());
        assert!(breakers.check("wx2", "/cgi-bin/user/info").is_ok());
        clock.advance(Duration::seconds(61));
        assert!(breakers.check("wx1", "/cgi-bin/user/info").is_ok());

        breakers.trip("wx1", "/cgi-bin/user/info", 45009);
        clock.advance(Duration::hours(14));
        assert!(breakers.check("wx1", "/cgi-bin/user/info").is_err());
        clock.advance(Duration::hours(2));
        assert!(breakers.check("wx1", "/cgi-bin/user/info").is_ok());
    }
}
