//! Coordinator endpoints as operators write them: `name@host:port`.
//!
//! The name is the coordinator's certificate name, which the TLS client verifies; the address is
//! where to dial. They differ in the lab (every coordinator is on 127.0.0.1) and often in real
//! deployments (a load-balanced or NATed address). Without `name@`, the host is the name.

use std::fmt;
use std::str::FromStr;

/// Where to reach one coordinator and which certificate name to expect there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint {
    /// Certificate name the server must present.
    pub name: String,
    /// `host:port` to dial.
    pub address: String,
}

/// Why an endpoint string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid coordinator endpoint '{input}': {reason} (expected name@host:port or host:port)")]
pub struct EndpointError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| EndpointError {
            input: s.to_string(),
            reason,
        };
        let s_trim = s.trim();
        let rest = s_trim
            .strip_prefix("https://")
            .unwrap_or(s_trim)
            .trim_end_matches('/');
        let (name, address) = match rest.split_once('@') {
            Some((n, a)) => (Some(n), a),
            None => (None, rest),
        };
        let (host, port) = address.rsplit_once(':').ok_or_else(|| err("no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(err("empty host"));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(err("port is not a number from 1 to 65535"));
        }
        let name = name.unwrap_or(host);
        if name.is_empty() {
            return Err(err("empty name before '@'"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(err("the name may hold only letters, digits, '-' and '.'"));
        }
        Ok(Endpoint {
            name: name.to_ascii_lowercase(),
            address: address.to_string(),
        })
    }
}

impl TryFrom<String> for Endpoint {
    type Error = EndpointError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.to_string()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}

/// Parses a comma-separated list (the `FAILBACK_COORDINATORS` form).
pub fn parse_list(s: &str) -> Result<Vec<Endpoint>, EndpointError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_and_plain() {
        let e: Endpoint = "coord1@127.0.0.1:7443".parse().unwrap();
        assert_eq!(e.name, "coord1");
        assert_eq!(e.address, "127.0.0.1:7443");
        let e: Endpoint = "Coord.Example.com:7443".parse().unwrap();
        assert_eq!(e.name, "coord.example.com");
        assert_eq!(e.to_string(), "coord.example.com@Coord.Example.com:7443");
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            "coord1",
            "coord1@:1",
            "x@host:0",
            "x@host:99999",
            "a b@h:1",
            "@h:1",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
        assert_eq!(parse_list("a@h:1, b@h:2,").unwrap().len(), 2);
    }
}
