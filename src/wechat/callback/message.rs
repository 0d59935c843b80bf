//! Reading the XML bodies of the callback with a real XML reader.
//!
//! WeChat's bodies are flat: an `<xml>` root whose children hold one value
//! each, usually as CDATA (`<Event><![CDATA[subscribe]]></Event>`) and as
//! plain text for numbers (`<CreateTime>1714037059</CreateTime>`). Both
//! forms, entity and character references included, are read the same way.
//! Children this module does not know (and anything nested in them) are
//! skipped, so new fields WeChat adds do not break parsing; a known child
//! given twice is refused rather than guessed at.

use std::collections::{HashMap, HashSet};

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::CallbackError;

/// A message or event pushed to the callback (the decrypted body in safe mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackMessage {
    /// `ToUserName`: the account's original ID (`gh_…`).
    pub to_user_name: String,
    /// `FromUserName`: the user's OpenID in this app.
    pub from_user_name: String,
    /// `CreateTime`: when WeChat created the push, in Unix seconds.
    pub create_time: i64,
    /// `MsgType`: `event`, `text`, `image`, …
    pub msg_type: String,
    /// `Event` for `MsgType` `event`: `subscribe`, `unsubscribe`, `SCAN`, …
    pub event: Option<String>,
    /// `EventKey`: `qrscene_<scene>` on a subscribe through a parametric QR
    /// code, `<scene>` on a `SCAN`; absent or empty otherwise.
    pub event_key: Option<String>,
    /// `Ticket` of the QR code scanned, with a QR-code `EventKey`.
    pub ticket: Option<String>,
    /// `MsgId` of a user message (events have none).
    pub msg_id: Option<i64>,
    /// `Content` of a text message.
    pub content: Option<String>,
}

