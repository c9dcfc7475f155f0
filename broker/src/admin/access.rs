//! Who may use the admin endpoint. Two checks, before anything is read:
//!
//! - **Host**: a request whose `Host` names a host other than an IP
//!   address, `localhost` or one of `[admin] hosts` is refused (403). A web
//!   page the operator visits cannot then read the endpoint through a DNS
//!   name it controls that resolves to the broker (DNS rebinding).
//! - **Token**: with `[admin] token_file`, a request must carry
//!   `Authorization: Bearer TOKEN` (401 otherwise, compared in constant
//!   time). The file holds the token, at least [`MIN_TOKEN`] bytes after
//!   trimming whitespace; it is read when the broker starts.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::AdminConfig;

/// The shortest token accepted, in bytes.
pub const MIN_TOKEN: usize = 16;

/// Why the admin endpoint's access settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read the admin token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the admin token file {path} holds {len} bytes; a token needs at least {MIN_TOKEN}")]
    Short { path: PathBuf, len: usize },
}

/// The endpoint's access rules.
#[derive(Debug, Default)]
pub struct Access {
    token: Option<Vec<u8>>,
    /// Extra host names accepted in `Host`, lower-case.
    hosts: Vec<String>,
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Denied {
    /// 403: `Host` names an unknown host.
    Host,
    /// 401: no token, or the wrong one.
    Token,
}

impl Access {
    /// The rules of `[admin]`, reading the token file.
    pub fn from_config(c: &AdminConfig) -> Result<Access, AccessError> {
        let token = match &c.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
                    path: path.clone(),
                    source,
                })?;
                let token = text.trim();
                if token.len() < MIN_TOKEN {
                    return Err(AccessError::Short {
                        path: path.clone(),
                        len: token.len(),
                    });
                }
                Some(token.as_bytes().to_vec())
            }
            None => None,
        };
        Ok(Access {
            token,
            hosts: c.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        })
    }

    /// Whether requests need a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks a request's `Host` and `Authorization` headers.
    pub(super) fn check(
        &self,
        host: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<(), Denied> {
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Err(Denied::Host);
            }
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = authorization
            .and_then(|a| a.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().as_bytes());
        match given {
            Some(given) if same(given, token) => Ok(()),
            _ => Err(Denied::Token),
        }
    }

    /// An IP address, `localhost` or a configured name (any port).
    fn host_allowed(&self, value: &str) -> bool {
        let value = value.trim();
        let name = if let Some(rest) = value.strip_prefix('[') {
            // [IPv6]:port
            rest.split(']').next().unwrap_or_default()
        } else {
            match value.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => value,
            }
        };
        name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// Equal, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>, hosts: &[&str]) -> Access {
        Access {
            token: token.map(|t| t.as_bytes().to_vec()),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn hosts_are_ip_addresses_localhost_or_configured() {
        let a = access(None, &["broker.example.com"]);
        for ok in [
            "127.0.0.1:8888",
            "10.1.2.3",
            "[::1]:8888",
            "localhost:8888",
            "LOCALHOST",
            "broker.example.com:8888",
        ] {
            assert_eq!(a.check(Some(ok), None), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example:8888",
            "rebind.attacker.net",
            "broker.example.com.evil",
        ] {
            assert_eq!(a.check(Some(bad), None), Err(Denied::Host), "{bad}");
        }
        // HTTP/1.0 without Host.
        assert_eq!(a.check(None, None), Ok(()));
    }

    #[test]
    fn the_token_is_required_when_configured() {
        let a = access(Some("0123456789abcdef"), &[]);
        let host = Some("127.0.0.1");
        assert_eq!(a.check(host, Some("Bearer 0123456789abcdef")), Ok(()));
        assert_eq!(a.check(host, Some("bearer 0123456789abcdef")), Ok(()));
        for bad in [
            None,
            Some("Bearer 0123456789abcdeF"),
            Some("Bearer 0123456789abcde"),
            Some("Basic 0123456789abcdef"),
            Some("0123456789abcdef"),
        ] {
            assert_eq!(a.check(host, bad), Err(Denied::Token), "{bad:?}");
        }
        // The Host check comes first.
        assert_eq!(
            a.check(Some("evil.example"), Some("Bearer 0123456789abcdef")),
            Err(Denied::Host)
        );
    }
}
