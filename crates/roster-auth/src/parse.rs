//! [`DigestResponse`]: parsing (and printing) one `Digest` credentials value
//! (RFC 2617 §3.2.2, RFC 3261 §25.1 grammar for tokens and quoted strings).

use std::fmt;

use crate::algorithm::Algorithm;
use crate::error::AuthError;

/// Longest `Authorization` value parsed, in bytes.
/// A full `Digest` value with a long SIP URI is a few hundred bytes; 8 KiB matches a generous
/// single header line and bounds the parse work per request.
pub const AUTHORIZATION_LENGTH_MAX: usize = 8 * 1024;

/// Most parameters accepted in one value.
/// RFC 2617 and RFC 7616 define 13; the margin leaves room for extensions, which are ignored.
pub const PARAMETERS_MAX: usize = 32;

/// The parameters this crate reads; any other parameter is ignored.
const KNOWN_PARAMETERS: [&str; 10] = [
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "opaque",
    "qop",
    "nc",
];

/// Parsed `Digest` credentials (RFC 2617 §3.2.2), values unescaped.
///
/// `Display` prints it back as an `Authorization` value, so clients and tests can build headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestResponse {
    /// `username`, as sent.
    pub username: String,
    /// `realm`, as sent.
    pub realm: String,
    /// `nonce`, as sent.
    pub nonce: String,
    /// `uri` (the digest-uri; not compared with the Request-URI here).
    pub uri: String,
    /// `response`, the request-digest in hex.
    pub response: String,
    /// `algorithm`; `None` when absent, which means MD5 (RFC 2617).
    pub algorithm: Option<Algorithm>,
    /// `cnonce`; present whenever `qop` is.
    pub cnonce: Option<String>,
    /// `opaque`, as sent.
    pub opaque: Option<String>,
    /// `qop`, as sent.
    pub qop: Option<String>,
    /// `nc`, decoded from its 8 hex digits; present whenever `qop` is.
    pub nc: Option<u32>,
}

impl DigestResponse {
    /// Parses one `Authorization` (or `Proxy-Authorization`) value with the `Digest` scheme.
    ///
    /// Parameter names ignore case; unknown parameters are ignored; a known parameter given twice,
    /// a missing `username`, `realm`, `nonce`, `uri` or `response`, or `qop` without `cnonce` and
    /// `nc` is an error.
    /// An algorithm other than `MD5` or `SHA-256` is [`AuthError::UnsupportedAlgorithm`], reported
    /// only once the rest of the value is known to be well formed.
    pub fn parse(value: &str) -> Result<DigestResponse, AuthError> {
        if value.len() > AUTHORIZATION_LENGTH_MAX {
            return Err(AuthError::TooLong);
        }
        let mut cursor = Cursor::new(value);
        cursor.expect_digest_scheme()?;
        let mut fields = RawFields::default();
        let mut count = 0;
        while let Some((name, parameter_value)) = cursor.next_parameter()? {
            count += 1;
            if count > PARAMETERS_MAX {
                return Err(AuthError::TooManyParameters);
            }
            fields.set(name, parameter_value)?;
        }
        fields.finish()
    }
}

impl fmt::Display for DigestResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest ")?;
        write_quoted(f, "username", &self.username)?;
        f.write_str(", ")?;
        write_quoted(f, "realm", &self.realm)?;
        f.write_str(", ")?;
        write_quoted(f, "nonce", &self.nonce)?;
        f.write_str(", ")?;
        write_quoted(f, "uri", &self.uri)?;
        f.write_str(", ")?;
        write_quoted(f, "response", &self.response)?;
        if let Some(algorithm) = self.algorithm {
            write!(f, ", algorithm={algorithm}")?;
        }
        if let Some(cnonce) = &self.cnonce {
            f.write_str(", ")?;
            write_quoted(f, "cnonce", cnonce)?;
        }
        if let Some(opaque) = &self.opaque {
            f.write_str(", ")?;
            write_quoted(f, "opaque", opaque)?;
        }
        if let Some(qop) = &self.qop {
            f.write_str(", ")?;
            write_token_or_quoted(f, "qop", qop)?;
        }
        if let Some(nc) = self.nc {
            write!(f, ", nc={nc:08x}")?;
        }
        Ok(())
    }
}

