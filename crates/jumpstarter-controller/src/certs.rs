//! The controller's TLS certificate: a given cert/key pair, or a self-signed certificate made
//! on first start whose SAN holds the advertised host (plus `localhost`, `127.0.0.1`, `::1`).
//! Python clients in "insecure" mode pin whatever the server presents and still check the
//! host name against it, so the SAN matters even then. The certificate is kept in the data
//! directory (so configs printed with `tls.ca` stay valid across restarts) and made again
//! when the advertised host changes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] jumpstarter_core::tls::TlsError),
}

/// Paths of the served certificate and key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The self-signed pair in `dir` for `host`, made (or remade) when needed.
pub fn self_signed(dir: &Path, host: &str) -> Result<CertFiles, CertError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let files = CertFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let host_file = dir.join("host");
    let current = std::fs::read_to_string(&host_file).ok();
    if current.as_deref() == Some(host) && files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let mut names = vec![host.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    for n in &names {
        let san = match n.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(n.clone().try_into()?),
        };
        params.subject_alt_names.push(san);
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "jumpstarter controller");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    write_private(&files.key, key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, cert.pem()).map_err(io_err(&files.cert))?;
    std::fs::write(&host_file, host).map_err(io_err(&host_file))?;
    Ok(files)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))
}

/// The rustls server config (ALPN h2) for a pair.
pub fn server_config(files: &CertFiles) -> Result<Arc<rustls::ServerConfig>, CertError> {
    Ok(jumpstarter_core::tls::server_config(
        &files.cert,
        &files.key,
    )?)
}

/// Host part of `host:port` (brackets of IPv6 literals removed).
pub fn host_of(endpoint: &str) -> &str {
    let h = match endpoint.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => endpoint,
    };
    h.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("localhost:8082"), "localhost");
        assert_eq!(host_of("[::1]:8082"), "::1");
        assert_eq!(host_of("ctl.example.com"), "ctl.example.com");
    }

    #[test]
    fn self_signed_is_reused_until_the_host_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed(dir.path(), "ctl.example.com").unwrap();
        let pem = std::fs::read(&a.cert).unwrap();
        self_signed(dir.path(), "ctl.example.com").unwrap();
        assert_eq!(std::fs::read(&a.cert).unwrap(), pem);
        self_signed(dir.path(), "10.0.0.1").unwrap();
        assert_ne!(std::fs::read(&a.cert).unwrap(), pem);
        server_config(&a).unwrap();
    }
}
