//! Channels to a controller or router, built from a client or exporter config.
//!
//! * Always TLS (protocol notes §8.1). Trust, in order:
//!   `tls.insecure` / `JMP_GRPC_INSECURE=1` / `JUMPSTARTER_GRPC_INSECURE=1`: encrypt but accept
//!   any server certificate (upstream fetches and pins whatever the server presents, which
//!   authenticates nothing either); else `tls.ca` (base64 PEM bundle); else the default roots
//!   ([`tls::default_roots`]: `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`, else the system store).
//!   `JUMPSTARTER_FORCE_SYSTEM_CERTS=1` adds the system store to `tls.ca` and ignores
//!   `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`.
//! * `grpcOptions`/`grpcConfig` become real settings ([`ChannelOptions`]): HTTP/2 keepalive
//!   interval/timeout/while idle, TLS name override, authority, user agent; message size limits
//!   are per client stub: apply them with [`ChannelSettings::limit`]. Unknown keys are warned
//!   about once per process.
//! * [`connect`] gives a `tonic::transport::Channel` (reconnects on demand; for the controller's
//!   unary calls and streams). [`ChannelSettings::dial`] gives the same TLS and options for
//!   [`H2Channel`] (router tunnels, direct mode).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use hyper_util::rt::TokioIo;
use jumpstarter_config::{
    ChannelOptions, ClientConfig, ConfigError, Endpoint, Env, ExporterConfig, TlsConfig,
};
use jumpstarter_protocol::wire::{CONNECTION_WINDOW, STREAM_WINDOW};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::tls::{self, Roots, ServerTrust, TlsError};
use crate::transport::{CONNECT_TIMEOUT, Dial, DialError, H2Channel, Target};

/// Why a channel could not be set up or connected.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "invalid endpoint '{endpoint}': {message} (expected HOST[:PORT], e.g. \
         jumpstarter.example.com:443)"
    )]
    Endpoint { endpoint: String, message: String },
    #[error("cannot connect to {endpoint}: {}", error_chain(.source))]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Dial(#[from] DialError),
}