/// The algorithm a `Digest` credentials value names, if any, read leniently: the value need
/// not be complete (IMS-style initial credentials carry an empty nonce and response) and
/// parameters after a syntax error are ignored. A registrar uses it to challenge a client with
/// the algorithm the client asks for.
pub fn requested_algorithm(value: &str) -> Option<Algorithm> {
    if value.len() > AUTHORIZATION_LENGTH_MAX {
        return None;
    }
    let mut cursor = Cursor::new(value);
    cursor.expect_digest_scheme().ok()?;
    for _ in 0..PARAMETERS_MAX {
        let (name, parameter_value) = cursor.next_parameter().ok()??;
        if name.eq_ignore_ascii_case("algorithm") {
            return parameter_value.parse().ok();
        }
    }
    None
}

/// The known parameters' raw values, indexed like [`KNOWN_PARAMETERS`].
#[derive(Default)]
struct RawFields([Option<String>; KNOWN_PARAMETERS.len()]);

impl RawFields {
    fn set(&mut self, name: &str, value: String) -> Result<(), AuthError> {
        let Some(index) = KNOWN_PARAMETERS
            .iter()
            .position(|known| known.eq_ignore_ascii_case(name))
        else {
            return Ok(());
        };
        let slot = &mut self.0[index];
        if slot.is_some() {
            return Err(AuthError::DuplicateParameter(KNOWN_PARAMETERS[index]));
        }
        *slot = Some(value);
        Ok(())
    }

    fn take(&mut self, name: &'static str) -> Option<String> {
        let index = KNOWN_PARAMETERS.iter().position(|known| *known == name)?;
        self.0[index].take()
    }

    fn require(&mut self, name: &'static str) -> Result<String, AuthError> {
        self.take(name).ok_or(AuthError::MissingParameter(name))
    }

    fn finish(mut self) -> Result<DigestResponse, AuthError> {
        let username = self.require("username")?;
        let realm = self.require("realm")?;
        let nonce = self.require("nonce")?;
        let uri = self.require("uri")?;
        let response = self.require("response")?;
        let cnonce = self.take("cnonce");
        let opaque = self.take("opaque");
        let qop = self.take("qop");
        let nc = self
            .take("nc")
            .as_deref()
            .map(parse_nonce_count)
            .transpose()?;
        if qop.is_some() && cnonce.is_none() {
            return Err(AuthError::MissingParameter("cnonce"));
        }
        if qop.is_some() && nc.is_none() {
            return Err(AuthError::MissingParameter("nc"));
        }
        // Last, so that a broken header is reported as broken rather than as unsupported.
        let algorithm = self.take("algorithm").map(|a| a.parse()).transpose()?;
        Ok(DigestResponse {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
        })
    }
}

/// nc-value = 8LHEX (RFC 2617 §3.2.2); uppercase hex digits are tolerated.
fn parse_nonce_count(text: &str) -> Result<u32, AuthError> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::BadNonceCount);
    }
    u32::from_str_radix(text, 16).map_err(|_| AuthError::BadNonceCount)
}

