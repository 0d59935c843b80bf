//! Domain values parsed at the edge: identifiers, app kinds, profile sources and token endpoints.
//!
//! Everything that enters union360 (GraphQL arguments, CLI flags, WeChat
//! responses) is parsed into these types first, so invalid input never gets
//! past the edge and the services can trust what they are given.

use std::fmt;
use std::str::FromStr;

/// Why an identifier or other domain value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The value is empty.
    #[error("{what} must not be empty")]
    Empty {
        /// What was being parsed.
        what: &'static str,
    },
    /// The value is longer than any real one.
    #[error("{what} is longer than {max} characters")]
    TooLong {
        /// What was being parsed.
        what: &'static str,
        /// The maximum length.
        max: usize,
    },
    /// The value has leading or trailing white space (nothing is trimmed silently).
    #[error("{what} has leading or trailing white space")]
    Whitespace {
        /// What was being parsed.
        what: &'static str,
    },
    /// The value contains control characters.
    #[error("{what} contains control characters")]
    Control {
        /// What was being parsed.
        what: &'static str,
    },
    /// The value holds a NUL character, which no database column can store.
    #[error("{what} contains a NUL character (U+0000), which cannot be stored")]
    Nul {
        /// What was being parsed.
        what: &'static str,
    },
    /// The value does not have the expected shape.
    #[error("{what} is malformed: {why}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Checks the rules shared by every opaque WeChat identifier.
fn check_opaque(what: &'static str, value: &str, max: usize) -> Result<(), ParseError> {
    if value.is_empty() {
        return Err(ParseError::Empty { what });
    }
    if value.chars().count() > max {
        return Err(ParseError::TooLong { what, max });
    }
    if value.trim() != value {
        return Err(ParseError::Whitespace { what });
    }
    if value.chars().any(char::is_control) {
        return Err(ParseError::Control { what });
    }
    Ok(())
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses an identifier: non-empty, at most 128 characters, no
            /// surrounding white space, no control characters. The alphabet
            /// is not checked: WeChat treats it as opaque.
            pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
                let value = value.into();
                check_opaque($what, &value, 128)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as an owned string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

opaque_id!(
    /// A user's OpenID within one app (opaque, 28 characters in practice).
    OpenId,
    "openid"
);
opaque_id!(
    /// A user's UnionID across the apps of one open platform account.
    UnionId,
    "unionid"
);

/// A WeChat appid: `wx` followed by letters and digits (`wx` + 16 hex digits in practice).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppId(String);

impl AppId {
    /// Parses an appid.
    pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
        let value = value.into();
        check_opaque("appid", &value, 64)?;
        if !value.starts_with("wx") {
            return Err(ParseError::Malformed {
                what: "appid",
                why: "it must start with \"wx\"",
            });
        }
        if value.len() < 3 || !value.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ParseError::Malformed {
                what: "appid",
                why: "it must be \"wx\" followed by letters and digits",
            });
        }
        Ok(Self(value))
    }

    /// The appid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The four kinds of app an open platform account can bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl AppKind {
    /// The stored and printed name (`OFFICIAL_ACCOUNT`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OfficialAccount => "OFFICIAL_ACCOUNT",
            Self::MiniProgram => "MINI_PROGRAM",
            Self::MobileApp => "MOBILE_APP",
            Self::Website => "WEBSITE",
        }
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AppKind {
    type Err = ParseError;

    /// Accepts the stored form (`OFFICIAL_ACCOUNT`) and the CLI form (`official-account`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "OFFICIAL_ACCOUNT" => Ok(Self::OfficialAccount),
            "MINI_PROGRAM" => Ok(Self::MiniProgram),
            "MOBILE_APP" => Ok(Self::MobileApp),
            "WEBSITE" => Ok(Self::Website),
            _ => Err(ParseError::Malformed {
                what: "app kind",
                why: "expected official-account, mini-program, mobile-app or website",
            }),
        }
    }
}

/// Refuses text a database cannot store. PostgreSQL refuses a NUL character
/// (U+0000) anywhere in a text value while SQLite stores it, so it is
/// refused before any write, on both, naming the field `what`. (The other
/// values PostgreSQL refuses cannot arrive in a Rust `String`: lone
/// surrogates and invalid UTF-8 are refused when the JSON is decoded.)
pub fn check_storable(what: &'static str, value: &str) -> Result<(), ParseError> {
    if value.contains('\0') {
        return Err(ParseError::Nul { what });
    }
    Ok(())
}

/// Text from outside union360's control (WeChat) made storable: NUL
/// characters are removed, not replaced, so the visible text stays as
/// WeChat shows it (a replacement glyph would show where nothing was).
pub fn storable(value: String) -> String {
    if value.contains('\0') {
        value.replace('\0', "")
    } else {
        value
    }
}

/// Which WeChat endpoint issues access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenEndpoint {
    /// `POST /cgi-bin/stable_token`: the same token for every caller until it nears expiry (recommended).
    #[default]
    Stable,
    /// `GET /cgi-bin/token`: a new token per call, invalidating the previous one after 5 minutes.
    Classic,
}

impl fmt::Display for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stable => "stable",
            Self::Classic => "classic",
        })
    }
}

impl FromStr for TokenEndpoint {
    type Err = ParseError;

    /// Accepts `stable` or `classic`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "stable" => Ok(Self::Stable),
            "classic" => Ok(Self::Classic),
            _ => Err(ParseError::Malformed {
                what: "token endpoint",
                why: "expected stable or classic",
            }),
        }
    }
}

