//! TLS for direct mode: the exporter's TCP listener and the clients that dial it.
//!
//! rustls with the ring provider, always passed explicitly (no process-wide default needed).
//! Both sides negotiate `h2` with ALPN, as gRPC requires.
//!
//! Client trust (protocol notes §2.5, cli-config §4.5):
//! * [`ServerTrust::Roots`]: verify the server against trust roots, by default
//!   [`default_roots`]: the PEM file named by `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` (the variable
//!   grpc-core honours, so one setting serves upstream's tools and ours), else the system store
//!   (`SSL_CERT_FILE` / `SSL_CERT_DIR` respected).
//! * [`ServerTrust::AnyCertificate`]: encrypt but do not authenticate the server. Upstream's
//!   `jmp` does this for `JMP_GRPC_INSECURE=1` (it fetches the presented certificate and then
//!   trusts it, which authenticates nothing either).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The environment variable naming a PEM file of trust roots (grpc-core's).
pub const ROOTS_ENV: &str = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("invalid TLS setup: {0}")]
    Config(String),
    #[error("no trust roots: {0}")]
    NoRoots(String),
}

/// The crypto provider every TLS config here uses.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file (at least one).
pub fn certs_from_pem_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn key_from_pem_file(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = read(path)?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        message: format!("no usable private key: {e}"),
    })
}

/// The server side of the direct-mode listener: certificate chain and key from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs_from_pem_file(cert)?;
    let key = key_from_pem_file(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// How a client decides to trust the server.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    Roots(Arc<RootCertStore>),
    AnyCertificate,
}

/// Roots from a PEM file.
pub fn roots_from_pem_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs_from_pem_file(path)?);
    if added == 0 {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no usable CA certificate".into(),
        });
    }
    Ok(roots)
}

/// `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` if set, else the system trust store.
pub fn default_roots() -> Result<RootCertStore, TlsError> {
    if let Some(path) = std::env::var_os(ROOTS_ENV).filter(|v| !v.is_empty()) {
        return roots_from_pem_file(Path::new(&path));
    }
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "the system trust store is empty".into());
        return Err(TlsError::NoRoots(format!(
            "{why}; set {ROOTS_ENV} to a PEM file of trusted certificates"
        )));
    }
    Ok(roots)
}

/// A client TLS config with ALPN `h2`.
pub fn client_config(trust: &ServerTrust) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = match trust {
        ServerTrust::Roots(roots) => builder
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
        ServerTrust::AnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider().signature_verification_algorithms,
            )))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The name a client checks the certificate against: an IP address or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| TlsError::Config(format!("'{host}' is not a valid host name for TLS")))
}

/// Accepts any server certificate (handshake signatures are still checked).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "hello").unwrap();
        let err = server_config(&bad, &bad).unwrap_err().to_string();
        assert!(err.contains("bad.pem: no CERTIFICATE block found"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = server_config(&missing, &bad).unwrap_err().to_string();
        assert!(err.starts_with("cannot read "), "{err}");
        assert!(roots_from_pem_file(&bad).is_err());
    }

    #[test]
    fn server_names() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("exporter.lab").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
