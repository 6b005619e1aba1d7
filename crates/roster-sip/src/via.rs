//! The Via header field value (RFC 3261 §20.42) with the `branch`, `received` and `rport`
//! (RFC 3581) parameters: [`Via`].

use std::fmt;

use crate::error::HeaderError;
use crate::header::HeaderName;
use crate::scan::{
    check_host, excerpt, host_ip, is_token_byte, parse_generic_params, parse_port, trim_lws,
    trim_lws_start,
};
use crate::uri::Param;

/// One via-parm: `SIP/2.0/UDP host[:port];params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// The transport, upper-cased: `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...
    pub transport: String,
    /// The sent-by host as written; an IPv6 reference keeps its brackets.
    pub host: String,
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// Parameters in order; values as written.
    pub params: Vec<Param>,
}

impl Via {
    /// Parses one via-parm. White space may surround `/`, `:`, `;` and `=`.
    pub fn parse(text: &str) -> Result<Via, HeaderError> {
        parse_via(text).map_err(|reason| HeaderError::invalid(HeaderName::Via, reason))
    }

    /// A Via with no parameters.
    pub fn new(transport: impl Into<String>, host: impl Into<String>, port: Option<u16>) -> Via {
        Via {
            transport: transport.into().to_ascii_uppercase(),
            host: host.into(),
            port,
            params: Vec::new(),
        }
    }

    /// The `branch` value, if present with a value.
    pub fn branch(&self) -> Option<&str> {
        self.param_value("branch")
    }

    /// The `received` value, if present with a value.
    pub fn received(&self) -> Option<&str> {
        self.param_value("received")
    }

    /// `None` when there is no `rport`; `Some(None)` for a bare `;rport` (or a value that is not
    /// a port); `Some(Some(port))` for `;rport=port`.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|param| {
            param
                .value
                .as_deref()
                .and_then(|value| parse_port(value).ok())
        })
    }

    /// The first parameter with this name (compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params
            .iter()
            .find(|param| param.name.eq_ignore_ascii_case(name))
    }

    /// Sets the first parameter named `name` (case-insensitively) to `value`, or appends it.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self
            .params
            .iter_mut()
            .find(|param| param.name.eq_ignore_ascii_case(name))
        {
            Some(param) => param.value = value,
            None => self.params.push(Param {
                name: name.to_string(),
                value,
            }),
        }
    }

    /// The sent-by host as an IP address, if it is an IPv4 address or an IPv6 reference.
    pub fn host_ip(&self) -> Option<std::net::IpAddr> {
        host_ip(&self.host)
    }

    fn param_value(&self, name: &str) -> Option<&str> {
        self.param(name).and_then(|param| param.value.as_deref())
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
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
        Ok(())
    }
}

impl std::str::FromStr for Via {
    type Err = HeaderError;

    fn from_str(text: &str) -> Result<Via, HeaderError> {
        Via::parse(text)
    }
}

/// `sent-protocol LWS sent-by *( SEMI via-params )`.
fn parse_via(text: &str) -> Result<Via, String> {
    let text = trim_lws(text);
    let (protocol, rest) = take_token(text, "protocol name")?;
    if !protocol.eq_ignore_ascii_case("SIP") {
        return Err(format!("unsupported protocol {}", excerpt(protocol)));
    }
    let rest = expect_slash(rest)?;
    let (version, rest) = take_token(rest, "protocol version")?;
    if version != "2.0" {
        return Err(format!("unsupported version {}", excerpt(version)));
    }
    let rest = expect_slash(rest)?;
    let (transport, rest) = take_token(rest, "transport")?;
    let after_transport = trim_lws_start(rest);
    if after_transport.len() == rest.len() {
        return Err("missing white space before sent-by".into());
    }
    let (host, port, rest) = parse_sent_by(after_transport)?;
    let mut params = Vec::new();
    parse_generic_params(rest, &mut params)?;
    check_via_params(&params)?;
    Ok(Via {
        transport: transport.to_ascii_uppercase(),
        host: host.to_string(),
        port,
        params,
    })
}

/// Splits a non-empty token off the front of `text`.
fn take_token<'a>(text: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    let len = text
        .bytes()
        .position(|byte| !is_token_byte(byte))
        .unwrap_or(text.len());
    if len == 0 {
        return Err(format!("missing {what} at {}", excerpt(text)));
    }
    Ok(text.split_at(len))
}

/// `SWS "/" SWS`.
fn expect_slash(text: &str) -> Result<&str, String> {
    trim_lws_start(text)
        .strip_prefix('/')
        .map(trim_lws_start)
        .ok_or_else(|| format!("expected '/' at {}", excerpt(text)))
}

