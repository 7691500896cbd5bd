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

/// The server side of a listener (direct mode, the controller): certificate chain and key from
/// PEM files. A certificate that expired or is not valid yet is served anyway (fixing it must
/// not need downtime), with a warning naming the file and the date, since clients will refuse
/// it.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs_from_pem_file(cert)?;
    if let Some(problem) = chain.first().and_then(|c| validity_problem(c, now_unix())) {
        tracing::warn!("the TLS certificate {}: {problem}", cert.display());
    }
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

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What is wrong with the validity period of `cert` at `now` (unix seconds), if anything.
pub fn validity_problem(cert: &CertificateDer<'_>, now: i64) -> Option<String> {
    let (not_before, not_after) = validity(cert.as_ref())?;
    if now > not_after {
        Some(format!(
            "expired on {}; clients will refuse it until it is replaced",
            show_time(not_after)
        ))
    } else if now < not_before {
        Some(format!(
            "is not valid before {}; clients will refuse it until then",
            show_time(not_before)
        ))
    } else {
        None
    }
}

/// One DER element: its tag, its contents, and what follows it.
fn der_element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in data.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, data.get(header..end)?, data.get(end..)?))
}

/// `notBefore` and `notAfter` of an X.509 certificate, as unix seconds.
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, cert, _) = der_element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der_element(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = der_element(tbs)?;
    if tag != 0xa0 {
        // No explicit version: that element was the serial number.
        rest = tbs;
    }
    let (0x02, _, rest) = der_element(rest)? else {
        return None;
    };
    let (SEQUENCE, _, rest) = der_element(rest)? else {
        return None;
    };
    let (SEQUENCE, _, rest) = der_element(rest)? else {
        return None;
    };
    let (SEQUENCE, period, _) = der_element(rest)? else {
        return None;
    };
    let (t1, not_before, rest) = der_element(period)?;
    let (t2, not_after, _) = der_element(rest)?;
    Some((der_time(t1, not_before)?, der_time(t2, not_after)?))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy = num(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (0x18, 14) => (num(0..4)?, 4),
        _ => return None,
    };
    let field = |i: usize| num(rest + 2 * i..rest + 2 * i + 2);
    let (month, day, h, m, s) = (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn show_time(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// How a client decides to trust the server.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    Roots(Arc<Roots>),
    AnyCertificate,
}

/// Trust anchors, and the certificates they came from.
///
/// The certificates are kept so that a server presenting one of them as its own certificate
/// is accepted even when it is marked as a CA (`CA:TRUE`, what `openssl req -x509` makes by
/// default): webpki refuses a CA certificate as an end entity, OpenSSL and BoringSSL (so
/// upstream's tools) accept a self-signed certificate that is its own trust anchor.
#[derive(Debug, Clone)]
pub struct Roots {
    store: RootCertStore,
    certs: Vec<CertificateDer<'static>>,
}

impl Roots {
    pub fn empty() -> Roots {
        Roots {
            store: RootCertStore::empty(),
            certs: Vec::new(),
        }
    }

    /// Adds every certificate that parses as a trust anchor; returns (added, ignored).
    pub fn add_parsable_certificates(
        &mut self,
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> (usize, usize) {
        let (mut added, mut ignored) = (0, 0);
        for cert in certs {
            match self.store.add(cert.clone()) {
                Ok(()) => {
                    added += 1;
                    self.certs.push(cert);
                }
                Err(_) => ignored += 1,
            }
        }
        (added, ignored)
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether `cert` is, byte for byte, one of the trusted certificates.
    fn is_anchor(&self, cert: &CertificateDer<'_>) -> bool {
        self.certs.iter().any(|c| c.as_ref() == cert.as_ref())
    }
}

/// Roots from a PEM file.
pub fn roots_from_pem_file(path: &Path) -> Result<Roots, TlsError> {
    let mut roots = Roots::empty();
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
pub fn default_roots() -> Result<Roots, TlsError> {
    if let Some(path) = std::env::var_os(ROOTS_ENV).filter(|v| !v.is_empty()) {
        return roots_from_pem_file(Path::new(&path));
    }
    let found = rustls_native_certs::load_native_certs();
    let mut roots = Roots::empty();
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
        ServerTrust::Roots(roots) => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots.store.clone()),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnchorAware {
                    webpki,
                    roots: roots.clone(),
                }))
                .with_no_client_auth()
        }
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

/// The webpki verifier, plus one case it refuses: the server presents, byte for byte, a
/// certificate that is itself a configured trust anchor but marked as a CA. That certificate
/// is accepted when it is valid now and for the name dialled (handshake signatures are checked
/// by webpki's code as for any certificate).
#[derive(Debug)]
struct AnchorAware {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    roots: Arc<Roots>,
}

impl ServerCertVerifier for AnchorAware {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !is_ca_used_as_end_entity(&refused) || !self.roots.is_anchor(end_entity) {
            return Err(refused);
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        match validity(end_entity.as_ref()) {
            Some((_, not_after)) if now > not_after => {
                return Err(rustls::CertificateError::Expired.into());
            }
            Some((not_before, _)) if now < not_before => {
                return Err(rustls::CertificateError::NotValidYet.into());
            }
            Some(_) => {}
            None => return Err(rustls::CertificateError::BadEncoding.into()),
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::from(rustls::CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|e| match e {
                webpki::Error::CertNotValidForName(ctx) => {
                    rustls::CertificateError::NotValidForNameContext {
                        expected: ctx.expected,
                        presented: ctx.presented,
                    }
                }
                _ => rustls::CertificateError::NotValidForName,
            })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

fn webpki_error(e: &rustls::Error) -> Option<&webpki::Error> {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<webpki::Error>()
        }
        _ => None,
    }
}

fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    matches!(webpki_error(e), Some(webpki::Error::CaUsedAsEndEntity))
}

/// A TLS failure in words: the certificate problem, or what the peer did. `io` is what a
/// handshake returned (tokio-rustls wraps rustls' error in an `io::Error`).
pub fn explain_io(io: &std::io::Error) -> String {
    match io
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(e) => explain(e),
        None if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the handshake".into()
        }
        None => io.to_string(),
    }
}

