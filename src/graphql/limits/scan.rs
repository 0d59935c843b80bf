//! The guard that reads a document before any parser does.
//!
//! The GraphQL parser is recursive: a few kilobytes of `[[[[…` nested a
//! couple of thousand levels deep overflow its stack and abort the process.
//! So the text is first read here by a lexer that keeps no recursion and
//! takes one pass: it counts bytes, tokens and the nesting of `{`, `[` and
//! `(`, and stops at the first limit passed. Strings, block strings and
//! comments are skipped as GraphQL defines them, so brackets inside them do
//! not count.
//!
//! The same pass refuses an input object value that names a field twice
//! (`{a: 1, a: 2}`), which GraphQL forbids and which the parser would
//! otherwise keep silently, the last one winning.

use std::collections::HashSet;

use super::Refusal;

/// The limits the guard enforces.
#[derive(Debug, Clone, Copy)]
pub struct TextLimits {
    /// Largest document, in bytes.
    pub max_bytes: usize,
    /// Most tokens.
    pub max_tokens: usize,
    /// Deepest nesting of `{`, `[` and `(`.
    pub max_nesting: usize,
}

/// The longest name (field, alias, argument, fragment, variable) accepted,
/// in bytes: an alias is copied into the response once per row it is
/// resolved for, so a long one would multiply a small document into a
/// huge response.
pub const MAX_NAME_BYTES: usize = 128;

/// What an opening bracket opened.
enum Frame<'a> {
    /// A selection set, or anything outside values.
    Selection,
    /// Arguments, variable definitions or a list: values may follow.
    Values,
    /// An input object value, with the field names seen so far.
    Object(HashSet<&'a str>),
}

/// Reads `text` once; refuses it when it passes a limit of `limits` or an
/// input object in it names a field twice.
pub fn scan(text: &str, limits: TextLimits) -> Result<(), Refusal> {
    let bytes = text.as_bytes();
    if bytes.len() > limits.max_bytes {
        return Err(Refusal::limit(format!(
            "the document is larger than {} bytes (UNION360_MAX_DOCUMENT_BYTES)",
            limits.max_bytes
        )));
    }
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut tokens = 0usize;
    // The previous token, when it was a name (an input field's name when a
    // `:` follows it inside an object value).
    let mut last_name: Option<&str> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // Ignored tokens: white space, line terminators, commas, comments, BOM.
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = line_end(bytes, i);
                continue;
            }
            _ if bytes[i..].starts_with("\u{feff}".as_bytes()) => {
                i += 3;
                continue;
            }
            _ => {}
        }
        tokens += 1;
        if tokens > limits.max_tokens {
            return Err(Refusal::limit(format!(
                "the document has more than {} tokens (UNION360_MAX_TOKENS)",
                limits.max_tokens
            )));
        }
        let mut name = None;
        match b {
            b'"' if bytes[i..].starts_with(b"\"\"\"") => i = block_string_end(bytes, i + 3),
            b'"' => i = string_end(bytes, i + 1),
            b'{' | b'[' | b'(' => {
                if stack.len() >= limits.max_nesting {
                    return Err(Refusal::limit(format!(
                        "the document nests braces, brackets and parentheses deeper than {} (UNION360_MAX_NESTING)",
                        limits.max_nesting
                    )));
                }
                let in_values = matches!(stack.last(), Some(Frame::Values | Frame::Object(_)));
                stack.push(match b {
                    b'{' if in_values => Frame::Object(HashSet::new()),
                    b'{' => Frame::Selection,
                    _ => Frame::Values,
                });
                i += 1;
            }
            b'}' | b']' | b')' => {
                // A mismatched bracket is the parser's to report.
                stack.pop();
                i += 1;
            }
            b':' => {
                if let (Some(field), Some(Frame::Object(seen))) = (last_name, stack.last_mut())
                    && !seen.insert(field)
                {
                    return Err(Refusal::invalid(format!(
                        "an input object gives the field `{field}` more than once"
                    )));
                }
                i += 1;
            }
            b'_' | b'A'..=b'Z' | b'a'..=b'z' => {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                if i - start > MAX_NAME_BYTES {
                    return Err(Refusal::limit(format!(
                        "a name in the document is longer than {MAX_NAME_BYTES} bytes"
                    )));
                }
                name = text.get(start..i);
            }
            b'-' | b'0'..=b'9' => i = number_end(bytes, i + 1),
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            // Any other character is one token (the parser refuses it); a
            // multi-byte character is stepped over whole.
            _ => {
                i += text
                    .get(i..)
                    .and_then(|rest| rest.chars().next())
                    .map_or(1, char::len_utf8);
            }
        }
        last_name = name;
    }
    Ok(())
}