/// Where a profile value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl ProfileSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Import => "IMPORT",
            Self::UserInfo => "USER_INFO",
            Self::SnsUserinfo => "SNS_USERINFO",
            Self::MiniProgram => "MINI_PROGRAM",
            Self::Callback => "CALLBACK",
        }
    }

    /// Parses a stored name; unknown names (from a newer version) yield `None`.
    pub fn from_stored(s: &str) -> Option<Self> {
        Some(match s {
            "IMPORT" => Self::Import,
            "USER_INFO" => Self::UserInfo,
            "SNS_USERINFO" => Self::SnsUserinfo,
            "MINI_PROGRAM" => Self::MiniProgram,
            "CALLBACK" => Self::Callback,
            _ => return None,
        })
    }

    /// How much a person's merged profile trusts this source: what the user
    /// gave themselves beats an operator's import, which beats `user/info`
    /// (which WeChat has blanked since 2021).
    pub fn rank(self) -> u8 {
        match self {
            Self::SnsUserinfo | Self::MiniProgram => 3,
            Self::Import => 2,
            Self::Callback => 1,
            Self::UserInfo => 0,
        }
    }
}

impl fmt::Display for ProfileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A calendar day in China Standard Time (UTC+8, no daylight saving), the
/// time WeChat's own statistics and the companies using it count days in.
/// Audience history is kept and asked for by these days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(chrono::NaiveDate);

impl Day {
    /// The offset of China Standard Time from UTC, in seconds.
    const OFFSET_SECS: i32 = 8 * 3600;

    /// The day an instant falls on.
    pub fn of(instant: chrono::DateTime<chrono::Utc>) -> Self {
        Self((instant + chrono::TimeDelta::seconds(i64::from(Self::OFFSET_SECS))).date_naive())
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .ok()
            .filter(|_| value.len() == 10)
            .map(Self)
            .ok_or(ParseError::Malformed {
                what: "day",
                why: "expected a calendar day as YYYY-MM-DD",
            })
    }

    /// The day before.
    pub fn pred(self) -> Option<Self> {
        self.0.pred_opt().map(Self)
    }

    /// The next day.
    pub fn succ(self) -> Option<Self> {
        self.0.succ_opt().map(Self)
    }

    /// Days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Self) -> i64 {
        (later.0 - self.0).num_days()
    }

    /// The first instant after this day ends, in UTC.
    pub fn end(self) -> chrono::DateTime<chrono::Utc> {
        let midnight = self
            .0
            .succ_opt()
            .unwrap_or(self.0)
            .and_time(chrono::NaiveTime::MIN);
        chrono::DateTime::from_naive_utc_and_offset(midnight, chrono::Utc)
            - chrono::TimeDelta::seconds(i64::from(Self::OFFSET_SECS))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_counted_in_china_standard_time() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.to_utc());
        let day = |s| Day::parse(s).map_err(|e| e.to_string());
        assert_eq!(
            Day::of(at("2026-12-06T15:59:59Z").unwrap()),
            day("2026-12-06").unwrap()
        );
        assert_eq!(
            Day::of(at("2026-12-06T16:00:00Z").unwrap()),
            day("2026-12-07").unwrap()
        );
        assert_eq!(
            day("2026-12-07").unwrap().end(),
            at("2026-12-07T16:00:00Z").unwrap()
        );
        assert_eq!(day("2026-12-07").unwrap().to_string(), "2026-12-07");
        for bad in [
            "2026-2-07",
            "2026-13-01",
            "07/12/2026",
            "",
            "2026-12-07T00:00",
        ] {
            assert!(day(bad).is_err(), "{bad}");
        }
        let (a, b) = (day("2026-02-27").unwrap(), day("2026-03-01").unwrap());
        assert_eq!(a.days_until(b), 2);
        assert_eq!(a.succ().and_then(Day::succ), Some(b));
    }

    #[test]
    fn opaque_ids_accept_real_shapes_and_refuse_anomalies() {
        assert!(OpenId::parse("o6_bmjrPTlm6_2sgVt7hMZOPfL2M").is_ok());
        assert_eq!(OpenId::parse(""), Err(ParseError::Empty { what: "openid" }));
        assert_eq!(
            UnionId::parse(" o6_bmasdasdsad6_2sgVt7hMZOPfL"),
            Err(ParseError::Whitespace { what: "unionid" })
        );
        assert!(matches!(
            OpenId::parse("x".repeat(129)),
            Err(ParseError::TooLong { .. })
        ));
        assert!(matches!(
            OpenId::parse("abc\u{1}def"),
            Err(ParseError::Control { .. })
        ));
    }

    #[test]
    fn nul_characters_are_refused_or_removed() {
        assert_eq!(
            check_storable("city", "Bei\0jing"),
            Err(ParseError::Nul { what: "city" })
        );
        assert!(check_storable("city", "北京").is_ok());
        assert_eq!(storable("Bei\0jing\0".to_owned()), "Beijing");
    }

    #[test]
    fn appids_start_with_wx() {
        assert!(AppId::parse("wx49f0ab532d5d035a").is_ok());
        assert!(AppId::parse("49f0ab532d5d035a").is_err());
        assert!(AppId::parse("wx-bad").is_err());
        assert!(AppId::parse("wx").is_err());
    }

    #[test]
    fn token_endpoints_parse_as_they_print() {
        for endpoint in [TokenEndpoint::Stable, TokenEndpoint::Classic] {
            assert_eq!(endpoint.to_string().parse(), Ok(endpoint));
        }
        assert!("fast".parse::<TokenEndpoint>().is_err());
    }

    #[test]
    fn app_kinds_parse_in_both_spellings() {
        assert_eq!("official-account".parse(), Ok(AppKind::OfficialAccount));
        assert_eq!("MINI_PROGRAM".parse(), Ok(AppKind::MiniProgram));
        assert!("shop".parse::<AppKind>().is_err());
    }
}
