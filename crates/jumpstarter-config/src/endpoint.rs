//! Controller and router endpoints (`endpoint:` of client and exporter configs, `JMP_ENDPOINT`,
//! `--endpoint`, the router endpoints a controller names).
//!
//! Upstream hands the string to grpc, so the accepted forms are grpc's target syntax:
//! `host`, `host:port`, `[v6]`, `[v6]:port`, a bare IPv6 address, `dns:///host:port`,
//! `dns://authority/host:port`, `dns:host:port`, `ipv4:a.b.c.d:port`, `ipv6:[v6]:port`, and
//! `unix:PATH` / `unix:///PATH`. The port defaults to 443, as grpc's does for TLS channels.
//! Beyond grpc: `https://`, `grpcs://`, `http://` and `grpc://` in front are dropped (the
//! channel is TLS either way), and a bare absolute path is a unix socket, as our dialer always
//! took it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::common::Origin;
use crate::error::ConfigError;

/// The port of an endpoint that names none (grpc's default for TLS).
pub const DEFAULT_PORT: u16 = 443;

/// Where a controller or router is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A DNS name or an IP address (IPv6 without brackets), and a port.
    Tcp { host: String, port: u16 },
    /// A unix socket.
    Unix(PathBuf),
}

/// Why a string is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid endpoint '{given}': {reason} (expected HOST[:PORT], e.g. jumpstarter.example.com:443)"
)]
pub struct EndpointError {
    pub given: String,
    pub reason: String,
}

impl Endpoint {
    /// Parses an endpoint (see the module docs for the forms).
    pub fn parse(given: &str) -> Result<Endpoint, EndpointError> {
        let bad = |reason: String| EndpointError {
            given: given.to_owned(),
            reason,
        };
        let s = given.trim();
        if s.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("no socket path after 'unix:'".into()));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        let mut rest = s;
        for scheme in ["https://", "grpcs://", "http://", "grpc://"] {
            if let Some(after) = rest
                .get(..scheme.len())
                .filter(|p| p.eq_ignore_ascii_case(scheme))
                .and_then(|_| rest.get(scheme.len()..))
            {
                rest = after;
                if let Some((hostport, path)) = rest.split_once('/') {
                    if !path.is_empty() {
                        return Err(bad(format!(
                            "a gRPC endpoint has no path ('/{path}'); give only the host and port"
                        )));
                    }
                    rest = hostport;
                }
                break;
            }
        }
        if let Some(r) = rest.strip_prefix("dns:") {
            // dns:host:port, dns:///host:port or dns://authority/host:port
            rest = match r.strip_prefix("//") {
                Some(r) => match r.split_once('/') {
                    Some((_authority, name)) => name,
                    None => return Err(bad("expected dns:///HOST:PORT".into())),
                },
                None => r,
            };
        } else if let Some(r) = rest.strip_prefix("ipv4:") {
            let (host, port) = split_host_port(r).map_err(bad)?;
            if host.parse::<Ipv4Addr>().is_err() {
                return Err(bad(format!("'{host}' is not an IPv4 address")));
            }
            return Ok(Endpoint::Tcp {
                host: host.to_owned(),
                port: port.unwrap_or(DEFAULT_PORT),
            });
        } else if let Some(r) = rest.strip_prefix("ipv6:") {
            let (host, port) = split_host_port(r).map_err(bad)?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(bad(format!("'{host}' is not an IPv6 address")));
            }
            return Ok(Endpoint::Tcp {
                host: host.to_owned(),
                port: port.unwrap_or(DEFAULT_PORT),
            });
        } else if let Some((scheme, _)) = rest.split_once("://") {
            return Err(bad(format!(
                "unknown scheme '{scheme}://' (gRPC endpoints take dns:, unix:, or none)"
            )));
        }
        let (host, port) = split_host_port(rest).map_err(bad)?;
        check_host(host).map_err(bad)?;
        Ok(Endpoint::Tcp {
            host: host.to_owned(),
            port: port.unwrap_or(DEFAULT_PORT),
        })
    }
}

impl Endpoint {
    /// What to write into a config file for `given` (checked first): the text as given when
    /// grpc reads it the same way, else the parsed form (a dropped `https://`, a bare socket
    /// path as `unix:PATH`), so upstream's tools read the file too.
    pub fn for_file(given: &str) -> Result<String, EndpointError> {
        let parsed = Endpoint::parse(given)?;
        let s = given.trim();
        let lower = s.to_ascii_lowercase();
        let ours_only = s.starts_with('/')
            || ["https://", "grpcs://", "http://", "grpc://"]
                .iter()
                .any(|p| lower.starts_with(p));
        Ok(if ours_only {
            parsed.to_string()
        } else {
            s.to_owned()
        })
    }
}

impl fmt::Display for Endpoint {
    /// `host:port` (`[v6]:port`), or `unix:PATH`: a form [`Endpoint::parse`] reads back, and
    /// grpc too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address, as grpc splits them.
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(r) = s.strip_prefix('[') {
        let Some((host, after)) = r.split_once(']') else {
            return Err("'[' without a closing ']'".into());
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("'{host}' in brackets is not an IPv6 address"));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, Some(port(p)?))),
                None => Err(format!("unexpected '{after}' after ']'")),
            },
        };
    }
    match s.matches(':').count() {
        0 => Ok((s, None)),
        1 => {
            let (host, p) = s.split_once(':').unwrap_or((s, ""));
            Ok((host, Some(port(p)?)))
        }
        // Several colons without brackets: grpc takes the whole as an IPv6 address.
        _ if s.parse::<Ipv6Addr>().is_ok() => Ok((s, None)),
        _ => Err("several ':'; write an IPv6 address with a port as [ADDRESS]:PORT".into()),
    }
}