/// A rustls error in words (no `Other(OtherError(..))` dumps).
pub fn explain(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let cert = |what: String| format!("invalid peer certificate: {what}");
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => cert(format!(
                "it is not signed by a trusted certificate authority (trust its CA, or the \
                 certificate itself, with {ROOTS_ENV}=FILE.pem or the config's tls.ca)"
            )),
            C::NotValidForName => cert("it is not valid for the name dialled".into()),
            C::NotValidForNameContext {
                expected,
                presented,
            } => cert(format!(
                "it is not valid for {} (it names {}); dial one of its names, or reissue it \
                 with a subjectAltName for this one",
                show_server_name(expected),
                if presented.is_empty() {
                    "nothing".to_owned()
                } else {
                    presented
                        .iter()
                        .map(|n| show_presented(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )),
            C::Expired | C::ExpiredContext { .. } => cert(format!("it has expired ({c})")),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                cert(format!("it is not valid yet ({c})"))
            }
            C::BadEncoding => cert("it is not a well-formed X.509 certificate".into()),
            C::BadSignature => cert("its signature does not verify".into()),
            C::Revoked => cert("it has been revoked".into()),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                cert("its extended key usage does not allow a TLS server".into())
            }
            C::Other(_) => match webpki_error(e) {
                Some(webpki::Error::CaUsedAsEndEntity) => cert(format!(
                    "the certificate is a CA certificate (CA:TRUE) used as a server \
                     certificate, and it is not itself trusted here; trust exactly this \
                     certificate ({ROOTS_ENV}=CERT.pem, or the config's tls.ca), or give the \
                     server a certificate with basicConstraints=CA:FALSE issued by a trusted CA"
                )),
                Some(webpki::Error::EndEntityUsedAsCa) => {
                    cert("the chain uses a server certificate (CA:FALSE) as an issuing CA".into())
                }
                Some(webpki::Error::UnsupportedCertVersion) => {
                    cert("it is not an X.509 version 3 certificate".into())
                }
                Some(webpki::Error::PathLenConstraintViolated) => {
                    cert("the chain is longer than a CA's path length allows".into())
                }
                Some(webpki::Error::NameConstraintViolation) => {
                    cert("it violates the name constraints of its CA".into())
                }
                Some(webpki::Error::UnsupportedCriticalExtension) => {
                    cert("it has a critical extension this client does not know".into())
                }
                Some(other) => cert(format!("{other:?}")),
                None => cert(c.to_string()),
            },
            other => cert(other.to_string()),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the handshake (TLS alert: {alert:?})")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the server did not answer in TLS".into()
        }
        rustls::Error::NoApplicationProtocol => {
            "the server does not offer HTTP/2 (ALPN h2), which gRPC needs".into()
        }
        other => other.to_string(),
    }
}

/// webpki's `DnsName("a.lab")` / `IpAddress(10.0.0.1)` as `a.lab` / `10.0.0.1`.
fn show_presented(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(name)
}

fn show_server_name(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => "the name dialled".into(),
    }
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

    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn validity_periods() {
        let c = cert((2020, 1, 1), (2021, 6, 30));
        let now = 1_700_000_000; // 2023-11-14
        assert_eq!(
            validity_problem(&c, now).unwrap(),
            "expired on 2021-06-30 00:00:00 UTC; clients will refuse it until it is replaced"
        );
        let c = cert((2090, 2, 29 - 1), (2100, 1, 1));
        assert!(
            validity_problem(&c, now)
                .unwrap()
                .starts_with("is not valid before 2090-02-28 00:00:00 UTC")
        );
        // Past 2049: GeneralizedTime.
        let c = cert((2020, 1, 1), (2124, 1, 1));
        assert_eq!(validity_problem(&c, now), None);
        assert_eq!(
            validity(c.as_ref()).unwrap().1,
            days_from_civil(2124, 1, 1) * 86_400
        );
        assert_eq!(show_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(show_time(951_782_400), "2000-02-29 00:00:00 UTC");
        // Garbage is no certificate, not a panic.
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01",
        ] {
            assert_eq!(validity(bad), None);
        }
    }

    #[test]
    fn server_names() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("exporter.lab").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