impl From<jumpstarter_config::EndpointError> for ChannelError {
    fn from(e: jumpstarter_config::EndpointError) -> ChannelError {
        ChannelError::Endpoint {
            endpoint: e.given,
            message: e.reason,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Everything needed to open channels to one controller endpoint.
#[derive(Clone)]
pub struct ChannelSettings {
    /// The endpoint as a string [`Target::endpoint`] reads back: `host:port` (`[v6]:port`)
    /// or `unix:PATH`, whatever form the config used (`dns:///h:p`, `h` for `h:443`...).
    pub endpoint: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub options: ChannelOptions,
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSettings")
            .field("endpoint", &self.endpoint)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ChannelSettings {
    /// Settings for an endpoint with a config's `tls` and channel options.
    pub fn new(
        endpoint: &str,
        tls: &TlsConfig,
        options: ChannelOptions,
        env: &Env,
    ) -> Result<ChannelSettings, ChannelError> {
        let endpoint = Endpoint::parse(endpoint).map_err(|e| ChannelError::Endpoint {
            endpoint: e.given,
            message: e.reason,
        })?;
        Self::for_endpoint(&endpoint, tls, options, env)
    }

    /// [`ChannelSettings::new`] for an endpoint already parsed.
    pub fn for_endpoint(
        endpoint: &Endpoint,
        tls: &TlsConfig,
        options: ChannelOptions,
        env: &Env,
    ) -> Result<ChannelSettings, ChannelError> {
        Ok(ChannelSettings {
            endpoint: endpoint.to_string(),
            tls: client_tls(tls, env)?,
            options,
        })
    }

    /// The controller of a client config (needs `endpoint`; the token is the caller's).
    pub fn for_client(cfg: &ClientConfig, env: &Env) -> Result<ChannelSettings, ChannelError> {
        let endpoint = cfg.controller_endpoint()?;
        let (options, unknown) = cfg.channel_options()?;
        warn_unknown_once(&unknown);
        Self::for_endpoint(&endpoint, &cfg.tls, options, env)
    }

    /// The controller of an exporter config.
    pub fn for_exporter(cfg: &ExporterConfig, env: &Env) -> Result<ChannelSettings, ChannelError> {
        let endpoint = cfg.controller_endpoint()?;
        let (options, unknown) = cfg.channel_options()?;
        warn_unknown_once(&unknown);
        Self::for_endpoint(&endpoint, &cfg.tls, options, env)
    }

    /// The same TLS and options for another endpoint (a router named by the controller).
    pub fn with_endpoint(&self, endpoint: &str) -> ChannelSettings {
        ChannelSettings {
            endpoint: endpoint.to_owned(),
            ..self.clone()
        }
    }

    /// A tonic endpoint with every setting applied (not connected).
    pub fn endpoint(&self) -> Result<tonic::transport::Endpoint, ChannelError> {
        let bad = |message: String| ChannelError::Endpoint {
            endpoint: self.endpoint.clone(),
            message,
        };
        let uri: http::Uri = match Target::endpoint(&self.endpoint) {
            Ok(t @ Target::Tcp { .. }) => format!("https://{t}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?,
            Ok(Target::Unix(_)) => {
                return Err(bad(
                    "a unix socket endpoint cannot be used for this channel; use HOST:PORT".into(),
                ));
            }
            Err(e) => return Err(bad(e.reason)),
        };
        let mut ep = tonic::transport::Endpoint::from(uri)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.options.keepalive_time)
            .keep_alive_timeout(self.options.keepalive_timeout)
            .keep_alive_while_idle(self.options.keepalive_permit_without_calls)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        if let Some(authority) = &self.options.authority {
            let origin = format!("https://{authority}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| bad(format!("grpc.default_authority: {e}")))?;
            ep = ep.origin(origin);
        }
        if let Some(ua) = &self.options.user_agent {
            ep = ep
                .user_agent(ua.clone())
                .map_err(|e| bad(format!("grpc.primary_user_agent: {e}")))?;
        }
        Ok(ep)
    }

    fn connector(
        &self,
    ) -> impl tower::Service<
        http::Uri,
        Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        Error = std::io::Error,
        Future = impl Send,
    > + Send
    + 'static {
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone());
        let name_override = self.options.tls_server_name.clone();
        tower::service_fn(move |uri: http::Uri| {
            let tls = tls.clone();
            let name_override = name_override.clone();
            async move {
                let host = uri
                    .host()
                    .unwrap_or_default()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let port = uri.port_u16().unwrap_or(443);
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let name = tls::server_name(name_override.as_deref().unwrap_or(&host))
                    .map_err(std::io::Error::other)?;
                let stream = tls.connect(name, tcp).await.map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("TLS handshake failed: {}", tls::explain_io(&e)),
                    )
                })?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        })
    }

    /// Connects now (TCP + TLS + HTTP/2); the channel reconnects by itself later.
    pub async fn connect(&self) -> Result<tonic::transport::Channel, ChannelError> {
        self.endpoint()?
            .connect_with_connector(self.connector())
            .await
            .map_err(|source| ChannelError::Connect {
                endpoint: self.endpoint.clone(),
                source,
            })
    }

    /// A channel that connects on first use.
    pub fn connect_lazy(&self) -> Result<tonic::transport::Channel, ChannelError> {
        Ok(self
            .endpoint()?
            .connect_with_connector_lazy(self.connector()))
    }

    /// The message size limits of `grpcOptions`, for a generated client stub:
    /// `settings.limit(FooClient::new(ch), FooClient::max_decoding_message_size, FooClient::max_encoding_message_size)`.
    pub fn limit<C>(
        &self,
        client: C,
        decoding: impl FnOnce(C, usize) -> C,
        encoding: impl FnOnce(C, usize) -> C,
    ) -> C {
        let c = decoding(
            client,
            self.options
                .max_receive_message_length
                .unwrap_or(usize::MAX),
        );
        encoding(
            c,
            self.options.max_send_message_length.unwrap_or(usize::MAX),
        )
    }

    /// An [`H2Channel`] dial with this TLS (router tunnels and direct mode over TCP).
    pub fn dial(&self) -> Dial {
        Dial {
            tls: Some(self.tls.clone()),
            passphrase: None,
        }
    }

    /// Opens an [`H2Channel`] (one HTTP/2 connection) to `endpoint` with these settings.
    pub async fn h2(&self, endpoint: &str) -> Result<H2Channel, ChannelError> {
        let target = Target::endpoint(endpoint).map_err(|e| ChannelError::Endpoint {
            endpoint: e.given,
            message: e.reason,
        })?;
        Ok(H2Channel::dial_with_options(&target, &self.dial(), &self.options).await?)
    }
}

/// Connects to a client config's controller.
pub async fn connect(
    cfg: &ClientConfig,
    env: &Env,
) -> Result<tonic::transport::Channel, ChannelError> {
    ChannelSettings::for_client(cfg, env)?.connect().await
}

/// The rustls client config for a `tls:` section (see the module docs for the order).
pub fn client_tls(cfg: &TlsConfig, env: &Env) -> Result<Arc<rustls::ClientConfig>, ChannelError> {
    if cfg.insecure || env.grpc_insecure() {
        return Ok(tls::client_config(&ServerTrust::AnyCertificate)?);
    }
    let force_system = env
        .get("JUMPSTARTER_FORCE_SYSTEM_CERTS")
        .is_some_and(|v| v.trim() == "1");
    let mut roots = Roots::empty();
    if let Some(pem) = cfg.ca_pem()? {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ca_error(cfg, format!("tls.ca is not a valid PEM bundle: {e}")))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ca_error(
                cfg,
                "tls.ca holds no usable CA certificate".into(),
            ));
        }
        if force_system {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    } else if force_system {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if roots.is_empty() {
            return Err(TlsError::NoRoots(
                "JUMPSTARTER_FORCE_SYSTEM_CERTS=1 but the system trust store is empty".into(),
            )
            .into());
        }
    } else {
        roots = tls::default_roots()?;
    }
    Ok(tls::client_config(&ServerTrust::Roots(Arc::new(roots)))?)
}

fn ca_error(cfg: &TlsConfig, message: String) -> ChannelError {
    use jumpstarter_config::Origin;
    ChannelError::Config(match &cfg.ca_origin {
        Origin::File(at) => ConfigError::Invalid {
            at: at.clone(),
            message,
        },
        Origin::Env(var) => ConfigError::Env {
            var: var.clone(),
            message,
        },
        _ => ConfigError::NotFound(message),
    })
}

/// Logs a warning for each unknown `grpcOptions` key, once per key per process.
pub fn warn_unknown_once(keys: &[String]) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let Ok(mut seen) = seen.lock() else {
        return;
    };
    for k in keys {
        if seen.insert(k.clone()) {
            tracing::warn!(
                "grpcOptions: `{k}` is not a setting this client knows; it is ignored (known: {})",
                jumpstarter_config::grpc::KNOWN.join(", ")
            );
        }
    }
}
