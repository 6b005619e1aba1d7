//! `name-addr` and `addr-spec` with header parameters (RFC 3261 §20.10, §25.1): [`NameAddr`] for
//! From, To, Contact, Path and Route, and [`Contacts`].

use std::fmt;

use crate::error::HeaderError;
use crate::header::HeaderName;
use crate::scan::{
    excerpt, is_token, parse_generic_params, quoted_string_len, trim_lws, trim_lws_start, unquote,
    write_quoted_content,
};
use crate::uri::{parse_uri, Param, Uri};

/// A name-addr (`"Display" <sip:...>;tag=x`) or addr-spec (`sip:...;tag=x`) with header
/// parameters.
///
/// In the addr-spec form (no `<>`), parameters after the URI are header parameters, not URI
/// parameters (RFC 3261 §20), and the URI may hold no `?` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped; `Some("")` for `""`.
    pub display_name: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters in order; values as written (quotes kept).
    pub params: Vec<Param>,
}

/// The Contact header fields of a REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *` (remove all bindings; only with `Expires: 0`).
    Star,
    /// Every contact, in order (empty when there is no Contact field).
    List(Vec<NameAddr>),
}

/// The header field name used in errors from [`NameAddr::parse`], which does not know its field.
const STANDALONE_NAME: &str = "name-addr";

impl NameAddr {
    /// Parses a name-addr or addr-spec with header parameters.
    ///
    /// Errors are reported as [`HeaderError::Invalid`] with the name `name-addr`; the typed
    /// accessors of [`crate::Headers`] name the real header field instead.
    pub fn parse(text: &str) -> Result<NameAddr, HeaderError> {
        NameAddr::parse_in(text, &HeaderName::Other(STANDALONE_NAME.into()))
    }

    /// A name-addr with no display name and no parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses `text` as the value of header field `name`, naming it in errors.
    pub(crate) fn parse_in(text: &str, name: &HeaderName) -> Result<NameAddr, HeaderError> {
        let text = trim_lws(text);
        let (display_name, uri_text, params_text) =
            split_name_addr(text).map_err(|reason| HeaderError::invalid(name.clone(), reason))?;
        let uri = parse_uri(uri_text).map_err(|error| error.in_header(name))?;
        let mut params = Vec::new();
        parse_generic_params(params_text, &mut params)
            .map_err(|reason| HeaderError::invalid(name.clone(), reason))?;
        Ok(NameAddr {
            display_name,
            uri,
            params,
        })
    }

    /// The first header parameter with this name (compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params
            .iter()
            .find(|param| param.name.eq_ignore_ascii_case(name))
    }

    /// The value of the `tag` parameter, if present with a value.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").and_then(|param| param.value.as_deref())
    }
}

impl fmt::Display for NameAddr {
    /// Always the `<uri>` form: `"Display" <sip:...>;p=v`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(display_name) = &self.display_name {
            f.write_str("\"")?;
            write_quoted_content(f, display_name)?;
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        for param in &self.params {
            f.write_str(";")?;
            f.write_str(&param.name)?;
            if let Some(value) = &param.value {
                f.write_str("=")?;
                f.write_str(value)?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for NameAddr {
    type Err = HeaderError;

    fn from_str(text: &str) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(text)
    }
}

impl fmt::Display for Contacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contacts::Star => f.write_str("*"),
            Contacts::List(list) => {
                for (index, contact) in list.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{contact}")?;
                }
                Ok(())
            }
        }
    }
}

/// The display name, the URI text and the parameter text of a trimmed name-addr or addr-spec.
type NameAddrParts<'a> = (Option<String>, &'a str, &'a str);

fn split_name_addr(text: &str) -> Result<NameAddrParts<'_>, String> {
    if text.is_empty() {
        return Err("empty value".into());
    }
    if text.starts_with('"') {
        let quoted_len = quoted_string_len(text)?;
        let display_name = unquote(&text[..quoted_len]);
        let rest = trim_lws_start(&text[quoted_len..]);
        if !rest.starts_with('<') {
            return Err(format!(
                "expected '<' after display name, found {}",
                excerpt(rest)
            ));
        }
        let (uri_text, params_text) = split_angle(rest)?;
        return Ok((Some(display_name), uri_text, params_text));
    }
    // A token display name cannot hold ':', and a URI cannot start with '<'.
    match text
        .find(['<', ':', '"'])
        .map(|index| (index, text.as_bytes()[index]))
    {
        Some((index, b'<')) => {
            let display_name = check_token_display_name(trim_lws(&text[..index]))?;
            let (uri_text, params_text) = split_angle(&text[index..])?;
            Ok((display_name, uri_text, params_text))
        }
        Some((_, b':')) => {
            let (uri_text, params_text) = split_addr_spec(text)?;
            Ok((None, uri_text, params_text))
        }
        _ => Err(format!("missing URI in {}", excerpt(text))),
    }
}

