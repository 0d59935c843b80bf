//! How the sandbox answers: WeChat's envelope, messages and quirks.
//!
//! WeChat answers errors with HTTP 200 and `{"errcode","errmsg"}`, the
//! message ending in a ` rid: …` request id. Its bodies may also hold raw
//! control characters inside strings (seen in nicknames): serde_json would
//! escape them, so WeChat responses go through [`RawControls`], a formatter
//! that writes them as the raw bytes WeChat sends.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

use super::codec::{hash, mix};

/// WeChat's content type for JSON answers.
const CONTENT_TYPE: &str = "application/json; encoding=utf-8";

/// The message WeChat sends with `errcode`.
pub(crate) fn errmsg(code: i64) -> &'static str {
    match code {
        -1 => "system error",
        0 => "ok",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40029 => "invalid code",
        40032 => "invalid openid list size",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40164 => "invalid ip, not in whitelist",
        40226 => "invalid code, code blocked",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        42001 => "access_token expired",
        42003 => "code expired",
        43002 => "require POST method",
        44002 => "empty post data",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        47001 => "data format error",
        48001 => "api unauthorized",
        50001 => "user unauthorized",
        50002 => "user limited",
        76021 => "cgi_path not found, please check",
        _ => "system error",
    }
}

/// A request id in WeChat's style (`6551d1c2-4f0a3c1b-0e2d9a77`).
fn rid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let a = mix(n);
    let b = hash(n, &[a]);
    format!(
        "{:08x}-{:08x}-{:08x}",
        (a >> 32) as u32,
        a as u32,
        (b >> 32) as u32
    )
}

/// The error answer for `code`: HTTP 200, `{"errcode","errmsg"}`.
pub(crate) fn error(code: i64) -> Response {
    let body = serde_json::json!({
        "errcode": code,
        "errmsg": format!("{} rid: {}", errmsg(code), rid()),
    });
    json(&body)
}

/// A JSON answer written the way WeChat writes it (raw control characters).
pub(crate) fn json<T: Serialize>(value: &T) -> Response {
    let mut body = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut body, RawControls);
    if value.serialize(&mut ser).is_err() {
        body = br#"{"errcode":-1,"errmsg":"system error"}"#.to_vec();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// A JSON formatter that leaves control characters in strings unescaped,
/// except the whitespace escapes (`\n`, `\r`, `\t`) that WeChat keeps.
pub(crate) struct RawControls;

impl Formatter for RawControls {
    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        match char_escape {
            CharEscape::AsciiControl(byte) => writer.write_all(&[byte]),
            CharEscape::Backspace => writer.write_all(b"\x08"),
            CharEscape::FormFeed => writer.write_all(b"\x0c"),
            other => CompactFormatter.write_char_escape(writer, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_stay_raw() {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, RawControls);
        let value = serde_json::json!({"nickname": "a\u{1}b\u{8}c\n\"d\\"});
        assert!(value.serialize(&mut ser).is_ok());
        assert_eq!(out, b"{\"nickname\":\"a\x01b\x08c\\n\\\"d\\\\\"}".to_vec());
    }
}