impl CallbackMessage {
    /// The key that identifies this push across WeChat's retries:
    /// `msg:<MsgId>` for a message, and for an event
    /// `event:<FromUserName>:<CreateTime>:<Event>:<EventKey>` (missing parts
    /// empty), the fields WeChat documents for deduplicating events.
    pub fn dedup_key(&self) -> String {
        match self.msg_id {
            Some(id) => format!("msg:{id}"),
            None => format!(
                "event:{}:{}:{}:{}",
                self.from_user_name,
                self.create_time,
                self.event.as_deref().unwrap_or_default(),
                self.event_key.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// A safe-mode push body: `<xml><ToUserName/><Encrypt/></xml>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedEnvelope {
    /// `ToUserName`, when present: the account's original ID.
    pub to_user_name: Option<String>,
    /// `Encrypt`: the sealed message, base64.
    pub encrypt: String,
}

/// Reads a push body. `ToUserName`, `FromUserName`, `CreateTime` and
/// `MsgType` are required; the optional fields are `None` when absent or
/// empty (a plain subscribe carries an empty `EventKey`).
pub fn parse_message(xml: &str) -> Result<CallbackMessage, CallbackError> {
    let mut fields = Fields::read(xml)?;
    Ok(CallbackMessage {
        to_user_name: fields.required("ToUserName")?,
        from_user_name: fields.required("FromUserName")?,
        create_time: fields
            .integer("CreateTime")?
            .ok_or(CallbackError::MissingElement("CreateTime"))?,
        msg_type: fields.required("MsgType")?,
        event: fields.optional("Event")?,
        event_key: fields.optional("EventKey")?,
        ticket: fields.optional("Ticket")?,
        msg_id: fields.integer("MsgId")?,
        content: fields.optional("Content")?,
    })
}

/// Reads a safe-mode body; `Encrypt` is required.
pub fn parse_encrypted_envelope(xml: &str) -> Result<EncryptedEnvelope, CallbackError> {
    let mut fields = Fields::read(xml)?;
    Ok(EncryptedEnvelope {
        to_user_name: fields.optional("ToUserName")?,
        encrypt: fields.required("Encrypt")?,
    })
}

/// The text of each child of the `<xml>` root.
struct Fields {
    values: HashMap<String, String>,
    repeated: HashSet<String>,
}

impl Fields {
    fn read(xml: &str) -> Result<Self, CallbackError> {
        let syntax = |e: quick_xml::Error| CallbackError::Xml(e.to_string());
        let mut reader = Reader::from_str(xml);
        let mut fields = Self {
            values: HashMap::new(),
            repeated: HashSet::new(),
        };
        // Depth 1 is inside the root, 2 inside one of its children.
        let mut depth = 0usize;
        let mut child: Option<(String, String)> = None;
        loop {
            match reader.read_event().map_err(syntax)? {
                Event::Start(start) => {
                    depth += 1;
                    match depth {
                        1 => check_root(start.local_name().as_ref())?,
                        2 => child = Some((start.local_name().as_ref().to_owned(), String::new())),
                        _ => {}
                    }
                }
                Event::Empty(start) => match depth {
                    0 => {
                        check_root(start.local_name().as_ref())?;
                        break;
                    }
                    1 => fields.insert(start.local_name().as_ref().to_owned(), String::new()),
                    _ => {}
                },
                Event::End(_) => {
                    depth = depth.saturating_sub(1);
                    match depth {
                        0 => break,
                        1 => {
                            if let Some((name, text)) = child.take() {
                                fields.insert(name, text);
                            }
                        }
                        _ => {}
                    }
                }
                Event::Text(text) if depth == 2 => {
                    if let Some((_, value)) = child.as_mut() {
                        value.push_str(&text.xml10_content());
                    }
                }
                Event::CData(text) if depth == 2 => {
                    if let Some((_, value)) = child.as_mut() {
                        value.push_str(&text.xml10_content());
                    }
                }
                Event::GeneralRef(reference) if depth == 2 => {
                    let resolved = match reference.resolve_char_ref().map_err(syntax)? {
                        Some(c) => c.to_string(),
                        None => resolve_predefined_entity(&reference)
                            .ok_or_else(|| {
                                CallbackError::Xml(format!("unknown entity &{};", &*reference))
                            })?
                            .to_owned(),
                    };
                    if let Some((_, value)) = child.as_mut() {
                        value.push_str(&resolved);
                    }
                }
                // WeChat never sends one; refused rather than skipped, so
                // that no entity declaration is ever read.
                Event::DocType(_) => {
                    return Err(CallbackError::Xml("a DOCTYPE is not accepted".into()));
                }
                Event::Eof => {
                    return Err(CallbackError::Xml(if depth == 0 {
                        "no <xml> element".into()
                    } else {
                        "the document ends inside an element".into()
                    }));
                }
                _ => {}
            }
        }
        Ok(fields)
    }

    fn insert(&mut self, name: String, value: String) {
        if self.values.contains_key(&name) {
            self.repeated.insert(name.clone());
        }
        self.values.insert(name, value);
    }

    /// The non-empty text of `name`, `None` when absent or empty.
    fn optional(&mut self, name: &'static str) -> Result<Option<String>, CallbackError> {
        if self.repeated.contains(name) {
            return Err(CallbackError::Xml(format!(
                "<{name}> appears more than once"
            )));
        }
        Ok(self.values.remove(name).filter(|value| !value.is_empty()))
    }

    fn required(&mut self, name: &'static str) -> Result<String, CallbackError> {
        self.optional(name)?
            .ok_or(CallbackError::MissingElement(name))
    }

    fn integer(&mut self, name: &'static str) -> Result<Option<i64>, CallbackError> {
        self.optional(name)?
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|_| CallbackError::InvalidNumber {
                        element: name,
                        value,
                    })
            })
            .transpose()
    }
}