fn port(p: &str) -> Result<u16, String> {
    if p.is_empty() {
        return Err("no port after ':'".into());
    }
    match p.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be dialled".into()),
        Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("the port '{p}' is not a number from 1 to 65535")),
    }
}

/// A DNS name or an IP address.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no host name".into());
    }
    if host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() {
        return Ok(());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "a host name cannot contain {}",
            match c {
                ' ' => "spaces".to_owned(),
                c if c.is_control() => format!("the control character {:?}", c),
                c => format!("'{c}'"),
            }
        ));
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters".into());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    for label in name.split('.') {
        if label.is_empty() {
            return Err("the host name has an empty label ('..' or a leading '.')".into());
        }
        if label.len() > 63 {
            return Err(format!("the label '{label}' is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the label '{label}' starts or ends with '-'"));
        }
    }
    Ok(())
}

/// Parses an endpoint read from `origin`; a malformed one is an error at that place
/// (`file:line:col`, `$JMP_ENDPOINT`, the flag), or in `describe` when the origin is unknown.
pub(crate) fn parse_at(
    given: &str,
    origin: &Origin,
    describe: &str,
) -> Result<Endpoint, ConfigError> {
    Endpoint::parse(given).map_err(|e| {
        let message = e.to_string();
        match origin {
            Origin::File(at) => ConfigError::Invalid {
                at: at.clone(),
                message,
            },
            Origin::Env(var) => ConfigError::Env {
                var: var.clone(),
                message,
            },
            Origin::Flag(flag) => ConfigError::NotFound(format!("{flag}: {message}")),
            Origin::Default => ConfigError::NotFound(format!("{describe}: {message}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn grpc_forms() {
        let ok = |s: &str| Endpoint::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("127.0.0.1"), tcp("127.0.0.1", 443));
        assert_eq!(ok("127.0.0.1:1909"), tcp("127.0.0.1", 1909));
        assert_eq!(ok("ctl.example.com"), tcp("ctl.example.com", 443));
        assert_eq!(ok("ctl.example.com.:8082"), tcp("ctl.example.com.", 8082));
        assert_eq!(ok("jumpstarter_grpc:1"), tcp("jumpstarter_grpc", 1));
        assert_eq!(ok("[::1]:80"), tcp("::1", 80));
        assert_eq!(ok("[::1]"), tcp("::1", 443));
        assert_eq!(ok("::1"), tcp("::1", 443));
        assert_eq!(ok("dns:///ctl:1"), tcp("ctl", 1));
        assert_eq!(ok("dns://8.8.8.8/ctl:1"), tcp("ctl", 1));
        assert_eq!(ok("dns:ctl"), tcp("ctl", 443));
        assert_eq!(ok("ipv4:10.0.0.1:5"), tcp("10.0.0.1", 5));
        assert_eq!(ok("ipv6:[fe80::1]:5"), tcp("fe80::1", 5));
        assert_eq!(ok("https://ctl:8082"), tcp("ctl", 8082));
        assert_eq!(ok("HTTPS://ctl:8082/"), tcp("ctl", 8082));
        assert_eq!(ok("https://ctl"), tcp("ctl", 443));
        assert_eq!(ok("grpc://[::1]:9"), tcp("::1", 9));
        assert_eq!(ok("  ctl:1\n"), tcp("ctl", 1));
        assert_eq!(
            ok("unix:///run/ctl.sock"),
            Endpoint::Unix("/run/ctl.sock".into())
        );
        assert_eq!(ok("unix:rel.sock"), Endpoint::Unix("rel.sock".into()));
        assert_eq!(ok("/run/ctl.sock"), Endpoint::Unix("/run/ctl.sock".into()));
        for e in ["ctl:1", "[::1]:80", "unix:/run/x", "10.1.2.3:443"] {
            assert_eq!(ok(&ok(e).to_string()), ok(e), "{e}");
        }
        assert_eq!(ok("[::1]:80").to_string(), "[::1]:80");
        let file = |s: &str| Endpoint::for_file(s).unwrap();
        assert_eq!(file(" ctl "), "ctl");
        assert_eq!(file("dns:///ctl:1"), "dns:///ctl:1");
        assert_eq!(file("https://ctl:8082/"), "ctl:8082");
        assert_eq!(file("https://ctl"), "ctl:443");
        assert_eq!(file("/run/s"), "unix:/run/s");
        assert!(Endpoint::for_file("not an endpoint").is_err());
    }

    #[test]
    fn malformed_endpoints_say_why() {
        let why = |s: &str| Endpoint::parse(s).unwrap_err().reason;
        assert_eq!(why("not an endpoint"), "a host name cannot contain spaces");
        assert_eq!(why(""), "it is empty");
        assert_eq!(why("ctl:"), "no port after ':'");
        assert_eq!(why("ctl:0"), "port 0 cannot be dialled");
        assert!(why("ctl:http").contains("not a number"));
        assert!(why("ctl:+80").contains("not a number"));
        assert!(why("ctl:70000").contains("not a number"));
        assert!(why("https://ctl:1/api").contains("no path"));
        assert!(why("ftp://ctl:1").contains("unknown scheme"));
        assert!(why("a:b:c").contains("several ':'"));
        assert!(why("[ctl]:1").contains("not an IPv6"));
        assert!(why("[::1").contains("closing"));
        assert!(why("ipv4:ctl:1").contains("not an IPv4"));
        assert!(why("ctl..lab:1").contains("empty label"));
        assert!(why("-ctl:1").contains("'-'"));
        assert!(why("unix:").contains("socket path"));
        let e = Endpoint::parse("not an endpoint").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid endpoint 'not an endpoint': a host name cannot contain spaces \
             (expected HOST[:PORT], e.g. jumpstarter.example.com:443)"
        );
    }
}
