//! Character classes (RFC 3261 §25.1) and the small scanners shared by the URI, name-addr and
//! Via parsers: quoted strings, generic parameters, delta-seconds and error excerpts.
//!
//! Every scanner walks its input once, left to right, with no recursion.

use crate::uri::Param;
use crate::{ERROR_EXCERPT_SIZE_MAX, PARAM_COUNT_MAX};

/// `token` characters: alphanumerics and `-.!%*_+` followed by backquote, quote and tilde.
#[inline]
pub(crate) const fn is_token_byte(byte: u8) -> bool {
    TOKEN_BYTES[byte as usize]
}

/// [`is_token_byte`] as a table: header names and parameters are scanned byte by byte.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let value = byte as u8;
        table[byte] = value.is_ascii_alphanumeric()
            || matches!(
                value,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        byte += 1;
    }
    table
};

/// A non-empty run of token characters.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_token_byte)
}

/// `unreserved` = alphanum / mark.
#[inline]
pub(crate) const fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Linear white space within one unfolded header value.
#[inline]
pub(crate) const fn is_lws(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// The index of the first `needle` in `haystack`, comparing eight bytes at a time.
pub(crate) fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    const LOW_BITS: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let pattern = LOW_BITS * u64::from(needle);
    let mut skipped = 0;
    for chunk in haystack.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // A byte of `differences` is zero where the chunk holds `needle`; this test is exact.
        let differences = u64::from_le_bytes(word) ^ pattern;
        if differences.wrapping_sub(LOW_BITS) & !differences & HIGH_BITS != 0 {
            break;
        }
        skipped += 8;
    }
    haystack[skipped..]
        .iter()
        .position(|&byte| byte == needle)
        .map(|index| skipped + index)
}

/// Trims spaces and tabs from both ends.
pub(crate) fn trim_lws(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// Trims spaces and tabs from the start.
pub(crate) fn trim_lws_start(text: &str) -> &str {
    text.trim_start_matches([' ', '\t'])
}

/// Checks that every `%` in `text` starts a `%HH` escape and every other byte satisfies `allowed`.
pub(crate) fn check_escaped(text: &str, allowed: fn(u8) -> bool) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let valid = bytes.get(index + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(index + 2).is_some_and(u8::is_ascii_hexdigit);
            if !valid {
                return Err(format!("bad %-escape in {}", excerpt(text)));
            }
            index += 3;
        } else if allowed(byte) {
            index += 1;
        } else {
            return Err(format!(
                "character {} not allowed in {}",
                describe_byte(byte),
                excerpt(text)
            ));
        }
    }
    Ok(())
}

/// Rewrites `%HH` escapes canonically: an escape of a byte for which `keep_plain` holds becomes
/// that byte, every other escape is written with upper-case hex digits. Other bytes are copied.
pub(crate) fn canonical_escapes(text: &str, keep_plain: fn(u8) -> bool) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = match (bytes[index], bytes.get(index + 1), bytes.get(index + 2)) {
            (b'%', Some(&high), Some(&low)) => hex_value(high).zip(hex_value(low)),
            _ => None,
        };
        match decoded {
            Some((high, low)) => {
                let byte = high * 16 + low;
                if byte != b'%' && keep_plain(byte) {
                    out.push(char::from(byte));
                } else {
                    push_escape(&mut out, byte);
                }
                index += 3;
            }
            None => {
                // Copy one whole character so multi-byte UTF-8 stays intact.
                let character = text[index..].chars().next().unwrap_or('\u{FFFD}');
                out.push(character);
                index += character.len_utf8().max(1);
            }
        }
    }
    out
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0F)]));
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Length in bytes of the quoted string that starts `text` (which must start with `"`),
/// both quotes included.
///
/// Accepts `qdtext` (any character but `"`, `\` and controls other than HT) and `quoted-pair`
/// (`\` followed by any byte but CR and LF).
pub(crate) fn quoted_string_len(text: &str) -> Result<usize, String> {
    let bytes = text.as_bytes();
    debug_assert_eq!(bytes.first(), Some(&b'"'));
    let mut index = 1;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => return Ok(index + 1),
            b'\\' => match bytes.get(index + 1) {
                Some(b'\r' | b'\n') => return Err("line break escaped in quoted string".into()),
                Some(_) => index += 2,
                None => break,
            },
            byte if is_control(byte) => {
                return Err(format!(
                    "unescaped control character {} in quoted string",
                    describe_byte(byte)
                ))
            }
            _ => index += 1,
        }
    }
    Err(format!("unterminated quoted string {}", excerpt(text)))
}

/// Control characters other than HT (which counts as white space).
#[inline]
pub(crate) const fn is_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7F
}