/// `*(token LWS)`: returns `None` when empty.
fn check_token_display_name(display_name: &str) -> Result<Option<String>, String> {
    if display_name.is_empty() {
        return Ok(None);
    }
    let all_tokens = display_name
        .split([' ', '\t'])
        .filter(|word| !word.is_empty())
        .all(is_token);
    if all_tokens {
        Ok(Some(display_name.to_string()))
    } else {
        Err(format!(
            "display name {} must be quoted",
            excerpt(display_name)
        ))
    }
}

/// Splits `<uri>params`; `text` starts with `<`.
fn split_angle(text: &str) -> Result<(&str, &str), String> {
    let close = text
        .find('>')
        .ok_or_else(|| format!("unterminated '<' in {}", excerpt(text)))?;
    Ok((&text[1..close], &text[close + 1..]))
}

/// Splits an addr-spec at its first `;`: what follows are header parameters.
fn split_addr_spec(text: &str) -> Result<(&str, &str), String> {
    let uri_len = text.find(';').unwrap_or(text.len());
    let (uri_text, params_text) = text.split_at(uri_len);
    let uri_text = trim_lws(uri_text);
    if uri_text.contains(['?', ',']) {
        return Err(format!(
            "a URI with '?' or ',' must be enclosed in '<>': {}",
            excerpt(uri_text)
        ));
    }
    Ok((uri_text, params_text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> NameAddr {
        let parsed = NameAddr::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        let shown = parsed.to_string();
        assert_eq!(
            NameAddr::parse(&shown).unwrap(),
            parsed,
            "{text} -> {shown}"
        );
        parsed
    }

    #[test]
    fn quoted_display_name_with_escapes() {
        let parsed =
            round_trip(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#);
        assert_eq!(parsed.display_name.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(parsed.uri.host, "example.com");
        assert_eq!(parsed.tag(), Some("98asjd8"));
        assert_eq!(
            parsed.to_string(),
            r#""J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8"#
        );
    }

    #[test]
    fn token_display_names() {
        let parsed = round_trip("caller<sip:caller@example.com>;tag=323");
        assert_eq!(parsed.display_name.as_deref(), Some("caller"));
        let parsed = round_trip("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>");
        assert_eq!(
            parsed.display_name.as_deref(),
            Some("token1~` token2'+_ token3*%!.-")
        );
        let parsed = round_trip("<sip:a@b>");
        assert_eq!(parsed.display_name, None);
        let parsed = round_trip("\"\" <sip:a@b>");
        assert_eq!(parsed.display_name.as_deref(), Some(""));
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>").is_err());
        assert!(NameAddr::parse("Zoë <sip:a@b>").is_err());
    }

    #[test]
    fn addr_spec_params_are_header_params() {
        let parsed = round_trip("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert!(parsed.uri.params.is_empty());
        assert_eq!(parsed.tag(), Some("1918181833n"));
        let parsed = round_trip("<sip:a@b;lr>;expires=60");
        assert_eq!(parsed.uri.params.len(), 1);
        assert_eq!(
            parsed.param("EXPIRES").unwrap().value.as_deref(),
            Some("60")
        );
        // RFC 4475 §3.1.2.8: '?' in an addr-spec requires the name-addr form.
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").is_ok());
    }

    #[test]
    fn control_characters_in_display_name_round_trip() {
        let parsed = round_trip("\"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7F}\" <sip:a@example.com>");
        assert_eq!(
            parsed.display_name.as_deref(),
            Some("BEL:\u{7} NUL:\u{0} DEL:\u{7F}")
        );
    }

    #[test]
    fn quoted_params_and_ipv6() {
        let parsed = round_trip(
            "<sip:[2001:db8::1]:5070;transport=tcp>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1;received=[::1]",
        );
        assert_eq!(parsed.uri.host, "[2001:db8::1]");
        assert_eq!(
            parsed.param("+sip.instance").unwrap().unquoted().as_deref(),
            Some("<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>")
        );
    }

    #[test]
    fn malformed() {
        for text in [
            "",
            "\"unterminated <sip:a@b>",
            "<sip:a@b",
            "\"x\" sip:a@b",
            "<sip:a@b> junk",
            "< sip:a@b >",
            "<sip:a@b>;",
            "<sip:a@b>;tag=",
            "<>",
            "nothing",
            "<sip:a@b>;x=\"open",
        ] {
            assert!(NameAddr::parse(text).is_err(), "{text:?} should fail");
        }
        let error = NameAddr::parse("<sip:a@b").unwrap_err();
        assert!(error.to_string().contains("unterminated '<'"), "{error}");
        let error = NameAddr::parse("\"abc <sip:a@b>").unwrap_err();
        assert!(
            error.to_string().contains("unterminated quoted string"),
            "{error}"
        );
    }

    #[test]
    fn contacts_display() {
        let list = Contacts::List(vec![
            NameAddr::parse("<sip:a@b>").unwrap(),
            NameAddr::parse("sip:c@d;q=1").unwrap(),
        ]);
        assert_eq!(list.to_string(), "<sip:a@b>, <sip:c@d>;q=1");
        assert_eq!(Contacts::Star.to_string(), "*");
    }
}
