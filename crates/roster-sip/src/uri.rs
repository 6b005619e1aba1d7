//! SIP and SIPS URIs (RFC 3261 §19.1): [`Uri`], [`Scheme`] and the [`Param`] they share with
//! header fields.
//!
//! Components are kept as written (escapes included) so that `Display` round-trips;
//! [`Uri::aor`] and [`Uri::comparison_key`] give the canonical forms used as keys.

use std::fmt;

use crate::error::HeaderError;
use crate::scan::{
    canonical_escapes, canonical_host, check_escaped, check_host, excerpt, host_ip, is_unreserved,
    parse_port, unquote,
};
use crate::PARAM_COUNT_MAX;

/// The URI scheme: `sip` or `sips`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:` (TLS on every hop).
    Sips,
}

impl Scheme {
    /// The scheme name in lower case, without the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `name[=value]` parameter of a URI or a header field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The name as written.
    pub name: String,
    /// The value as written: quotes and escapes are kept. `None` for a bare `;name`.
    pub value: Option<String>,
}

impl Param {
    /// The value with surrounding quotes and `\`-escapes removed (unquoted values are returned
    /// as written).
    pub fn unquoted(&self) -> Option<String> {
        self.value.as_deref().map(unquote)
    }
}

/// A `sip:` or `sips:` URI (RFC 3261 §19.1).
///
/// Other schemes are a parse error ([`HeaderError::UnsupportedScheme`], answered with `416`).
/// `host` keeps the brackets of an IPv6 reference (`[::1]`); see [`Uri::host_ip`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    /// `sip` or `sips`.
    pub scheme: Scheme,
    /// The user part as written (escapes kept), if any.
    pub user: Option<String>,
    /// The password as written, if any (deprecated by RFC 3261 but still parsed).
    pub password: Option<String>,
    /// Hostname, IPv4 address or bracketed IPv6 reference, as written.
    pub host: String,
    /// The port, if written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`) in order.
    pub params: Vec<Param>,
    /// URI headers (`?name=value&...`) in order, as written.
    pub headers: Vec<(String, String)>,
}

/// Why a URI failed to parse; converted to [`HeaderError`] or [`crate::ParseError`] by callers.
#[derive(Debug)]
pub(crate) enum UriError {
    /// Not a valid SIP URI.
    Invalid(String),
    /// A syntactically valid scheme other than `sip` or `sips`.
    Scheme(String),
}

impl UriError {
    /// The error for a URI inside header field `name`.
    pub(crate) fn in_header(self, name: &crate::HeaderName) -> HeaderError {
        match self {
            UriError::Invalid(reason) => {
                HeaderError::invalid(name.clone(), format!("invalid URI: {reason}"))
            }
            UriError::Scheme(scheme) => HeaderError::UnsupportedScheme(scheme),
        }
    }
}

impl From<UriError> for HeaderError {
    fn from(error: UriError) -> HeaderError {
        match error {
            UriError::Invalid(reason) => HeaderError::InvalidUri(reason),
            UriError::Scheme(scheme) => HeaderError::UnsupportedScheme(scheme),
        }
    }
}

impl Uri {
    /// Parses a `sip:` or `sips:` URI. No white space is allowed anywhere.
    pub fn parse(text: &str) -> Result<Uri, HeaderError> {
        parse_uri(text).map_err(HeaderError::from)
    }