/// Removes the surrounding quotes and `\`-escapes of a quoted string; other text is returned as is.
pub(crate) fn unquote(text: &str) -> String {
    let inner = match text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(inner) if text.len() >= 2 => inner,
        _ => return text.to_string(),
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for character in inner.chars() {
        if escaped || character != '\\' {
            out.push(character);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

/// Writes `text` as the content of a quoted string: `"` and `\` and controls other than HT get a
/// `\`; CR and LF, which no quoted string can carry, become spaces.
pub(crate) fn write_quoted_content(out: &mut impl std::fmt::Write, text: &str) -> std::fmt::Result {
    for character in text.chars() {
        match character {
            '\r' | '\n' => out.write_char(' ')?,
            '"' | '\\' => {
                out.write_char('\\')?;
                out.write_char(character)?;
            }
            _ if character.is_ascii() && is_control(character as u8) => {
                out.write_char('\\')?;
                out.write_char(character)?;
            }
            _ => out.write_char(character)?,
        }
    }
    Ok(())
}

/// Characters of an unquoted generic-param value: `token`, `host` (including IPv6 references)
/// and the bare IPv6 addresses that `received` carries.
const fn is_param_value_byte(byte: u8) -> bool {
    is_token_byte(byte) || matches!(byte, b':' | b'[' | b']')
}

/// Parses `*( SEMI generic-param )` (RFC 3261 §25.1) and appends the parameters to `params`.
///
/// `text` is what follows a URI or sent-by; white space may surround `;` and `=`.
/// Names must be tokens; values are tokens, hosts or quoted strings, kept as written.
pub(crate) fn parse_generic_params(text: &str, params: &mut Vec<Param>) -> Result<(), String> {
    let mut rest = trim_lws_start(text);
    while !rest.is_empty() {
        let Some(after_semi) = rest.strip_prefix(';') else {
            return Err(format!("expected ';' before {}", excerpt(rest)));
        };
        if params.len() == PARAM_COUNT_MAX {
            return Err(format!("more than {PARAM_COUNT_MAX} parameters"));
        }
        let after_semi = trim_lws_start(after_semi);
        let name_len = after_semi
            .bytes()
            .position(|byte| !is_token_byte(byte))
            .unwrap_or(after_semi.len());
        if name_len == 0 {
            return Err(format!("missing parameter name at {}", excerpt(after_semi)));
        }
        let name = &after_semi[..name_len];
        let after_name = trim_lws_start(&after_semi[name_len..]);
        let (value, after_value) = match after_name.strip_prefix('=') {
            Some(after_equal) => {
                let (value, after_value) = split_param_value(trim_lws_start(after_equal))?;
                (Some(value.to_string()), after_value)
            }
            None => (None, after_name),
        };
        params.push(Param {
            name: name.to_string(),
            value,
        });
        rest = trim_lws_start(after_value);
    }
    Ok(())
}

/// Splits a generic-param value off the front of `text`.
fn split_param_value(text: &str) -> Result<(&str, &str), String> {
    let value_len = if text.starts_with('"') {
        quoted_string_len(text)?
    } else {
        text.bytes()
            .position(|byte| !is_param_value_byte(byte))
            .unwrap_or(text.len())
    };
    if value_len == 0 {
        return Err(format!("missing parameter value at {}", excerpt(text)));
    }
    Ok(text.split_at(value_len))
}

/// Parses `delta-seconds` (1*DIGIT); values above `u32::MAX` saturate.
pub(crate) fn parse_delta_seconds(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let value = text.bytes().fold(0u32, |value, digit| {
        value
            .saturating_mul(10)
            .saturating_add(u32::from(digit - b'0'))
    });
    Some(value)
}

/// Parses a port: one to five digits, at most 65535.
pub(crate) fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("invalid port {}", excerpt(text)));
    }
    text.parse::<u16>()
        .map_err(|_| format!("port {} out of range", excerpt(text)))
}

/// Checks a host: a hostname or IPv4 address (alphanumerics, `-`, `.`), or an IPv6 reference
/// (`[` IPv6 address `]`).
pub(crate) fn check_host(host: &str) -> Result<(), String> {
    if let Some(inner) = host.strip_prefix('[') {
        let address = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unterminated IPv6 reference {}", excerpt(host)))?;
        return address
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("invalid IPv6 address {}", excerpt(host)));
    }
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.');
    if valid {
        Ok(())
    } else if host.is_empty() {
        Err("missing host".into())
    } else {
        Err(format!("invalid host {}", excerpt(host)))
    }
}

/// Lower-cases a host; an IPv6 reference is rewritten in its canonical text form.
pub(crate) fn canonical_host(host: &str) -> String {
    let address = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok());
    match address {
        Some(address) => format!("[{address}]"),
        None => host.to_ascii_lowercase(),
    }
}

/// The IP address in a host, if the host is an IPv4 address or an IPv6 reference.
pub(crate) fn host_ip(host: &str) -> Option<std::net::IpAddr> {
    match host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
    {
        Some(inner) => inner.parse::<std::net::Ipv6Addr>().ok().map(Into::into),
        None => host.parse::<std::net::Ipv4Addr>().ok().map(Into::into),
    }
}

