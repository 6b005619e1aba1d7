//! Header fields: [`HeaderName`], [`Header`], [`Headers`] with its typed accessors, [`CSeq`], and
//! [`split_comma_list`].
//!
//! Values are stored as unfolded, trimmed text; typed accessors parse on demand, so a message
//! with one malformed header field can still be answered.

use std::fmt;
use std::hash::{Hash, Hasher};

use crate::error::HeaderError;
use crate::message::Method;
use crate::name_addr::{Contacts, NameAddr};
use crate::scan::{excerpt, is_lws, is_token, parse_delta_seconds, trim_lws};
use crate::via::Via;
use crate::LIST_ELEMENT_COUNT_MAX;

/// A header field name.
///
/// [`HeaderName::parse`] maps full and compact forms (`v f t i m l k s c e o r u ...`,
/// RFC 3261 §7.3.3 and later RFCs) to one variant, ignoring case.
/// Equality and hashing ignore ASCII case, also for [`HeaderName::Other`], which keeps the name
/// as written.
#[derive(Clone, Debug)]
pub enum HeaderName {
    /// `Via` (`v`)
    Via,
    /// `From` (`f`)
    From,
    /// `To` (`t`)
    To,
    /// `Call-ID` (`i`)
    CallId,
    /// `CSeq`
    CSeq,
    /// `Contact` (`m`)
    Contact,
    /// `Expires`
    Expires,
    /// `Min-Expires`
    MinExpires,
    /// `Content-Length` (`l`)
    ContentLength,
    /// `Content-Type` (`c`)
    ContentType,
    /// `Content-Encoding` (`e`)
    ContentEncoding,
    /// `Max-Forwards`
    MaxForwards,
    /// `Require`
    Require,
    /// `Proxy-Require`
    ProxyRequire,
    /// `Supported` (`k`)
    Supported,
    /// `Unsupported`
    Unsupported,
    /// `Path` (RFC 3327)
    Path,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// `Authorization`
    Authorization,
    /// `WWW-Authenticate`
    WwwAuthenticate,
    /// `Proxy-Authorization`
    ProxyAuthorization,
    /// `Proxy-Authenticate`
    ProxyAuthenticate,
    /// `User-Agent`
    UserAgent,
    /// `Server`
    Server,
    /// `Date`
    Date,
    /// `Allow`
    Allow,
    /// `Accept`
    Accept,
    /// `Retry-After`
    RetryAfter,
    /// `Warning`
    Warning,
    /// `Event` (`o`, RFC 6665)
    Event,
    /// `Subject` (`s`)
    Subject,
    /// `Refer-To` (`r`, RFC 3515)
    ReferTo,
    /// Any other name, as written (or the full form of a compact name without a variant).
    Other(String),
}

/// Longest full name of a variant: `Proxy-Authorization`.
const KNOWN_NAME_SIZE_MAX: usize = 19;

/// The variant whose full name equals `name` ignoring ASCII case, without allocating.
fn known_name(name: &str) -> Option<HeaderName> {
    if name.len() > KNOWN_NAME_SIZE_MAX {
        return None;
    }
    let mut lower = [0u8; KNOWN_NAME_SIZE_MAX];
    let lower = &mut lower[..name.len()];
    lower.copy_from_slice(name.as_bytes());
    lower.make_ascii_lowercase();
    let known = match &*lower {
        b"via" => HeaderName::Via,
        b"from" => HeaderName::From,
        b"to" => HeaderName::To,
        b"call-id" => HeaderName::CallId,
        b"cseq" => HeaderName::CSeq,
        b"contact" => HeaderName::Contact,
        b"expires" => HeaderName::Expires,
        b"min-expires" => HeaderName::MinExpires,
        b"content-length" => HeaderName::ContentLength,
        b"content-type" => HeaderName::ContentType,
        b"content-encoding" => HeaderName::ContentEncoding,
        b"max-forwards" => HeaderName::MaxForwards,
        b"require" => HeaderName::Require,
        b"proxy-require" => HeaderName::ProxyRequire,
        b"supported" => HeaderName::Supported,
        b"unsupported" => HeaderName::Unsupported,
        b"path" => HeaderName::Path,
        b"route" => HeaderName::Route,
        b"record-route" => HeaderName::RecordRoute,
        b"authorization" => HeaderName::Authorization,
        b"www-authenticate" => HeaderName::WwwAuthenticate,
        b"proxy-authorization" => HeaderName::ProxyAuthorization,
        b"proxy-authenticate" => HeaderName::ProxyAuthenticate,
        b"user-agent" => HeaderName::UserAgent,
        b"server" => HeaderName::Server,
        b"date" => HeaderName::Date,
        b"allow" => HeaderName::Allow,
        b"accept" => HeaderName::Accept,
        b"retry-after" => HeaderName::RetryAfter,
        b"warning" => HeaderName::Warning,
        b"event" => HeaderName::Event,
        b"subject" => HeaderName::Subject,
        b"refer-to" => HeaderName::ReferTo,
        _ => return None,
    };
    debug_assert!(known.as_str().eq_ignore_ascii_case(name));
    Some(known)
}

