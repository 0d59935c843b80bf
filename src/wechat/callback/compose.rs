//! Writing the XML bodies of the callback, as WeChat writes them.
//!
//! CDATA for strings, plain text for numbers and timestamps, and a `]]>`
//! inside a value split across two CDATA sections so that it cannot end the
//! section early. The simulator and the tests use these to play WeChat; a
//! safe-mode reply uses [`reply_envelope_xml`].

use quick_xml::escape::escape;
use quick_xml::events::BytesCData;

/// An event push as WeChat sends it (`MsgType` `event`), for the simulator
/// and tests: CDATA everywhere but `CreateTime`; `EventKey` and `Ticket`
/// only when given.
pub fn event_xml(
    to_user_name: &str,
    from_user_name: &str,
    create_time: i64,
    event: &str,
    event_key: Option<&str>,
    ticket: Option<&str>,
) -> String {
    let mut xml = String::from("<xml>");
    push_cdata(&mut xml, "ToUserName", to_user_name);
    push_cdata(&mut xml, "FromUserName", from_user_name);
    push_text(&mut xml, "CreateTime", &create_time.to_string());
    push_cdata(&mut xml, "MsgType", "event");
    push_cdata(&mut xml, "Event", event);
    if let Some(event_key) = event_key {
        push_cdata(&mut xml, "EventKey", event_key);
    }
    if let Some(ticket) = ticket {
        push_cdata(&mut xml, "Ticket", ticket);
    }
    xml.push_str("</xml>");
    xml
}

/// A safe-mode push body: `<xml><ToUserName/><Encrypt/></xml>`.
pub fn encrypted_envelope_xml(to_user_name: &str, encrypt: &str) -> String {
    let mut xml = String::from("<xml>");
    push_cdata(&mut xml, "ToUserName", to_user_name);
    push_cdata(&mut xml, "Encrypt", encrypt);
    xml.push_str("</xml>");
    xml
}

/// A compatible-mode push body: the plain message `plain_xml` (from
/// [`event_xml`]) with its sealed form added as `Encrypt`, for receivers
/// moving from plain to safe mode.
pub fn compatible_envelope_xml(plain_xml: &str, encrypt: &str) -> String {
    let body = plain_xml.strip_suffix("</xml>").unwrap_or(plain_xml);
    let mut xml = String::from(body);
    push_cdata(&mut xml, "Encrypt", encrypt);
    xml.push_str("</xml>");
    xml
}

/// A safe-mode reply body:
/// `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`, with
/// `TimeStamp` as plain text like WeChat's own.
pub fn reply_envelope_xml(
    encrypt: &str,
    msg_signature: &str,
    timestamp: &str,
    nonce: &str,
) -> String {
    let mut xml = String::from("<xml>");
    push_cdata(&mut xml, "Encrypt", encrypt);
    push_cdata(&mut xml, "MsgSignature", msg_signature);
    push_text(&mut xml, "TimeStamp", timestamp);
    push_cdata(&mut xml, "Nonce", nonce);
    xml.push_str("</xml>");
    xml
}

/// Appends `<name>` holding `value` as CDATA, split where `value` holds `]]>`.
fn push_cdata(xml: &mut String, name: &str, value: &str) {
    xml.push('<');
    xml.push_str(name);
    xml.push('>');
    for section in BytesCData::escaped(value) {
        xml.push_str("<![CDATA[");
        xml.push_str(&section);
        xml.push_str("]]>");
    }
    xml.push_str("</");
    xml.push_str(name);
    xml.push('>');
}

/// Appends `<name>` holding `value` as escaped text.
fn push_text(xml: &mut String, name: &str, value: &str) {
    xml.push('<');
    xml.push_str(name);
    xml.push('>');
    xml.push_str(&escape(value));
    xml.push_str("</");
    xml.push_str(name);
    xml.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::callback::{
        CallbackError, EncryptedEnvelope, parse_encrypted_envelope, parse_message,
    };

    #[test]
    fn cdata_terminators_in_values_survive_a_round_trip() {
        let xml = event_xml("gh", "o]]>1", 5, "SCAN", Some("a]]>b]]>"), None);
        assert!(xml.contains("<CreateTime>5</CreateTime>"));
        let message = parse_message(&xml).unwrap();
        assert_eq!(message.from_user_name, "o]]>1");
        assert_eq!(message.event_key.as_deref(), Some("a]]>b]]>"));
        assert_eq!(message.ticket, None);
    }

    #[test]
    fn envelopes_are_written_and_read() {
        let xml = encrypted_envelope_xml("gh_7f083739789a", "c2VhbGVk");
        assert_eq!(
            xml,
            "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName><Encrypt><![CDATA[c2VhbGVk]]></Encrypt></xml>"
        );
        assert_eq!(
            parse_encrypted_envelope(&xml).unwrap(),
            EncryptedEnvelope {
                to_user_name: Some("gh_7f083739789a".into()),
                encrypt: "c2VhbGVk".into()
            }
        );
        let reply = reply_envelope_xml("c2VhbGVk", "abc123", "1714037059", "486452656");
        assert_eq!(
            reply,
            "<xml><Encrypt><![CDATA[c2VhbGVk]]></Encrypt><MsgSignature><![CDATA[abc123]]></MsgSignature><TimeStamp>1714037059</TimeStamp><Nonce><![CDATA[486452656]]></Nonce></xml>"
        );
        // A reply envelope has no ToUserName; it still reads.
        assert_eq!(parse_encrypted_envelope(&reply).unwrap().to_user_name, None);
        assert_eq!(
            parse_encrypted_envelope("<xml><ToUserName>gh</ToUserName></xml>"),
            Err(CallbackError::MissingElement("Encrypt"))
        );
    }
}
