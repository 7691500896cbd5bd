//! The `url:` of a serial driver: which of pyserial's URL forms we serve.
//!
//! | form | meaning |
//! |---|---|
//! | a path (`/dev/ttyUSB0`, `/dev/serial/by-id/...`) | a local tty |
//! | `loop://` | an in-memory echo (upstream's driver special-cases it the same way) |
//! | `socket://HOST:PORT` | raw TCP |
//!
//! Every other scheme (`rfc2217://`, `spy://`, `hwgrep://`, `alt://`, `cp2110://`, or one pyserial
//! does not know either) is refused when the config is loaded, naming the URL and the forms
//! that work.

use std::fmt;
use std::path::PathBuf;

/// The forms of `url:` listed in error messages.
pub const SUPPORTED_FORMS: &str =
    "a device path (e.g. /dev/ttyUSB0), loop://, or socket://HOST:PORT";

/// A parsed serial URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialUrl {
    /// A local tty, by path.
    Device(PathBuf),
    /// `loop://`: every byte written comes back.
    Loop,
    /// `socket://host:port`: a TCP connection.
    Socket { host: String, port: u16 },
}

impl SerialUrl {
    /// Parses a URL as pyserial's `serial_for_url` would dispatch it: anything with `://` is a
    /// URL whose scheme selects a handler, anything else is a device path.
    pub fn parse(url: &str) -> Result<SerialUrl, UrlError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            if url.trim().is_empty() {
                return Err(UrlError::new(url, "the URL is empty"));
            }
            return Ok(SerialUrl::Device(PathBuf::from(url)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "loop" => {
                let (path, query) = split_query(rest);
                if !path.is_empty() {
                    return Err(UrlError::new(url, "loop:// takes no address"));
                }
                check_options(url, query)?;
                Ok(SerialUrl::Loop)
            }
            "socket" => parse_socket(url, rest),
            "rfc2217" => Err(UrlError::new(
                url,
                "rfc2217:// (Telnet COM port control) is not supported by this exporter; \
                 use socket://HOST:PORT for a raw TCP serial server",
            )),
            s @ ("spy" | "hwgrep" | "alt" | "cp2110") => Err(UrlError::new(
                url,
                format!("the {s}:// handler of pyserial is not supported by this exporter"),
            )),
            other => Err(UrlError::new(
                url,
                format!("unknown URL scheme `{other}://`"),
            )),
        }
    }
}

impl fmt::Display for SerialUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialUrl::Device(p) => write!(f, "{}", p.display()),
            SerialUrl::Loop => f.write_str("loop://"),
            SerialUrl::Socket { host, port } if host.contains(':') => {
                write!(f, "socket://[{host}]:{port}")
            }
            SerialUrl::Socket { host, port } => write!(f, "socket://{host}:{port}"),
        }
    }
}

/// A URL this exporter cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported serial URL `{url}`: {reason}; supported forms: {SUPPORTED_FORMS}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

impl UrlError {
    fn new(url: &str, reason: impl Into<String>) -> Self {
        UrlError {
            url: url.to_owned(),
            reason: reason.into(),
        }
    }
}

fn split_query(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    }
}

/// pyserial's URL handlers accept one option, `logging=LEVEL` (its own debug logging); we
/// accept and ignore it, and refuse anything else as pyserial does.
fn check_options(url: &str, query: Option<&str>) -> Result<(), UrlError> {
    for option in query.unwrap_or("").split('&').filter(|o| !o.is_empty()) {
        let name = option.split_once('=').map_or(option, |(n, _)| n);
        if name != "logging" {
            return Err(UrlError::new(url, format!("unknown option `{name}`")));
        }
    }
    Ok(())
}

fn parse_socket(url: &str, rest: &str) -> Result<SerialUrl, UrlError> {
    let (authority, query) = split_query(rest);
    check_options(url, query)?;
    let authority = authority.trim_end_matches('/');
    let malformed = || UrlError::new(url, "expected socket://HOST:PORT");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, port) = v6.split_once("]:").ok_or_else(malformed)?;
        (host, port)
    } else {
        authority.rsplit_once(':').ok_or_else(malformed)?
    };
    if host.is_empty() || host.contains('/') {
        return Err(malformed());
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| UrlError::new(url, format!("`{port}` is not a port number (1-65535)")))?;
    Ok(SerialUrl::Socket {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            SerialUrl::parse("/dev/ttyUSB0").unwrap(),
            SerialUrl::Device("/dev/ttyUSB0".into())
        );
        assert_eq!(SerialUrl::parse("loop://").unwrap(), SerialUrl::Loop);
        assert_eq!(
            SerialUrl::parse("LOOP://?logging=debug").unwrap(),
            SerialUrl::Loop
        );
        assert_eq!(
            SerialUrl::parse("socket://127.0.0.1:5000").unwrap(),
            SerialUrl::Socket {
                host: "127.0.0.1".into(),
                port: 5000
            }
        );
        let v6 = SerialUrl::parse("socket://[::1]:23?logging=info").unwrap();
        assert_eq!(
            v6,
            SerialUrl::Socket {
                host: "::1".into(),
                port: 23
            }
        );
        assert_eq!(v6.to_string(), "socket://[::1]:23");
    }

    #[test]
    fn refused_forms_name_the_url_and_the_supported_ones() {
        for (url, reason) in [
            (
                "rfc2217://host:2217",
                "rfc2217:// (Telnet COM port control)",
            ),
            ("hwgrep://0403:6001", "hwgrep://"),
            ("spy:///dev/ttyUSB0", "spy://"),
            ("bogus://x", "unknown URL scheme `bogus://`"),
            ("socket://host", "expected socket://HOST:PORT"),
            ("socket://host:99999", "`99999` is not a port number"),
            ("socket://host:0", "`0` is not a port number"),
            ("socket://:80", "expected socket://HOST:PORT"),
            ("socket://h:1?timeout=3", "unknown option `timeout`"),
            ("loop://x", "loop:// takes no address"),
            ("", "the URL is empty"),
        ] {
            let err = SerialUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(reason), "{url}: {err}");
            assert!(err.contains(&format!("`{url}`")), "{err}");
            assert!(err.ends_with(SUPPORTED_FORMS), "{err}");
        }
    }
}