/// A position in the header value; it only ever stops on a character boundary.
pub(crate) struct Cursor<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub(crate) fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, position: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn syntax_error(&self, expected: &'static str) -> AuthError {
        AuthError::Syntax {
            position: self.position,
            expected,
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.position += 1;
        }
    }

    /// Advances over ASCII bytes matching `accept`; the result is a slice on char boundaries
    /// because `accept` only matches ASCII.
    fn take_while(&mut self, accept: fn(u8) -> bool) -> &'a str {
        let start = self.position;
        while self.peek().is_some_and(|b| b.is_ascii() && accept(b)) {
            self.position += 1;
        }
        self.text.get(start..self.position).unwrap_or_default()
    }

    pub(crate) fn expect_digest_scheme(&mut self) -> Result<(), AuthError> {
        self.skip_whitespace();
        let scheme = self.take_while(is_token_byte);
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::NotDigest);
        }
        match self.peek() {
            None | Some(b' ' | b'\t') => Ok(()),
            Some(_) => Err(self.syntax_error("whitespace after Digest")),
        }
    }

    /// The next `name=value` pair, skipping empty list elements; `None` at the end.
    pub(crate) fn next_parameter(&mut self) -> Result<Option<(&'a str, String)>, AuthError> {
        loop {
            self.skip_whitespace();
            match self.peek() {
                None => return Ok(None),
                Some(b',') => self.position += 1,
                Some(_) => break,
            }
        }
        let name = self.take_while(is_token_byte);
        if name.is_empty() {
            return Err(self.syntax_error("parameter name"));
        }
        self.skip_whitespace();
        if self.peek() != Some(b'=') {
            return Err(self.syntax_error("'='"));
        }
        self.position += 1;
        self.skip_whitespace();
        let value = self.parameter_value()?;
        self.skip_whitespace();
        match self.peek() {
            None => {}
            Some(b',') => self.position += 1,
            Some(_) => return Err(self.syntax_error("',' or end of value")),
        }
        Ok(Some((name, value)))
    }

    fn parameter_value(&mut self) -> Result<String, AuthError> {
        if self.peek() == Some(b'"') {
            return self.quoted_string();
        }
        let token = self.take_while(is_token_value_byte);
        if token.is_empty() {
            return Err(self.syntax_error("parameter value"));
        }
        Ok(token.to_owned())
    }

    /// Reads `"..."` with `\` escaping the next character; control characters other than tab
    /// are refused, escaped or not (found by fuzzing: an escaped one did not print back).
    fn quoted_string(&mut self) -> Result<String, AuthError> {
        let start = self.position + 1;
        let rest = self.text.get(start..).unwrap_or_default();
        let mut value = String::new();
        let mut escaped = false;
        for (offset, character) in rest.char_indices() {
            if escaped && character.is_ascii_control() && character != '\t' {
                // quoted-pair is "\" (HTAB / SP / VCHAR / obs-text) (RFC 7230 §3.2.6).
                self.position = start + offset;
                return Err(self.syntax_error("quoted text without control characters"));
            } else if escaped {
                value.push(character);
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                self.position = start + offset + 1;
                return Ok(value);
            } else if character.is_ascii_control() && character != '\t' {
                self.position = start + offset;
                return Err(self.syntax_error("quoted text without control characters"));
            } else {
                value.push(character);
            }
        }
        Err(AuthError::UnterminatedQuote)
    }
}

/// token characters of RFC 3261 §25.1.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte)
}

/// Unquoted values: tokens, plus the `/ : @ = ?` seen in lenient clients' unquoted values.
fn is_token_value_byte(byte: u8) -> bool {
    is_token_byte(byte) || b"/:@=?".contains(&byte)
}

