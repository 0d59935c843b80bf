//! An app registration as it arrives, from the API or the command line,
//! checked field by field: every field that is wrong is reported at once,
//! so an operator fixes them in one go rather than one refusal at a time.
//!
//! The rules are WeChat's: an AppSecret is the 32 hexadecimal characters
//! the WeChat console shows, a callback token 3 to 32 letters or digits, an
//! EncodingAESKey 43 base64 characters. A placeholder copied from an
//! example (`…`, `<secret>`) is none of those, and is refused here rather
//! than at the first token fetch.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::{AppError, MIN_TTL_SECS, NewApp};
use crate::domain::{AppId, AppKind, check_storable};

/// The length of a WeChat AppSecret, in hexadecimal characters.
pub const APP_SECRET_LEN: usize = 32;

/// A field of an app registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppField {
    /// The appid.
    Appid,
    /// The kind.
    Kind,
    /// The display name.
    Name,
    /// The AppSecret.
    Secret,
    /// The callback token.
    CallbackToken,
    /// The EncodingAESKey.
    EncodingAesKey,
    /// The freshness TTL.
    FreshnessTtlSeconds,
}

impl AppField {
    /// The field's name in the GraphQL API (`registerApp`'s input).
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Appid => "appid",
            Self::Kind => "kind",
            Self::Name => "name",
            Self::Secret => "secret",
            Self::CallbackToken => "callbackToken",
            Self::EncodingAesKey => "encodingAesKey",
            Self::FreshnessTtlSeconds => "freshnessTtlSeconds",
        }
    }
}

/// One field that is wrong, and why (never its value: it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Which field.
    pub field: AppField,
    /// Why, as a sentence that names the field as the API does.
    pub message: String,
}

/// Every wrong field of one registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblems(pub Vec<FieldProblem>);

impl FieldProblems {
    /// The API names of the wrong fields, in order.
    pub fn fields(&self) -> Vec<&'static str> {
        self.0.iter().map(|p| p.field.api_name()).collect()
    }
}

impl fmt::Display for FieldProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid app: ")?;
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&problem.message)?;
        }
        Ok(())
    }
}

/// A registration as it arrives, nothing checked yet.
#[derive(Debug)]
pub struct AppInput {
    /// The appid (`wx…`).
    pub appid: String,
    /// The kind: `OFFICIAL_ACCOUNT` or `official-account`, and so on.
    pub kind: String,
    /// A display name.
    pub name: String,
    /// The AppSecret.
    pub secret: SecretString,
    /// Official accounts: the callback token.
    pub callback_token: Option<SecretString>,
    /// Official accounts: the EncodingAESKey.
    pub aes_key: Option<SecretString>,
    /// The freshness TTL in seconds (`None`: the server's default).
    pub freshness_ttl_secs: Option<i64>,
}

impl AppInput {
    /// Checks every field; the app, or every problem found.
    pub fn parse(self) -> Result<NewApp, AppError> {
        let mut problems = Vec::new();
        let appid = AppId::parse(self.appid)
            .map_err(|e| problems.push(problem(AppField::Appid, e.to_string())))
            .ok();
        let kind = self
            .kind
            .parse::<AppKind>()
            .map_err(|e| problems.push(problem(AppField::Kind, e.to_string())))
            .ok();
        let fields = Fields {
            kind,
            name: &self.name,
            secret: &self.secret,
            callback_token: self.callback_token.as_ref(),
            aes_key: self.aes_key.as_ref(),
            freshness_ttl_secs: self.freshness_ttl_secs,
        };
        problems.extend(fields.problems());
        match (appid, kind) {
            (Some(appid), Some(kind)) if problems.is_empty() => Ok(NewApp {
                appid,
                kind,
                name: self.name,
                secret: self.secret,
                callback_token: self.callback_token,
                aes_key: self.aes_key,
                freshness_ttl_secs: self.freshness_ttl_secs,
            }),
            _ => Err(AppError::InvalidFields(FieldProblems(problems))),
        }
    }
}

impl NewApp {
    /// Checks the fields a parsed appid and kind do not vouch for.
    pub(super) fn validate(&self) -> Result<(), AppError> {
        let fields = Fields {
            kind: Some(self.kind),
            name: &self.name,
            secret: &self.secret,
            callback_token: self.callback_token.as_ref(),
            aes_key: self.aes_key.as_ref(),
            freshness_ttl_secs: self.freshness_ttl_secs,
        };
        let problems = fields.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AppError::InvalidFields(FieldProblems(problems)))
        }
    }
}

fn problem(field: AppField, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field,
        message: message.into(),
    }
}

/// The fields checked alike however the appid and kind arrived.
struct Fields<'a> {
    /// `None` when the kind itself is wrong.
    kind: Option<AppKind>,
    name: &'a str,
    secret: &'a SecretString,
    callback_token: Option<&'a SecretString>,
    aes_key: Option<&'a SecretString>,
    freshness_ttl_secs: Option<i64>,
}