fn check_root(name: &str) -> Result<(), CallbackError> {
    if name == "xml" {
        Ok(())
    } else {
        Err(CallbackError::Xml(format!(
            "the root element is <{name}>, not <xml>"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::callback::event_xml;

    /// A subscribe through a parametric QR code, as in WeChat's
    /// documentation of the push (indented, CDATA values).
    const SUBSCRIBE_QR: &str = "<xml>
  <ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>
  <FromUserName><![CDATA[o6_bmjrPTlm6_2sgVt7hMZOPfL2M]]></FromUserName>
  <CreateTime>1714037059</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[subscribe]]></Event>
  <EventKey><![CDATA[qrscene_123]]></EventKey>
  <Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==]]></Ticket>
</xml>";

    #[test]
    fn a_qr_code_subscribe_is_read() {
        let message = parse_message(SUBSCRIBE_QR).unwrap();
        assert_eq!(
            message,
            CallbackMessage {
                to_user_name: "gh_7f083739789a".into(),
                from_user_name: "o6_bmjrPTlm6_2sgVt7hMZOPfL2M".into(),
                create_time: 1714037059,
                msg_type: "event".into(),
                event: Some("subscribe".into()),
                event_key: Some("qrscene_123".into()),
                ticket: Some("gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==".into()),
                msg_id: None,
                content: None,
            }
        );
        assert_eq!(
            message.dedup_key(),
            "event:o6_bmjrPTlm6_2sgVt7hMZOPfL2M:1714037059:subscribe:qrscene_123"
        );
    }

    #[test]
    fn an_unsubscribe_is_read() {
        let xml = "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName><FromUserName><![CDATA[o6_bmjrPTlm6_2sgVt7hMZOPfL2M]]></FromUserName><CreateTime>1714037500</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event><EventKey><![CDATA[]]></EventKey></xml>";
        let message = parse_message(xml).unwrap();
        assert_eq!(message.event.as_deref(), Some("unsubscribe"));
        assert_eq!(message.event_key, None);
        assert_eq!(message.ticket, None);
        assert_eq!(
            message.dedup_key(),
            "event:o6_bmjrPTlm6_2sgVt7hMZOPfL2M:1714037500:unsubscribe:"
        );
    }

    #[test]
    fn a_scan_by_a_follower_is_read() {
        let xml = event_xml(
            "gh_7f083739789a",
            "o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
            1714037600,
            "SCAN",
            Some("123"),
            Some("TICKET"),
        );
        let message = parse_message(&xml).unwrap();
        assert_eq!(message.event.as_deref(), Some("SCAN"));
        assert_eq!(message.event_key.as_deref(), Some("123"));
        assert_eq!(message.ticket.as_deref(), Some("TICKET"));
        assert_eq!(
            message.dedup_key(),
            "event:o6_bmjrPTlm6_2sgVt7hMZOPfL2M:1714037600:SCAN:123"
        );
    }

    #[test]
    fn a_text_message_is_read_with_plain_text_and_references() {
        let xml = "<xml><ToUserName>gh_7f083739789a</ToUserName><FromUserName><![CDATA[o6_bmjrPTlm6_2sgVt7hMZOPfL2M]]></FromUserName><CreateTime>1714037700</CreateTime><MsgType>text</MsgType><Content>fish &amp; chips &#x4F60;&#22909;</Content><MsgId>24534187209384756</MsgId><MsgDataId/><Idx></Idx></xml>";
        let message = parse_message(xml).unwrap();
        assert_eq!(message.to_user_name, "gh_7f083739789a");
        assert_eq!(message.msg_type, "text");
        assert_eq!(message.content.as_deref(), Some("fish & chips 你好"));
        assert_eq!(message.msg_id, Some(24534187209384756));
        assert_eq!(message.dedup_key(), "msg:24534187209384756");
    }

    #[test]
    fn unknown_and_nested_elements_are_ignored() {
        let xml = "<?xml version=\"1.0\"?><xml><!-- a comment --><ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType><Event>nested</Event></ScanCodeInfo><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[scancode_push]]></Event></xml>";
        let message = parse_message(xml).unwrap();
        assert_eq!(message.event.as_deref(), Some("scancode_push"));
    }

    #[test]
    fn bad_bodies_are_refused() {
        let without_from = "<xml><ToUserName>gh</ToUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>";
        assert_eq!(
            parse_message(without_from),
            Err(CallbackError::MissingElement("FromUserName"))
        );
        let bad_time = "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>soon</CreateTime><MsgType>event</MsgType></xml>";
        assert_eq!(
            parse_message(bad_time),
            Err(CallbackError::InvalidNumber {
                element: "CreateTime",
                value: "soon".into()
            })
        );
        let twice = "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><FromUserName>o2</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>";
        assert!(matches!(parse_message(twice), Err(CallbackError::Xml(_))));
        for broken in [
            "",
            "not xml",
            "<xml><ToUserName>gh</FromUserName></xml>",
            "<xml><ToUserName>gh</ToUserName>",
            "<root><ToUserName>gh</ToUserName></root>",
            "<xml><Content>&bogus;</Content></xml>",
        ] {
            assert!(
                matches!(parse_message(broken), Err(CallbackError::Xml(_))),
                "{broken:?}"
            );
        }
        assert_eq!(
            parse_message("<xml/>"),
            Err(CallbackError::MissingElement("ToUserName"))
        );
    }
}