/// `host [ SWS ":" SWS port ]`, returning the rest.
fn parse_sent_by(text: &str) -> Result<(&str, Option<u16>, &str), String> {
    let host_len = if text.starts_with('[') {
        text.find(']')
            .map(|index| index + 1)
            .ok_or_else(|| format!("unterminated IPv6 reference {}", excerpt(text)))?
    } else {
        text.bytes()
            .position(|byte| !(byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.'))
            .unwrap_or(text.len())
    };
    let (host, rest) = text.split_at(host_len);
    check_host(host)?;
    let after_host = trim_lws_start(rest);
    let Some(after_colon) = after_host.strip_prefix(':') else {
        return Ok((host, None, rest));
    };
    let after_colon = trim_lws_start(after_colon);
    let digits_len = after_colon
        .bytes()
        .position(|byte| !byte.is_ascii_digit())
        .unwrap_or(after_colon.len());
    let (digits, rest) = after_colon.split_at(digits_len);
    Ok((host, Some(parse_port(digits)?), rest))
}

/// `rport` carries a port if it has a value; `branch` and `received` need values.
fn check_via_params(params: &[Param]) -> Result<(), String> {
    for param in params {
        let value = param.value.as_deref();
        if param.name.eq_ignore_ascii_case("rport") {
            if let Some(value) = value {
                parse_port(value).map_err(|reason| format!("invalid rport: {reason}"))?;
            }
        } else if (param.name.eq_ignore_ascii_case("branch")
            || param.name.eq_ignore_ascii_case("received"))
            && value.is_none()
        {
            return Err(format!("{} without a value", param.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> Via {
        let via = Via::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(Via::parse(&via.to_string()).unwrap(), via, "{text}");
        via
    }

    #[test]
    fn parses_plain_via() {
        let via = round_trip("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport");
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.host, "pc33.atlanta.com");
        assert_eq!(via.port, Some(5066));
        assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(via.rport(), Some(None));
        assert_eq!(via.received(), None);
    }

    #[test]
    fn parses_torture_white_space() {
        let via = round_trip("SIP  /   2.0 /UDP 192.0.2.2;rport;branch=390skdjuw");
        assert_eq!(via.host, "192.0.2.2");
        let via =
            round_trip("SIP  / 2.0  / tcp     spindle.example.com   ; branch  =   z9hG4bK9ikj8");
        assert_eq!(via.transport, "TCP");
        assert_eq!(via.branch(), Some("z9hG4bK9ikj8"));
        let via = round_trip("sip/2.0/udp host : 5060 ;received=10.0.0.1;rport=1234");
        assert_eq!(via.port, Some(5060));
        assert_eq!(via.received(), Some("10.0.0.1"));
        assert_eq!(via.rport(), Some(Some(1234)));
    }

    #[test]
    fn parses_ipv6() {
        let via = round_trip(
            "SIP/2.0/TCP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111;received=2001:db8::9:255",
        );
        assert_eq!(via.host, "[2001:db8::9:1]");
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.received(), Some("2001:db8::9:255"));
        assert_eq!(via.host_ip(), Some("2001:db8::9:1".parse().unwrap()));
        let via = round_trip("SIP/2.0/UDP [::1];received=[::1]");
        assert_eq!(via.port, None);
    }

    #[test]
    fn set_param_replaces_or_appends() {
        let mut via = Via::parse("SIP/2.0/UDP host;RPORT;branch=z9hG4bK1").unwrap();
        via.set_param("rport", Some("5062".into()));
        via.set_param("received", Some("::1".into()));
        assert_eq!(
            via.to_string(),
            "SIP/2.0/UDP host;RPORT=5062;branch=z9hG4bK1;received=::1"
        );
        assert_eq!(Via::parse(&via.to_string()).unwrap(), via);
        assert_eq!(via.rport(), Some(Some(5062)));
        let built = Via::new("udp", "[::1]", Some(5060));
        assert_eq!(built.to_string(), "SIP/2.0/UDP [::1]:5060");
    }

    #[test]
    fn malformed() {
        for text in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/2.0 host",
            "SIP/3.0/UDP host",
            "HTTP/2.0/UDP host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host:70000",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP [::1]:x",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host;rport=abc",
            "SIP/2.0/UDP host;received",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP host;branch=\"open",
            "SIP/2.0/UDP host;",
        ] {
            assert!(Via::parse(text).is_err(), "{text:?} should fail");
        }
        let error = Via::parse("SIP/2.0/UDP host;rport=abc").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid Via header: invalid rport"),
            "{error}"
        );
    }
}