impl Fields<'_> {
    fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            problems.push(problem(AppField::Name, "name must be 1 to 100 characters"));
        } else if let Err(e) = check_storable("name", name) {
            problems.push(problem(AppField::Name, e.to_string()));
        }
        if !is_app_secret(self.secret.expose_secret()) {
            problems.push(problem(
                AppField::Secret,
                format!(
                    "secret must be the app's AppSecret from the WeChat console: {APP_SECRET_LEN} hexadecimal characters"
                ),
            ));
        }
        let official = self.kind == Some(AppKind::OfficialAccount);
        let other_kind = self.kind.is_some() && !official;
        if let Some(token) = self.callback_token {
            if other_kind {
                problems.push(problem(
                    AppField::CallbackToken,
                    "callbackToken is for official accounts only",
                ));
            } else if !is_callback_token(token.expose_secret()) {
                problems.push(problem(
                    AppField::CallbackToken,
                    "callbackToken must be the token set in the WeChat console: 3 to 32 letters or digits",
                ));
            }
        }
        if let Some(key) = self.aes_key {
            if other_kind {
                problems.push(problem(
                    AppField::EncodingAesKey,
                    "encodingAesKey is for official accounts only",
                ));
            } else if crate::crypto::decode_encoding_aes_key(key.expose_secret()).is_none() {
                problems.push(problem(
                    AppField::EncodingAesKey,
                    "encodingAesKey must be the EncodingAESKey from the WeChat console: 43 letters and digits",
                ));
            }
        }
        if let Some(seconds) = self.freshness_ttl_secs
            && seconds < MIN_TTL_SECS
        {
            problems.push(problem(
                AppField::FreshnessTtlSeconds,
                format!("freshnessTtlSeconds must be at least {MIN_TTL_SECS}"),
            ));
        }
        problems
    }
}

/// Whether `secret` can be a WeChat AppSecret: 32 hexadecimal characters.
pub fn is_app_secret(secret: &str) -> bool {
    secret.len() == APP_SECRET_LEN && secret.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `token` can be a callback token: 3 to 32 letters or digits.
fn is_callback_token(token: &str) -> bool {
    (3..=32).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789ABCDEF";
    const AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

    fn input() -> AppInput {
        AppInput {
            appid: "wx49f0ab532d5d035a".to_owned(),
            kind: "OFFICIAL_ACCOUNT".to_owned(),
            name: "Main account".to_owned(),
            secret: SECRET.into(),
            callback_token: Some("token123".into()),
            aes_key: Some(AES_KEY.into()),
            freshness_ttl_secs: None,
        }
    }

    fn problems(input: AppInput) -> Vec<&'static str> {
        match input.parse() {
            Err(AppError::InvalidFields(problems)) => problems.fields(),
            other => panic!("expected problems: {other:?}"),
        }
    }

    #[test]
    fn a_real_registration_parses() {
        let new = input().parse().unwrap();
        assert_eq!(new.kind, AppKind::OfficialAccount);
        assert_eq!(new.appid.as_str(), "wx49f0ab532d5d035a");
    }

    #[test]
    fn every_wrong_field_is_reported_at_once() {
        let placeholders = AppInput {
            appid: "wx…".to_owned(),
            kind: "newsletter".to_owned(),
            name: " ".to_owned(),
            secret: "…".into(),
            callback_token: Some("…".into()),
            aes_key: Some("…".into()),
            freshness_ttl_secs: Some(5),
        };
        assert_eq!(
            problems(placeholders),
            [
                "appid",
                "kind",
                "name",
                "secret",
                "callbackToken",
                "encodingAesKey",
                "freshnessTtlSeconds"
            ]
        );
        // The README's old example: only the appid was real.
        let example = AppInput {
            secret: "…".into(),
            callback_token: Some("…".into()),
            aes_key: Some("…".into()),
            ..input()
        };
        assert_eq!(
            problems(example),
            ["secret", "callbackToken", "encodingAesKey"]
        );
    }

    #[test]
    fn only_what_can_be_an_app_secret_is_taken() {
        for secret in [SECRET, "ffffffffffffffffffffffffffffffff"] {
            assert!(is_app_secret(secret), "{secret}");
        }
        for secret in [
            "",
            "…",
            " ",
            "s3cret-value",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            " 0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdeg",
            "0123456789abcdef0123456789abcd\u{0}f",
            &"0".repeat(4096),
        ] {
            assert!(!is_app_secret(secret), "{secret:?}");
        }
    }

    #[test]
    fn messages_name_the_fields_and_never_their_values() {
        let secret = "not-the-real-secret";
        let error = AppInput {
            secret: secret.into(),
            callback_token: Some("no!".into()),
            ..input()
        }
        .parse()
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("invalid app: secret must be"), "{error}");
        assert!(error.contains("; callbackToken must be"), "{error}");
        assert!(!error.contains(secret) && !error.contains("no!"), "{error}");
    }

    #[test]
    fn callback_settings_belong_to_official_accounts() {
        let website = AppInput {
            kind: "website".to_owned(),
            ..input()
        };
        assert_eq!(problems(website), ["callbackToken", "encodingAesKey"]);
    }
}
