//! JSON request bodies read strictly: an object that names a key twice is
//! refused instead of keeping the last value silently (GraphQL forbids an
//! input object naming a field twice, and variables are input objects).
//! Nesting stays bounded by `serde_json`'s own recursion limit.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not strict JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum StrictJsonError {
    /// Not JSON at all.
    Syntax,
    /// An object names this key twice.
    DuplicateKey(String),
}

/// Parses `text` as JSON, refusing objects that name a key twice.
pub fn parse(text: &[u8]) -> Result<Value, StrictJsonError> {
    match serde_json::from_slice::<Strict>(text) {
        Ok(Strict(value)) => Ok(value),
        Err(e) => {
            let message = e.to_string();
            match message.strip_prefix(DUPLICATE) {
                Some(rest) => Err(StrictJsonError::DuplicateKey(
                    rest.split(" at line").next().unwrap_or(rest).to_owned(),
                )),
                None => Err(StrictJsonError::Syntax),
            }
        }
    }
}

const DUPLICATE: &str = "duplicate key: ";

/// A JSON value whose objects name each key once.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Strict::deserialize(deserializer).map(|Strict(v)| v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE}{key}")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_serde_json_would() {
        let text = br#"{"query":"{ a }","variables":{"n":[1,-2,3.5,true,null,{"x":"y"}]}}"#;
        let strict = parse(text).expect("valid");
        let loose: Value = serde_json::from_slice(text).expect("valid");
        assert_eq!(strict, loose);
    }

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth() {
        assert_eq!(
            parse(br#"{"a":1,"a":2}"#),
            Err(StrictJsonError::DuplicateKey("a".to_owned()))
        );
        assert_eq!(
            parse(br#"{"variables":{"i":[{"nickname":"x","nickname":"y"}]}}"#),
            Err(StrictJsonError::DuplicateKey("nickname".to_owned()))
        );
        assert_eq!(parse(b"{\"a\":"), Err(StrictJsonError::Syntax));
        assert_eq!(parse(b"[1,2"), Err(StrictJsonError::Syntax));
    }

    #[test]
    fn nesting_stays_bounded() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(deep.as_bytes()), Err(StrictJsonError::Syntax));
    }
}
