//! The API's own scalars, each with a description and a specification a
//! partner team can build on.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::Utc;

use crate::domain::Day;

/// An instant: an RFC 3339 date-time string with its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub chrono::DateTime<Utc>);

impl From<chrono::DateTime<Utc>> for DateTime {
    fn from(at: chrono::DateTime<Utc>) -> Self {
        Self(at)
    }
}

/// An instant, as an RFC 3339 date-time with an offset (`2026-12-07T08:30:00Z`,
/// `2026-12-07T16:30:00+08:00`). Answers are in UTC with the fraction of a
/// second that was stored (`2026-12-07T08:30:00.123456+00:00`); inputs may
/// use any offset, and a date-time without one, or a date alone, is
/// BAD_USER_INPUT.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://scalars.graphql.org/andimarek/date-time"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|at| Self(at.with_timezone(&Utc)))
                .map_err(|e| {
                    InputValueError::custom(format!(
                        "{e}; expected an RFC 3339 date-time with an offset, such as 2026-12-07T08:30:00Z"
                    ))
                }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339())
    }
}

/// A calendar day, `YYYY-MM-DD`, in China Standard Time (UTC+8): the days
/// audience history is kept by.
#[derive(Debug, Clone, Copy)]
pub struct Date(pub Day);

/// A calendar day, `YYYY-MM-DD`, in China Standard Time (UTC+8).
#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Day::parse(s).map(Date).map_err(InputValueError::custom),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<String> {
        DateTime::parse(Value::String(text.to_owned()))
            .ok()
            .map(|at| at.0.to_rfc3339())
    }

    #[test]
    fn date_times_with_an_offset_parse_to_utc() {
        assert_eq!(
            parse("2026-12-07T16:30:00+08:00").as_deref(),
            Some("2026-12-07T08:30:00+00:00")
        );
        assert_eq!(
            parse("2026-12-07T08:30:00.5Z").as_deref(),
            Some("2026-12-07T08:30:00.500+00:00")
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "2026-12-07",
            "2026-12-07T08:30:00",
            "2026-02-30T00:00:00Z",
            "yesterday",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(DateTime::parse(Value::Number(1.into())).is_err());
    }
}