    /// Builds `sip:host` (or `sips:`) with no user, port, parameters or headers.
    pub fn new(scheme: Scheme, host: impl Into<String>) -> Uri {
        Uri {
            scheme,
            user: None,
            password: None,
            host: host.into(),
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The first parameter with this name (compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params
            .iter()
            .find(|param| param.name.eq_ignore_ascii_case(name))
    }

    /// The host as an IP address, if it is an IPv4 address or an IPv6 reference.
    pub fn host_ip(&self) -> Option<std::net::IpAddr> {
        host_ip(&self.host)
    }

    /// The canonical address-of-record (RFC 3261 §10.3 step 5): `scheme:user@host[:port]` with the
    /// host lower-cased, the user's needless escapes decoded, and the password, parameters and
    /// headers removed.
    pub fn aor(&self) -> String {
        let mut out = String::with_capacity(self.host.len() + 24);
        out.push_str(self.scheme.as_str());
        out.push(':');
        if let Some(user) = &self.user {
            out.push_str(&canonical_escapes(user, is_user_byte));
            out.push('@');
        }
        out.push_str(&canonical_host(&self.host));
        if let Some(port) = self.port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out
    }

    /// A string equal for two URIs iff they are equal under RFC 3261 §19.1.4, up to the rule
    /// that a parameter other than `maddr`, `method`, `transport`, `ttl` and `user` present in
    /// only one URI is ignored: here every such parameter is ignored.
    pub fn comparison_key(&self) -> String {
        let mut key = String::with_capacity(self.host.len() + 32);
        key.push_str(self.scheme.as_str());
        key.push(':');
        if let Some(user) = &self.user {
            key.push_str(&canonical_escapes(user, is_user_byte));
            if let Some(password) = &self.password {
                key.push(':');
                key.push_str(&canonical_escapes(password, is_password_byte));
            }
            key.push('@');
        }
        key.push_str(&canonical_host(&self.host));
        if let Some(port) = self.port {
            key.push(':');
            key.push_str(&port.to_string());
        }
        for name in ["maddr", "method", "transport", "ttl", "user"] {
            let Some(param) = self.param(name) else {
                continue;
            };
            key.push(';');
            key.push_str(name);
            if let Some(value) = &param.value {
                let value = canonical_escapes(value, is_param_byte);
                key.push('=');
                if name == "method" {
                    key.push_str(&value);
                } else {
                    key.push_str(&value.to_ascii_lowercase());
                }
            }
        }
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let name = canonical_escapes(name, is_header_byte).to_ascii_lowercase();
                (name, canonical_escapes(value, is_header_byte))
            })
            .collect();
        headers.sort();
        for (index, (name, value)) in headers.iter().enumerate() {
            key.push(if index == 0 { '?' } else { '&' });
            key.push_str(name);
            key.push('=');
            key.push_str(value);
        }
        key
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme.as_str())?;
        f.write_str(":")?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(password) = &self.password {
                f.write_str(":")?;
                f.write_str(password)?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for param in &self.params {
            f.write_str(";")?;
            f.write_str(&param.name)?;
            if let Some(value) = &param.value {
                f.write_str("=")?;
                f.write_str(value)?;
            }
        }
        for (index, (name, value)) in self.headers.iter().enumerate() {
            f.write_str(if index == 0 { "?" } else { "&" })?;
            f.write_str(name)?;
            f.write_str("=")?;
            f.write_str(value)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Uri {
    type Err = HeaderError;

    fn from_str(text: &str) -> Result<Uri, HeaderError> {
        Uri::parse(text)
    }
}

/// `user` = 1*( unreserved / escaped / user-unreserved ).
fn is_user_byte(byte: u8) -> bool {
    is_unreserved(byte) || matches!(byte, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

/// `password` = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," ).
fn is_password_byte(byte: u8) -> bool {
    is_unreserved(byte) || matches!(byte, b'&' | b'=' | b'+' | b'$' | b',')
}

/// `paramchar` = param-unreserved / unreserved / escaped.
fn is_param_byte(byte: u8) -> bool {
    is_unreserved(byte) || matches!(byte, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// `hname` and `hvalue` characters: hnv-unreserved / unreserved / escaped.
fn is_header_byte(byte: u8) -> bool {
    is_unreserved(byte) || matches!(byte, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// `scheme` = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|byte| byte.is_ascii_alphabetic())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
}

/// Parses a SIP URI; the parent decides how to report the error.
pub(crate) fn parse_uri(text: &str) -> Result<Uri, UriError> {
    let (scheme_text, rest) = text
        .split_once(':')
        .ok_or_else(|| UriError::Invalid(format!("missing scheme in {}", excerpt(text))))?;
    let scheme = parse_scheme(scheme_text)?;
    // '@' cannot appear unescaped after the userinfo, so the first one ends it.
    let (userinfo, host_and_rest) = match rest.split_once('@') {
        Some((userinfo, host_and_rest)) => (Some(userinfo), host_and_rest),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(userinfo) => parse_userinfo(userinfo).map_err(UriError::Invalid)?,
        None => (None, None),
    };
    let hostport_len = host_and_rest
        .find([';', '?'])
        .unwrap_or(host_and_rest.len());
    let (hostport, rest) = host_and_rest.split_at(hostport_len);
    let (host, port) = parse_hostport(hostport).map_err(UriError::Invalid)?;
    let (params_text, headers_text) = match rest.split_once('?') {
        Some((params_text, headers_text)) => (params_text, Some(headers_text)),
        None => (rest, None),
    };
    let params = parse_uri_params(params_text).map_err(UriError::Invalid)?;
    let headers = match headers_text {
        Some(headers_text) => parse_uri_headers(headers_text).map_err(UriError::Invalid)?,
        None => Vec::new(),
    };
    Ok(Uri {
        scheme,
        user,
        password,
        host: host.to_string(),
        port,
        params,
        headers,
    })
}

fn parse_scheme(text: &str) -> Result<Scheme, UriError> {
    if text.eq_ignore_ascii_case("sip") {
        Ok(Scheme::Sip)
    } else if text.eq_ignore_ascii_case("sips") {
        Ok(Scheme::Sips)
    } else if is_scheme(text) {
        // Scheme characters are ASCII letters, digits and "+-.", safe to quote unescaped.
        let shown = &text[..text.len().min(crate::ERROR_EXCERPT_SIZE_MAX)];
        Err(UriError::Scheme(shown.to_ascii_lowercase()))
    } else {
        Err(UriError::Invalid(format!(
            "invalid scheme {}",
            excerpt(text)
        )))
    }
}

type UserInfo = (Option<String>, Option<String>);

fn parse_userinfo(userinfo: &str) -> Result<UserInfo, String> {
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    if user.is_empty() {
        return Err("empty user part before '@'".into());
    }
    check_escaped(user, is_user_byte)?;
    if let Some(password) = password {
        check_escaped(password, is_password_byte)?;
    }
    Ok((Some(user.to_string()), password.map(str::to_string)))
}

/// Splits `host[:port]`, where host may be an IPv6 reference.
pub(crate) fn parse_hostport(text: &str) -> Result<(&str, Option<u16>), String> {
    let host_len = if text.starts_with('[') {
        text.find(']')
            .map(|index| index + 1)
            .ok_or_else(|| format!("unterminated IPv6 reference {}", excerpt(text)))?
    } else {
        text.find(':').unwrap_or(text.len())
    };
    let (host, rest) = text.split_at(host_len);
    check_host(host)?;
    let port = match rest.strip_prefix(':') {
        Some(port) => Some(parse_port(port)?),
        None if rest.is_empty() => None,
        None => return Err(format!("unexpected text after host: {}", excerpt(rest))),
    };
    Ok((host, port))
}

/// Parses `*( ";" pname [ "=" pvalue ] )`.
fn parse_uri_params(text: &str) -> Result<Vec<Param>, String> {
    let Some(text) = text.strip_prefix(';') else {
        return Ok(Vec::new());
    };
    let mut params = Vec::new();
    for part in text.split(';') {
        if params.len() == PARAM_COUNT_MAX {
            return Err(format!("more than {PARAM_COUNT_MAX} URI parameters"));
        }
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (part, None),
        };
        if name.is_empty() {
            return Err(format!("empty URI parameter name in {}", excerpt(part)));
        }
        check_escaped(name, is_param_byte)?;
        if let Some(value) = value {
            if value.is_empty() {
                return Err(format!("empty value for URI parameter {}", excerpt(name)));
            }
            check_escaped(value, is_param_byte)?;
        }
        params.push(Param {
            name: name.to_string(),
            value: value.map(str::to_string),
        });
    }
    Ok(params)
}

/// Parses `hname "=" hvalue *( "&" hname "=" hvalue )`; a missing `=` reads as an empty value.
fn parse_uri_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for part in text.split('&') {
        if headers.len() == PARAM_COUNT_MAX {
            return Err(format!("more than {PARAM_COUNT_MAX} URI headers"));
        }
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        if name.is_empty() {
            return Err(format!("empty URI header name in {}", excerpt(part)));
        }
        check_escaped(name, is_header_byte)?;
        check_escaped(value, is_header_byte)?;
        headers.push((name.to_string(), value.to_string()));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> Uri {
        let uri = Uri::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        let shown = uri.to_string();
        assert_eq!(Uri::parse(&shown).unwrap(), uri, "{text}");
        uri
    }

    #[test]
    fn parses_full_uri() {
        let uri = round_trip("sips:alice:secret@Atlanta.com:5061;transport=tcp;lr?subject=hi&x=");
        assert_eq!(uri.scheme, Scheme::Sips);
        assert_eq!(uri.user.as_deref(), Some("alice"));
        assert_eq!(uri.password.as_deref(), Some("secret"));
        assert_eq!(uri.host, "Atlanta.com");
        assert_eq!(uri.port, Some(5061));
        assert_eq!(
            uri.param("TRANSPORT").unwrap().value.as_deref(),
            Some("tcp")
        );
        assert_eq!(uri.param("lr").unwrap().value, None);
        assert_eq!(
            uri.headers,
            [("subject".into(), "hi".into()), ("x".into(), String::new())]
        );
    }

    #[test]
    fn parses_ipv6_references() {
        let uri = round_trip("sip:[::1]:5060");
        assert_eq!(uri.host, "[::1]");
        assert_eq!(uri.port, Some(5060));
        assert_eq!(uri.host_ip(), Some("::1".parse().unwrap()));
        let uri = round_trip("sip:user@[2001:db8::10];maddr=[2001:db8::1]");
        assert_eq!(uri.host, "[2001:db8::10]");
        assert_eq!(uri.port, None);
        assert!(Uri::parse("sip:[::1").is_err());
        assert!(Uri::parse("sip:::1").is_err());
        assert!(Uri::parse("sip:[::1]5060").is_err());
        assert!(Uri::parse("sip:[1::2::3]").is_err());
    }

    #[test]
    fn parses_rfc4475_unusual_users() {
        let uri = round_trip(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(
            uri.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            uri.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        let uri = round_trip("sip:user;par=u%40example.net@example.com");
        assert_eq!(uri.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(uri.host, "example.com");
        let uri = round_trip("sip:null-%00-null@example.com");
        assert_eq!(uri.aor(), "sip:null-%00-null@example.com");
        let uri = round_trip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(uri.aor(), "sip:sips%3Auser%40example.com@example.net");
    }

    #[test]
    fn rejects_bad_uris() {
        for text in [
            "",
            "sip:",
            "sip:@host",
            "sip:user@",
            "sip:host:",
            "sip:host:99999",
            "sip:host:+5",
            "sip:ho st",
            "sip: host",
            "<sip:host>",
            "sip:host;=x",
            "sip:host;a=",
            "sip:host;;a",
            "sip:user%4@host",
            "sip:host?=v",
            "sip:us\"er@host",
            "sip",
        ] {
            assert!(Uri::parse(text).is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn other_schemes_are_unsupported() {
        assert_eq!(
            Uri::parse("tel:+1-201-555-0123"),
            Err(HeaderError::UnsupportedScheme("tel".into()))
        );
        assert_eq!(Uri::parse("tel:+1").unwrap_err().status(), 416);
        assert!(matches!(
            Uri::parse("1x:y"),
            Err(HeaderError::InvalidUri(_))
        ));
        assert!(Uri::parse("SIP:host").is_ok());
    }

    #[test]
    fn aor_is_canonical() {
        let uri = Uri::parse("sip:%61lice:pw@AtLanTa.CoM:5070;transport=TCP?x=y").unwrap();
        assert_eq!(uri.aor(), "sip:alice@atlanta.com:5070");
        let uri = Uri::parse("sips:[2001:DB8:0::1]").unwrap();
        assert_eq!(uri.aor(), "sips:[2001:db8::1]");
    }

    #[test]
    fn comparison_key_follows_rfc3261_examples() {
        let same = [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ];
        for (left, right) in same {
            let left_key = Uri::parse(left).unwrap().comparison_key();
            let right_key = Uri::parse(right).unwrap().comparison_key();
            assert_eq!(left_key, right_key, "{left} vs {right}");
        }
        let different = [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
            ("sip:a:b@host", "sip:a%3Ab@host"),
        ];
        for (left, right) in different {
            let left_key = Uri::parse(left).unwrap().comparison_key();
            let right_key = Uri::parse(right).unwrap().comparison_key();
            assert_ne!(left_key, right_key, "{left} vs {right}");
        }
    }

    #[test]
    fn param_unquoted() {
        let param = Param {
            name: "x".into(),
            value: Some("\"a\\\"b\"".into()),
        };
        assert_eq!(param.unquoted().as_deref(), Some("a\"b"));
        let bare = Param {
            name: "lr".into(),
            value: None,
        };
        assert_eq!(bare.unquoted(), None);
    }

    #[test]
    fn uri_params_are_bounded() {
        let text = format!("sip:host{}", ";a".repeat(PARAM_COUNT_MAX + 1));
        assert!(Uri::parse(&text).is_err());
    }
}