/// Where the line that starts a comment at `i` ends.
fn line_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
        i += 1;
    }
    i
}

/// Where a string whose content starts at `i` ends (after its closing quote).
/// A string cannot span lines: an unterminated one ends at the line's end,
/// and the parser reports it.
fn string_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'\n' | b'\r' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Where a block string whose content starts at `i` ends (after its closing
/// `"""`); `\"""` inside it is an escaped delimiter.
fn block_string_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\\\"\"\"") {
            i += 4;
        } else if bytes[i..].starts_with(b"\"\"\"") {
            return i + 3;
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Where a number whose first character is before `i` ends: digits, a
/// fraction, an exponent with its sign (letters run on; the parser judges).
fn number_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' | b'.' | b'_' | b'a'..=b'z' | b'A'..=b'Z' => i += 1,
            b'+' | b'-' if matches!(bytes[i - 1], b'e' | b'E') => i += 1,
            _ => break,
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const LIMITS: TextLimits = TextLimits {
        max_bytes: 10_000,
        max_tokens: 1_000,
        max_nesting: 8,
    };

    fn refusal(text: &str, limits: TextLimits) -> Option<(ErrorCode, String)> {
        scan(text, limits).err().map(|r| (r.code, r.message))
    }

    fn nested(depth: usize) -> String {
        format!("{{a(b: {}{})}}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn ordinary_documents_pass() {
        for text in [
            "{ people(first: 10) { nodes { unionid accounts { openid app { name } } } } }",
            "query Q($f: Int = 3, $x: [[Int!]]) @a { ...F } fragment F on Query { a: b @c(d: {e: [1, -2.5e+3]}) }",
            "mutation { upsertAccounts(input: [{appid: \"wx1\", openid: \"o\"}, {appid: \"wx1\", openid: \"p\"}]) { created } }",
            "\u{feff}{ a }",
            "",
        ] {
            assert_eq!(refusal(text, LIMITS), None, "{text}");
        }
    }

    #[test]
    fn long_names_are_refused() {
        let name = "a".repeat(MAX_NAME_BYTES);
        assert_eq!(refusal(&format!("{{ {name}: b }}"), LIMITS), None);
        let (code, message) = refusal(&format!("{{ {name}a: b }}"), LIMITS).unwrap();
        assert_eq!(code, ErrorCode::LimitExceeded);
        assert!(message.contains("longer than 128 bytes"), "{message}");
        // Strings are values, not names.
        let text = format!("{{ a(b: \"{}\") }}", "x".repeat(1000));
        assert_eq!(refusal(&text, LIMITS), None);
    }

    #[test]
    fn nesting_is_bounded_whatever_the_bracket() {
        // `{a(b: [[…]])}` nests 2 + depth levels.
        assert_eq!(refusal(&nested(6), LIMITS), None);
        let (code, message) = refusal(&nested(7), LIMITS).unwrap();
        assert_eq!(code, ErrorCode::LimitExceeded);
        assert!(message.contains("deeper than 8"), "{message}");
        assert!(refusal(&"{".repeat(9), LIMITS).is_some());
        assert!(refusal(&"(".repeat(9), LIMITS).is_some());
        // The shape of the attack that aborted the process: refused, at any size.
        let big = nested(200_000);
        let limits = TextLimits {
            max_bytes: usize::MAX,
            max_tokens: usize::MAX,
            ..LIMITS
        };
        assert_eq!(refusal(&big, limits).unwrap().0, ErrorCode::LimitExceeded);
    }

    #[test]
    fn closed_brackets_free_their_level() {
        let siblings = format!("{{ {} }}", "a(b: [[[[1]]]]) ".repeat(50));
        assert_eq!(refusal(&siblings, LIMITS), None);
    }

    #[test]
    fn brackets_in_strings_block_strings_and_comments_do_not_count() {
        let deep = "[".repeat(50);
        for text in [
            format!("{{ a(b: \"{deep}\") }}"),
            format!("{{ a(b: \"\\\"{deep}\") }}"),
            format!("{{ a(b: \"\"\"\n{deep}\n\"\"\") }}"),
            format!("{{ a(b: \"\"\" \\\"\"\" {deep} \"\"\") }}"),
            format!("# {deep}\n{{ a }}"),
            format!("{{ a # {deep}\r b }}"),
        ] {
            assert_eq!(refusal(&text, LIMITS), None, "{text}");
        }
    }

    #[test]
    fn what_ends_a_string_is_not_hidden_from_the_count() {
        let deep = "[".repeat(50);
        // A string ends at its quote, and at the end of its line.
        assert!(refusal(&format!("{{ a(b: \"x\" c: {deep}) }}"), LIMITS).is_some());
        assert!(refusal(&format!("{{ a(b: \"x\n c: {deep}) }}"), LIMITS).is_some());
        // A block string ends at its first unescaped `"""`.
        assert!(refusal(&format!("{{ a(b: \"\"\"x\"\"\" c: {deep}) }}"), LIMITS).is_some());
    }

    #[test]
    fn size_and_tokens_are_bounded() {
        let (code, message) = refusal(&"a ".repeat(6_000), LIMITS).unwrap();
        assert_eq!(code, ErrorCode::LimitExceeded);
        assert!(message.contains("10000 bytes"), "{message}");
        let (code, message) = refusal(&"a ".repeat(1_001), LIMITS).unwrap();
        assert_eq!(code, ErrorCode::LimitExceeded);
        assert!(message.contains("1000 tokens"), "{message}");
        assert_eq!(refusal(&"a ".repeat(1_000), LIMITS), None);
        // Ignored tokens are not tokens; strings and numbers are one each.
        assert_eq!(refusal(&",".repeat(5_000), LIMITS), None);
        assert_eq!(refusal(&"\"a b c\" -1.5e-3 ".repeat(500), LIMITS), None);
    }

    #[test]
    fn an_input_field_given_twice_is_refused() {
        for text in [
            "{ a(b: {x: 1, x: 2}) }",
            "{ a(b: {x: 1 y: {z: 1} x: 2}) }",
            "{ a(b: [{y: 1}, {x: 1, x: 2}]) }",
            "{ a(b: {y: {x: 1, x: 2}}) }",
            "query($v: In = {x: 1, x: 2}) { a(b: $v) }",
            "{ a @d(b: {x: 1, x: 2}) }",
        ] {
            let (code, message) = refusal(text, LIMITS).unwrap();
            assert_eq!(code, ErrorCode::GraphqlValidationFailed, "{text}");
            assert!(message.contains("`x`"), "{message}");
        }
        for text in [
            "{ a(b: {x: 1, y: {x: 2}}) }",
            "{ a(b: [{x: 1}, {x: 2}]) }",
            "{ x: a(x: 1) { x: b } x: c }",
            "{ a(b: {x: X, y: Y}) }",
            "query($x: Int, $y: In = {x: 1}) { a(x: $x) }",
        ] {
            assert_eq!(refusal(text, LIMITS), None, "{text}");
        }
    }

    #[test]
    fn any_text_is_read_to_its_end_without_panicking() {
        for text in [
            "\"",
            "\"\"\"",
            "\"\\",
            "\"\"\"\\",
            "-",
            "1e",
            "1e-",
            "..",
            "é{",
            "\u{0}",
            "}}}]])",
            "{ a(b: \"é\\u00e9\") }",
        ] {
            let _ = scan(text, LIMITS);
        }
    }
}
