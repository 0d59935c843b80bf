//! Lenient decoding where WeChat is sloppy.
//!
//! WeChat sometimes sends raw control characters inside JSON strings (seen
//! in nicknames), which strict JSON parsers reject. They are escaped here
//! before parsing, so one odd nickname never sinks a batch of 100 profiles.
//! `sex` arrives as a number or as a string depending on the endpoint.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Escapes raw control characters (U+0000 to U+001F) found inside JSON
/// strings as `\u00XX`; everything else is left untouched, and a body
/// without any is returned without copying.
pub fn escape_control_characters(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in body.iter().enumerate() {
        let control = in_string && !escaped && b < 0x20;
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        }
        if control {
            let out = out.get_or_insert_with(|| body[..i].to_vec());
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else if let Some(out) = &mut out {
            out.push(b);
        }
    }
    out.map_or(std::borrow::Cow::Borrowed(body), std::borrow::Cow::Owned)
}

/// Parses a WeChat body into JSON, tolerating control characters in strings.
pub fn parse(body: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(&escape_control_characters(body))
}

/// Deserialises an integer sent as a number or as a string (`"1"`); empty or
/// malformed strings read as `None`.
pub fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_inside_strings_are_escaped() {
        let body = b"{\"nickname\":\"a\x01b\x08\",\n\t\"n\":1}";
        let value = parse(body).unwrap();
        assert_eq!(value["nickname"], "a\u{1}b\u{8}");
        assert_eq!(value["n"], 1);
    }

    #[test]
    fn escaped_quotes_do_not_confuse_the_scanner() {
        let body = b"{\"a\":\"x\\\"\x02\",\"b\":\"\\\\\"}";
        let value = parse(body).unwrap();
        assert_eq!(value["a"], "x\"\u{2}");
        assert_eq!(value["b"], "\\");
    }

    #[test]
    fn clean_bodies_are_not_copied() {
        let body = b"{\"a\": \"b\",\n \"c\": 1}";
        assert!(matches!(
            escape_control_characters(body),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn sex_reads_from_numbers_and_strings() {
        #[derive(serde::Deserialize)]
        struct P {
            #[serde(default, deserialize_with = "int_or_string")]
            sex: Option<i64>,
        }
        let n: P = serde_json::from_str(r#"{"sex":1}"#).unwrap();
        let s: P = serde_json::from_str(r#"{"sex":"2"}"#).unwrap();
        let e: P = serde_json::from_str(r#"{"sex":""}"#).unwrap();
        let m: P = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!((n.sex, s.sex, e.sex, m.sex), (Some(1), Some(2), None, None));
    }
}