fn write_quoted(f: &mut fmt::Formatter<'_>, name: &str, value: &str) -> fmt::Result {
    write!(f, "{name}=\"")?;
    for character in value.chars() {
        if matches!(character, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{character}")?;
    }
    f.write_str("\"")
}

fn write_token_or_quoted(f: &mut fmt::Formatter<'_>, name: &str, value: &str) -> fmt::Result {
    if !value.is_empty() && value.bytes().all(is_token_byte) {
        write!(f, "{name}={value}")
    } else {
        write_quoted(f, name, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC2617_EXAMPLE: &str = r#"Digest username="Mufasa",
 realm="testrealm@host.com",
 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
 uri="/dir/index.html",
 qop=auth,
 nc=00000001,
 cnonce="0a4f113b",
 response="6629fae49393a05397450978507c4ef1",
 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

    fn unfolded(text: &str) -> String {
        text.replace('\n', "")
    }

    #[test]
    fn parses_rfc2617_example() {
        let parsed = DigestResponse::parse(&unfolded(RFC2617_EXAMPLE));
        let expected = DigestResponse {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            response: "6629fae49393a05397450978507c4ef1".into(),
            algorithm: None,
            cnonce: Some("0a4f113b".into()),
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
            qop: Some("auth".into()),
            nc: Some(1),
        };
        assert_eq!(parsed, Ok(expected));
    }

    #[test]
    fn display_round_trips() {
        let parsed = DigestResponse::parse(&unfolded(RFC2617_EXAMPLE));
        let Ok(mut parsed) = parsed else {
            panic!("example must parse: {parsed:?}");
        };
        parsed.username = r#"a "quoted" \ name"#.into();
        parsed.algorithm = Some(Algorithm::Sha256);
        let printed = parsed.to_string();
        assert_eq!(DigestResponse::parse(&printed), Ok(parsed));
    }

    #[test]
    fn unescapes_quoted_pairs_and_ignores_case_of_names() {
        let value = r#"digest USERNAME="a\"b\\c", Realm=r, nonce="n", uri="u", response="x", Extra="ignored""#;
        let parsed = DigestResponse::parse(value).map(|r| (r.username, r.realm));
        assert_eq!(parsed, Ok((r#"a"b\c"#.to_owned(), "r".to_owned())));
    }

    #[test]
    fn accepts_quoted_qop_and_empty_list_elements() {
        let value = r#"Digest ,username="a",, realm="r" , nonce="n",uri="u",response="x",qop="auth",nc=0000000A,cnonce="c","#;
        let parsed = DigestResponse::parse(value).map(|r| (r.qop, r.nc));
        assert_eq!(parsed, Ok((Some("auth".to_owned()), Some(10))));
    }

    #[test]
    fn refuses_malformed_values() {
        let base = r#"username="a", realm="r", nonce="n", uri="u""#;
        let cases: [(String, AuthError); 10] = [
            (
                format!("Digest {base}"),
                AuthError::MissingParameter("response"),
            ),
            (
                format!(r#"Digest {base}, response="x"#),
                AuthError::UnterminatedQuote,
            ),
            (
                format!(r#"Digest {base}, response="x", qop=auth, cnonce="c", nc=0000001g"#),
                AuthError::BadNonceCount,
            ),
            (
                format!(r#"Digest {base}, response="x", qop=auth, cnonce="c", nc=1"#),
                AuthError::BadNonceCount,
            ),
            (
                format!(r#"Digest {base}, response="x", realm="r""#),
                AuthError::DuplicateParameter("realm"),
            ),
            (
                format!(r#"Digest {base}, response="x", qop=auth, nc=00000001"#),
                AuthError::MissingParameter("cnonce"),
            ),
            (
                format!(r#"Basic {base}, response="x""#),
                AuthError::NotDigest,
            ),
            (
                format!(r#"Digest {base} response="x""#),
                AuthError::Syntax {
                    position: 51,
                    expected: "',' or end of value",
                },
            ),
            (
                format!(r#"Digest {base}, response"#),
                AuthError::Syntax {
                    position: 60,
                    expected: "'='",
                },
            ),
            (
                format!("Digest {base}, response=\"x\ny\""),
                AuthError::Syntax {
                    position: 63,
                    expected: "quoted text without control characters",
                },
            ),
        ];
        for (value, error) in cases {
            assert_eq!(DigestResponse::parse(&value), Err(error), "{value}");
        }
    }

    #[test]
    fn unsupported_algorithm_is_reported_after_syntax() {
        let valid = r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", algorithm=MD5-sess"#;
        assert_eq!(
            DigestResponse::parse(valid),
            Err(AuthError::UnsupportedAlgorithm("MD5-sess".into()))
        );
        let broken = r#"Digest username="a", realm="r", nonce="n", uri="u", algorithm=MD5-sess"#;
        assert_eq!(
            DigestResponse::parse(broken),
            Err(AuthError::MissingParameter("response"))
        );
    }

    #[test]
    fn escaped_control_characters_are_refused() {
        let value =
            "Digest username=\"a\\\u{1d}b\", realm=r, nonce=\"n\", uri=\"u\", response=\"x\"";
        assert!(matches!(
            DigestResponse::parse(value),
            Err(AuthError::Syntax { .. })
        ));
    }

    #[test]
    fn requested_algorithm_reads_incomplete_credentials() {
        let ims = r#"Digest username="u1", realm="example.com", nonce="", uri="sip:example.com", response="", algorithm=SHA-256"#;
        assert_eq!(requested_algorithm(ims), Some(Algorithm::Sha256));
        assert_eq!(
            requested_algorithm(r#"digest username="u1", ALGORITHM=md5"#),
            Some(Algorithm::Md5)
        );
        assert_eq!(requested_algorithm(r#"Digest username="u1""#), None);
        assert_eq!(requested_algorithm(r#"Digest algorithm=SHA-512-256"#), None);
        assert_eq!(requested_algorithm(r#"Basic algorithm=MD5"#), None);
        assert_eq!(
            requested_algorithm(r#"Digest username="u1" broken, algorithm=MD5"#),
            None
        );
    }

    #[test]
    fn bounds_length_and_parameter_count() {
        let long = format!(
            "Digest username=\"{}\"",
            "a".repeat(AUTHORIZATION_LENGTH_MAX)
        );
        assert_eq!(DigestResponse::parse(&long), Err(AuthError::TooLong));
        let many = format!("Digest {}", "x=1,".repeat(PARAMETERS_MAX + 1));
        assert_eq!(
            DigestResponse::parse(&many),
            Err(AuthError::TooManyParameters)
        );
    }
}