/// Peer text for an error message: quoted, at most [`ERROR_EXCERPT_SIZE_MAX`] bytes, control
/// characters replaced by `?`, so that the message fits a reason phrase.
pub(crate) fn excerpt(text: &str) -> String {
    let mut end = text.len().min(ERROR_EXCERPT_SIZE_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 5);
    out.push('"');
    out.extend(text[..end].chars().map(|character| {
        if character.is_control() {
            '?'
        } else {
            character
        }
    }));
    out.push('"');
    if end < text.len() {
        out.push_str("...");
    }
    out
}

/// Names a byte for an error message: printable ASCII as `'c'`, anything else as hex.
pub(crate) fn describe_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", char::from(byte))
    } else {
        format!("0x{byte:02X}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_string_length_handles_escapes() {
        assert_eq!(quoted_string_len(r#""a\"b" rest"#), Ok(6));
        assert_eq!(quoted_string_len(r#""""#), Ok(2));
        assert!(quoted_string_len(r#""abc"#).is_err());
        assert!(quoted_string_len(r#""abc\"#).is_err());
        assert!(quoted_string_len("\"a\u{1}b\"").is_err());
        assert_eq!(quoted_string_len("\"a\\\u{1}b\""), Ok(6));
    }

    #[test]
    fn unquote_removes_escapes() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(unquote("plain"), "plain");
        assert_eq!(unquote("\""), "\"");
    }

    #[test]
    fn generic_params_allow_white_space() {
        let mut params = Vec::new();
        parse_generic_params(" ; tag = 1918181833n ;lr; q=0.5;x=\"a;b\"", &mut params).unwrap();
        let names: Vec<_> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["tag", "lr", "q", "x"]);
        assert_eq!(params[0].value.as_deref(), Some("1918181833n"));
        assert_eq!(params[1].value, None);
        assert_eq!(params[3].value.as_deref(), Some("\"a;b\""));
    }

    #[test]
    fn generic_params_reject_garbage() {
        for text in [";", ";a=", "x", ";a=\"open", ";a b", ";=b", ";a=<b>"] {
            let mut params = Vec::new();
            assert!(parse_generic_params(text, &mut params).is_err(), "{text}");
        }
    }

    #[test]
    fn generic_params_are_bounded() {
        let text = ";a".repeat(PARAM_COUNT_MAX + 1);
        let mut params = Vec::new();
        assert!(parse_generic_params(&text, &mut params).is_err());
        assert_eq!(params.len(), PARAM_COUNT_MAX);
    }

    #[test]
    fn delta_seconds_saturate() {
        assert_eq!(parse_delta_seconds("0068"), Some(68));
        assert_eq!(parse_delta_seconds("99999999999999999999"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("-1"), None);
        assert_eq!(parse_delta_seconds(""), None);
    }

    #[test]
    fn canonical_escapes_decode_only_safe_bytes() {
        assert_eq!(
            canonical_escapes("%61lice%3a%00", is_unreserved),
            "alice%3A%00"
        );
        assert_eq!(canonical_escapes("%zz%4", is_unreserved), "%zz%4");
    }

    #[test]
    fn excerpt_is_bounded_and_printable() {
        let long = "é".repeat(100);
        assert!(excerpt(&long).len() <= ERROR_EXCERPT_SIZE_MAX + 5);
        assert_eq!(excerpt("a\r\nb"), "\"a??b\"");
    }

    #[test]
    fn token_table() {
        let tokens: String = (0u8..=255)
            .filter(|&byte| is_token_byte(byte))
            .map(char::from)
            .collect();
        assert_eq!(
            tokens,
            "!%'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_`abcdefghijklmnopqrstuvwxyz~"
        );
    }

    #[test]
    fn find_byte_matches_position() {
        let text = b"0123456789abcdef\nxyz\n";
        for start in 0..text.len() {
            for needle in [b'\n', b'a', b'z', b'0', 0] {
                let expected = text[start..].iter().position(|&b| b == needle);
                assert_eq!(find_byte(&text[start..], needle), expected);
            }
        }
        assert_eq!(find_byte(b"", b'x'), None);
        assert_eq!(
            find_byte(&[0x80, 0x81, 0xFF, 0x0A, 0, 0, 0, 0, 0x0A], 0x0A),
            Some(3)
        );
    }

    #[test]
    fn hosts() {
        assert!(check_host("example.com").is_ok());
        assert!(check_host("[::1]").is_ok());
        assert!(check_host("[2001:db8::10:5070]").is_ok());
        assert!(check_host("[::1").is_err());
        assert!(check_host("[zz]").is_err());
        assert!(check_host("").is_err());
        assert!(check_host("a b").is_err());
        assert_eq!(canonical_host("[2001:DB8:0::1]"), "[2001:db8::1]");
        assert_eq!(canonical_host("ExAmple.COM"), "example.com");
    }
}