impl HeaderName {
    /// Maps a name as written (full or compact form, any case) to its variant.
    pub fn parse(name: &str) -> HeaderName {
        if let [letter] = name.as_bytes() {
            return compact_name(letter.to_ascii_lowercase())
                .unwrap_or_else(|| HeaderName::Other(name.to_string()));
        }
        known_name(name).unwrap_or_else(|| HeaderName::Other(name.to_string()))
    }

    /// The canonical full form, e.g. `Call-ID`, `CSeq`, `WWW-Authenticate`.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Supported => "Supported",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::Path => "Path",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Authorization => "Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Date => "Date",
            HeaderName::Allow => "Allow",
            HeaderName::Accept => "Accept",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::Warning => "Warning",
            HeaderName::Event => "Event",
            HeaderName::Subject => "Subject",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::Other(name) => name,
        }
    }
}

/// Compact forms (RFC 3261 §7.3.3, RFC 3515, RFC 3841, RFC 4028, RFC 4474, RFC 6665).
fn compact_name(letter: u8) -> Option<HeaderName> {
    let name = match letter {
        b'v' => HeaderName::Via,
        b'f' => HeaderName::From,
        b't' => HeaderName::To,
        b'i' => HeaderName::CallId,
        b'm' => HeaderName::Contact,
        b'l' => HeaderName::ContentLength,
        b'c' => HeaderName::ContentType,
        b'e' => HeaderName::ContentEncoding,
        b'k' => HeaderName::Supported,
        b's' => HeaderName::Subject,
        b'o' => HeaderName::Event,
        b'r' => HeaderName::ReferTo,
        b'u' => HeaderName::Other("Allow-Events".into()),
        b'a' => HeaderName::Other("Accept-Contact".into()),
        b'b' => HeaderName::Other("Referred-By".into()),
        b'd' => HeaderName::Other("Request-Disposition".into()),
        b'j' => HeaderName::Other("Reject-Contact".into()),
        b'n' => HeaderName::Other("Identity-Info".into()),
        b'x' => HeaderName::Other("Session-Expires".into()),
        b'y' => HeaderName::Other("Identity".into()),
        _ => return None,
    };
    Some(name)
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => {
                self.as_str().eq_ignore_ascii_case(other.as_str())
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: equal names have equal lower-cased canonical text.
        for byte in self.as_str().bytes() {
            state.write_u8(byte.to_ascii_lowercase());
        }
        state.write_u8(0xFF);
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The field name.
    pub name: HeaderName,
    /// The value: folded lines joined by one space, leading and trailing white space trimmed.
    pub value: String,
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.value)
    }
}

/// The header fields of a message, in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<Header>,
}

/// `CSeq: <seq> <method>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number.
    pub seq: u32,
    /// The method, which must match the request's.
    pub method: Method,
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

impl Headers {
    /// No header fields.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Appends a field. The value should hold no CR or LF; [`crate::Request::encode`] writes
    /// any as spaces.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.fields.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Room for `capacity` fields without reallocating.
    pub(crate) fn with_capacity(capacity: usize) -> Headers {
        Headers {
            fields: Vec::with_capacity(capacity),
        }
    }

    /// Appends a parsed field (the parser's path: no conversion).
    pub(crate) fn push_header(&mut self, header: Header) {
        self.fields.push(header);
    }

    /// The last field, for appending a folded continuation line.
    pub(crate) fn last_mut(&mut self) -> Option<&mut Header> {
        self.fields.last_mut()
    }

    /// Replaces the first field named `name` and removes the others; appends if there is none.
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let Some(first) = self.fields.iter().position(|field| field.name == name) else {
            self.push(name, value);
            return;
        };
        self.fields[first].value = value.into();
        let mut index = 0;
        self.fields.retain(|field| {
            let keep = index <= first || field.name != name;
            index += 1;
            keep
        });
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.fields
            .iter()
            .find(|field| field.name == *name)
            .map(|field| field.value.as_str())
    }

    /// The values of every field named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |field| field.name == *name)
            .map(|field| field.value.as_str())
    }

    /// Removes every field named `name`.
    pub fn remove_all(&mut self, name: &HeaderName) {
        self.fields.retain(|field| field.name != *name);
    }

    /// Every field, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.fields.iter()
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The Call-ID value. Errors if absent, repeated, empty or containing white space.
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        let value = self.single(HeaderName::CallId)?;
        if value.is_empty() {
            return Err(HeaderError::invalid(HeaderName::CallId, "empty value"));
        }
        if value.bytes().any(is_lws) {
            return Err(HeaderError::invalid(
                HeaderName::CallId,
                "contains white space",
            ));
        }
        Ok(value)
    }

    /// The CSeq: a sequence number of at most `u32::MAX` and a method token.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        parse_cseq(self.single(HeaderName::CSeq)?)
            .map_err(|reason| HeaderError::invalid(HeaderName::CSeq, reason))
    }

    /// The From field as a name-addr.
    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse_in(self.single(HeaderName::From)?, &HeaderName::From)
    }

    /// The To field as a name-addr.
    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse_in(self.single(HeaderName::To)?, &HeaderName::To)
    }

    /// Every Via, top first, comma lists split. [`HeaderError::Missing`] if there is none.
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        let vias = self.parse_list(&HeaderName::Via, Via::parse)?;
        if vias.is_empty() {
            return Err(HeaderError::Missing(HeaderName::Via));
        }
        Ok(vias)
    }

    /// The topmost Via (the first element of the first Via field).
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        let first = self
            .get(&HeaderName::Via)
            .ok_or(HeaderError::Missing(HeaderName::Via))?;
        let top = split_comma_list(first)
            .into_iter()
            .next()
            .ok_or_else(|| HeaderError::invalid(HeaderName::Via, "empty value"))?;
        Via::parse(top)
    }

    /// Replaces the topmost Via with `via` (e.g. after setting `received` and `rport`), keeping
    /// the other elements of the first Via field; pushes a Via field if there is none.
    pub fn set_top_via(&mut self, via: &Via) {
        let Some(field) = self
            .fields
            .iter_mut()
            .find(|field| field.name == HeaderName::Via)
        else {
            self.push(HeaderName::Via, via.to_string());
            return;
        };
        let mut value = via.to_string();
        for rest in split_comma_list(&field.value).into_iter().skip(1) {
            value.push_str(", ");
            value.push_str(rest);
        }
        field.value = value;
    }

    /// The Contact fields: `*`, or every contact (comma lists split); no field is an empty list.
    /// `*` together with other contacts, or twice, is an error.
    pub fn contacts(&self) -> Result<Contacts, HeaderError> {
        let mut star_count = 0usize;
        let contacts = self.parse_list(&HeaderName::Contact, |element| {
            if element == "*" {
                star_count += 1;
                Ok(None)
            } else {
                NameAddr::parse_in(element, &HeaderName::Contact).map(Some)
            }
        })?;
        let contacts: Vec<NameAddr> = contacts.into_iter().flatten().collect();
        match (star_count, contacts.is_empty()) {
            (0, _) => Ok(Contacts::List(contacts)),
            (1, true) => Ok(Contacts::Star),
            _ => Err(HeaderError::invalid(
                HeaderName::Contact,
                "'*' must be the only contact",
            )),
        }
    }

    /// The Expires value in seconds, if present; values above `u32::MAX` saturate.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.optional_seconds(HeaderName::Expires)
    }

    /// The Max-Forwards value, if present; values above `u32::MAX` saturate.
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.optional_seconds(HeaderName::MaxForwards)
    }

    /// Every option tag in the fields named `name` (Require, Supported, Proxy-Require,
    /// Unsupported), lower-cased, empty elements skipped.
    pub fn option_tags(&self, name: &HeaderName) -> Vec<String> {
        self.get_all(name)
            .flat_map(split_comma_list)
            .map(str::to_ascii_lowercase)
            .collect()
    }

    /// Every name-addr in the fields named `name` (Path, Route, Record-Route), comma lists
    /// split, in order.
    pub fn name_addrs(&self, name: &HeaderName) -> Result<Vec<NameAddr>, HeaderError> {
        self.parse_list(name, |element| NameAddr::parse_in(element, name))
    }

    /// The value of the only field named `name`: absent is `Missing`, repeated is `Invalid`.
    fn single(&self, name: HeaderName) -> Result<&str, HeaderError> {
        let mut matching = self.fields.iter().filter(|field| field.name == name);
        let first = match matching.next() {
            Some(field) => field.value.as_str(),
            None => return Err(HeaderError::Missing(name)),
        };
        if matching.next().is_some() {
            return Err(HeaderError::invalid(name, "appears more than once"));
        }
        Ok(first)
    }

    /// Parses every comma-separated element of every field named `name`, in order.
    /// An empty field, or more than [`LIST_ELEMENT_COUNT_MAX`] elements, is an error.
    fn parse_list<T>(
        &self,
        name: &HeaderName,
        mut parse: impl FnMut(&str) -> Result<T, HeaderError>,
    ) -> Result<Vec<T>, HeaderError> {
        let mut elements = Vec::new();
        for value in self.get_all(name) {
            let parts = split_comma_list(value);
            if parts.is_empty() {
                return Err(HeaderError::invalid(name.clone(), "empty value"));
            }
            for part in parts {
                if elements.len() == LIST_ELEMENT_COUNT_MAX {
                    let reason = format!("more than {LIST_ELEMENT_COUNT_MAX} elements");
                    return Err(HeaderError::invalid(name.clone(), reason));
                }
                elements.push(parse(part)?);
            }
        }
        Ok(elements)
    }

    fn optional_seconds(&self, name: HeaderName) -> Result<Option<u32>, HeaderError> {
        let value = match self.single(name.clone()) {
            Ok(value) => value,
            Err(HeaderError::Missing(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        match parse_delta_seconds(value) {
            Some(seconds) => Ok(Some(seconds)),
            None => Err(HeaderError::invalid(
                name,
                format!("not a number: {}", excerpt(value)),
            )),
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.fields.iter()
    }
}

/// Parses `1*DIGIT LWS Method`.
fn parse_cseq(value: &str) -> Result<CSeq, String> {
    let value = trim_lws(value);
    let digits_len = value
        .bytes()
        .position(|byte| !byte.is_ascii_digit())
        .unwrap_or(value.len());
    if digits_len == 0 {
        return Err("sequence number is not a number".into());
    }
    let seq = value[..digits_len]
        .parse::<u32>()
        .map_err(|_| "sequence number is too large".to_string())?;
    let rest = &value[digits_len..];
    let method_text = trim_lws(rest);
    if method_text.is_empty() {
        return Err("missing method".into());
    }
    if method_text.len() == rest.len() {
        return Err("no space between sequence number and method".into());
    }
    if !is_token(method_text) {
        return Err(format!("invalid method {}", excerpt(method_text)));
    }
    let method = Method::from_token(method_text).map_err(|error| error.to_string())?;
    Ok(CSeq { seq, method })
}

/// Splits a header value at top-level commas (not inside quoted strings or `<...>`), trimming
/// each part and dropping empty ones.
///
/// Unterminated quotes or brackets leave the rest of the value as the last part, for the
/// element parser to reject.
pub fn split_comma_list(value: &str) -> Vec<&str> {
    let bytes = value.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if in_quotes => index += 1,
            b'"' if !in_angle => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => {
                push_part(&mut parts, &value[start..index]);
                start = index + 1;
            }
            _ => {}
        }
        index += 1;
    }
    push_part(&mut parts, value.get(start..).unwrap_or(""));
    parts
}

fn push_part<'a>(parts: &mut Vec<&'a str>, part: &'a str) {
    let part = trim_lws(part);
    if !part.is_empty() {
        parts.push(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in fields {
            headers.push(HeaderName::parse(name), *value);
        }
        headers
    }

    #[test]
    fn names_parse_full_and_compact_forms_ignoring_case() {
        let pairs = [
            ("v", HeaderName::Via),
            ("F", HeaderName::From),
            ("t", HeaderName::To),
            ("i", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("L", HeaderName::ContentLength),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("c", HeaderName::ContentType),
            ("e", HeaderName::ContentEncoding),
            ("o", HeaderName::Event),
            ("r", HeaderName::ReferTo),
            ("call-id", HeaderName::CallId),
            ("CSEQ", HeaderName::CSeq),
            ("www-authenticate", HeaderName::WwwAuthenticate),
            ("MaX-fOrWaRdS", HeaderName::MaxForwards),
        ];
        for (text, name) in pairs {
            assert_eq!(HeaderName::parse(text), name, "{text}");
            assert!(
                !matches!(HeaderName::parse(text), HeaderName::Other(_)),
                "{text}"
            );
        }
        assert_eq!(HeaderName::parse("u").as_str(), "Allow-Events");
        assert_eq!(HeaderName::parse("X-Custom").as_str(), "X-Custom");
        assert_eq!(HeaderName::parse("z"), HeaderName::Other("z".into()));
    }

    #[test]
    fn every_canonical_name_parses_back() {
        let names = [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::Contact,
            HeaderName::Expires,
            HeaderName::MinExpires,
            HeaderName::ContentLength,
            HeaderName::ContentType,
            HeaderName::ContentEncoding,
            HeaderName::MaxForwards,
            HeaderName::Require,
            HeaderName::ProxyRequire,
            HeaderName::Supported,
            HeaderName::Unsupported,
            HeaderName::Path,
            HeaderName::Route,
            HeaderName::RecordRoute,
            HeaderName::Authorization,
            HeaderName::WwwAuthenticate,
            HeaderName::ProxyAuthorization,
            HeaderName::ProxyAuthenticate,
            HeaderName::UserAgent,
            HeaderName::Server,
            HeaderName::Date,
            HeaderName::Allow,
            HeaderName::Accept,
            HeaderName::RetryAfter,
            HeaderName::Warning,
            HeaderName::Event,
            HeaderName::Subject,
            HeaderName::ReferTo,
        ];
        for name in names {
            let parsed = HeaderName::parse(name.as_str());
            assert!(!matches!(parsed, HeaderName::Other(_)), "{name}");
            assert_eq!(parsed, name);
            let upper = HeaderName::parse(&name.as_str().to_ascii_uppercase());
            assert_eq!(upper, name);
            assert!(name.as_str().len() <= KNOWN_NAME_SIZE_MAX);
        }
        assert!(matches!(
            HeaderName::parse("Proxy-Authorization-X"),
            HeaderName::Other(_)
        ));
    }

    #[test]
    fn names_print_canonical_case() {
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
        assert_eq!(HeaderName::CSeq.as_str(), "CSeq");
        assert_eq!(HeaderName::WwwAuthenticate.as_str(), "WWW-Authenticate");
        assert_eq!(HeaderName::parse("min-expires").to_string(), "Min-Expires");
    }

    #[test]
    fn other_names_compare_case_insensitively() {
        use std::collections::HashSet;
        let lower = HeaderName::Other("x-foo".into());
        let upper = HeaderName::Other("X-FOO".into());
        assert_eq!(lower, upper);
        assert_eq!(HeaderName::Other("call-id".into()), HeaderName::CallId);
        let set: HashSet<_> = [
            lower,
            upper,
            HeaderName::Other("Call-ID".into()),
            HeaderName::CallId,
        ]
        .into_iter()
        .collect();
        assert_eq!(set.len(), 2);
        assert_ne!(HeaderName::Via, HeaderName::To);
    }

    #[test]
    fn get_set_remove() {
        let mut headers = headers(&[("Via", "a"), ("X-A", "1"), ("v", "b"), ("x-a", "2")]);
        assert_eq!(headers.get(&HeaderName::Via), Some("a"));
        let all: Vec<_> = headers.get_all(&HeaderName::Via).collect();
        assert_eq!(all, ["a", "b"]);
        headers.set(HeaderName::Other("X-a".into()), "3");
        let custom = HeaderName::Other("X-A".into());
        let all: Vec<_> = headers.get_all(&custom).collect();
        assert_eq!(all, ["3"]);
        headers.remove_all(&HeaderName::Via);
        assert_eq!(headers.len(), 1);
        headers.set(HeaderName::Expires, "5");
        assert_eq!(headers.expires(), Ok(Some(5)));
        assert!(!headers.is_empty());
    }

    #[test]
    fn split_comma_list_respects_quotes_and_angles() {
        let value = r#""Doe, John" <sip:a@b;x=1,2>;q=0.5 , <sip:c@d>,, "q\",uote" <sip:e@f>"#;
        assert_eq!(
            split_comma_list(value),
            [
                r#""Doe, John" <sip:a@b;x=1,2>;q=0.5"#,
                "<sip:c@d>",
                r#""q\",uote" <sip:e@f>"#
            ]
        );
        assert_eq!(split_comma_list(" , ,"), Vec::<&str>::new());
        assert_eq!(split_comma_list("\"open, still"), ["\"open, still"]);
    }

    #[test]
    fn call_id() {
        assert_eq!(headers(&[("i", "abc@host")]).call_id(), Ok("abc@host"));
        assert_eq!(
            headers(&[]).call_id(),
            Err(HeaderError::Missing(HeaderName::CallId))
        );
        assert!(headers(&[("Call-ID", "")]).call_id().is_err());
        assert!(headers(&[("Call-ID", "a b")]).call_id().is_err());
        assert!(headers(&[("Call-ID", "a"), ("i", "b")]).call_id().is_err());
    }

    #[test]
    fn cseq() {
        let cseq = headers(&[("CSeq", "0009 \t REGISTER")]).cseq().unwrap();
        assert_eq!(
            cseq,
            CSeq {
                seq: 9,
                method: Method::Register
            }
        );
        assert_eq!(cseq.to_string(), "9 REGISTER");
        let ext = headers(&[("cseq", "4294967295 FOO")]).cseq().unwrap();
        assert_eq!(ext.method, Method::Extension("FOO".into()));
        assert_eq!(ext.seq, u32::MAX);
        let error = headers(&[("CSeq", "x REGISTER")]).cseq().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid CSeq header: sequence number is not a number"
        );
        for value in [
            "4294967296 REGISTER",
            "1",
            "1REGISTER",
            "1 REG ISTER",
            "-1 REGISTER",
            "",
        ] {
            assert!(headers(&[("CSeq", value)]).cseq().is_err(), "{value}");
        }
    }

    #[test]
    fn expires_and_max_forwards() {
        assert_eq!(headers(&[]).expires(), Ok(None));
        assert_eq!(headers(&[("Expires", "3600")]).expires(), Ok(Some(3600)));
        assert_eq!(
            headers(&[("Expires", "99999999999")]).expires(),
            Ok(Some(u32::MAX))
        );
        assert!(headers(&[("Expires", "Thu, 01 Dec 1994 16:00:00 GMT")])
            .expires()
            .is_err());
        assert!(headers(&[("Expires", "-1")]).expires().is_err());
        assert_eq!(
            headers(&[("Max-Forwards", "0068")]).max_forwards(),
            Ok(Some(68))
        );
        assert!(headers(&[("Max-Forwards", "")]).max_forwards().is_err());
    }

    #[test]
    fn option_tags_are_lowercase_tokens() {
        let headers = headers(&[
            ("Supported", "Path, outbound"),
            ("k", "GRUU,,"),
            ("Require", "x"),
        ]);
        assert_eq!(
            headers.option_tags(&HeaderName::Supported),
            ["path", "outbound", "gruu"]
        );
        assert!(headers.option_tags(&HeaderName::Unsupported).is_empty());
    }

    #[test]
    fn vias_split_lists() {
        let headers = headers(&[
            (
                "Via",
                "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP [::1]:5070",
            ),
            ("v", "SIP/2.0/TLS c;branch=z9hG4bK3"),
        ]);
        let vias = headers.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[1].host, "[::1]");
        assert_eq!(vias[2].transport, "TLS");
        assert_eq!(headers.top_via().unwrap(), vias[0]);
        assert_eq!(
            self::headers(&[]).vias(),
            Err(HeaderError::Missing(HeaderName::Via))
        );
        assert!(self::headers(&[("Via", ",")]).vias().is_err());
        assert!(self::headers(&[("Via", ",")]).top_via().is_err());
        assert!(self::headers(&[("Via", "SIP/2.0/UDP")]).vias().is_err());
    }

    #[test]
    fn set_top_via_keeps_the_rest() {
        let mut headers = headers(&[("Via", "SIP/2.0/UDP a;rport, SIP/2.0/UDP b")]);
        let mut top = headers.top_via().unwrap();
        top.set_param("rport", Some("5062".into()));
        top.set_param("received", Some("192.0.2.1".into()));
        headers.set_top_via(&top);
        assert_eq!(
            headers.get(&HeaderName::Via),
            Some("SIP/2.0/UDP a;rport=5062;received=192.0.2.1, SIP/2.0/UDP b")
        );
    }

    #[test]
    fn contacts() {
        assert_eq!(headers(&[]).contacts(), Ok(Contacts::List(vec![])));
        assert_eq!(
            headers(&[("Contact", " * ")]).contacts(),
            Ok(Contacts::Star)
        );
        let list = headers(&[
            ("m", "<sip:a@b>;expires=60, \"X, Y\" <sip:c@d>"),
            ("Contact", "sip:e@f;q=0.5"),
        ])
        .contacts()
        .unwrap();
        let Contacts::List(list) = list else {
            panic!("expected a list")
        };
        assert_eq!(list.len(), 3);
        assert_eq!(list[1].display_name.as_deref(), Some("X, Y"));
        assert_eq!(list[2].param("q").unwrap().value.as_deref(), Some("0.5"));
        assert!(headers(&[("Contact", "*, <sip:a@b>")]).contacts().is_err());
        assert!(headers(&[("Contact", "*"), ("Contact", "*")])
            .contacts()
            .is_err());
        assert!(headers(&[("Contact", "")]).contacts().is_err());
        assert!(headers(&[("Contact", "*;expires=0")]).contacts().is_err());
        let error = headers(&[("Contact", "<sip:a@b")]).contacts().unwrap_err();
        assert!(
            error.to_string().starts_with("invalid Contact header"),
            "{error}"
        );
        let error = headers(&[("Contact", "<tel:+1>")]).contacts().unwrap_err();
        assert_eq!(error.status(), 416);
    }

    #[test]
    fn list_elements_are_bounded() {
        let value = vec!["<sip:a@b>"; LIST_ELEMENT_COUNT_MAX + 1].join(",");
        assert!(headers(&[("Contact", &value)]).contacts().is_err());
        let value = vec!["<sip:a@b>"; LIST_ELEMENT_COUNT_MAX].join(",");
        assert!(headers(&[("Route", &value)])
            .name_addrs(&HeaderName::Route)
            .is_ok());
    }

    #[test]
    fn from_to_and_routes() {
        let headers = headers(&[
            ("f", "\"A\" <sip:a@x>;tag=1"),
            ("To", "sip:b@x"),
            ("Path", "<sip:p1@x;lr>, <sip:p2@x;lr>"),
            ("Route", "<sip:r@x;lr>"),
        ]);
        assert_eq!(headers.from().unwrap().tag(), Some("1"));
        assert_eq!(headers.to().unwrap().tag(), None);
        assert_eq!(headers.name_addrs(&HeaderName::Path).unwrap().len(), 2);
        assert_eq!(headers.name_addrs(&HeaderName::Route).unwrap().len(), 1);
        assert!(headers
            .name_addrs(&HeaderName::RecordRoute)
            .unwrap()
            .is_empty());
        assert_eq!(
            self::headers(&[]).from(),
            Err(HeaderError::Missing(HeaderName::From))
        );
        let error = self::headers(&[("To", "<sip:b@x")]).to().unwrap_err();
        assert!(
            error.to_string().starts_with("invalid To header:"),
            "{error}"
        );
    }
}
