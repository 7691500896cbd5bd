//! `PySerial`: a serial line (a tty, `socket://HOST:PORT` or `loop://`) behind the
//! [`Serial`] interface. See the family docs for the config and the streams' behaviour.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jumpstarter_core::{BoxStream, BuildContext, ConfigError, DriverError, Logger, Value};
use serde::{Deserialize, Deserializer};
use tokio_util::sync::CancellationToken;

use super::port::{self, Line, PortError};
use super::stream::{Closable, LineStream, Throttled};
use super::{PYSERIAL_CLIENT, Serial, SerialUrl, UrlError};
use crate::network::EchoStream;

pub const DEFAULT_BAUDRATE: u32 = 115_200;

/// `PySerial`'s `config:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    pub url: String,
    #[serde(default = "default_baudrate", deserialize_with = "baudrate")]
    pub baudrate: u32,
    #[serde(default = "crate::config::default_true")]
    pub check_present: bool,
    /// Kept as written, so the connect log line shows it as upstream does (`10` or `10.0`).
    #[serde(default)]
    pub cps: Option<serde_json::Number>,
    #[serde(default)]
    pub disable_hupcl: bool,
}

fn default_baudrate() -> u32 {
    DEFAULT_BAUDRATE
}

/// A baud rate written as a number or a numeric string (pyserial calls `int()` on it).
fn baudrate<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        N(u32),
        S(String),
    }
    let n = match B::deserialize(d)? {
        B::N(n) => Some(n),
        B::S(s) => s.trim().parse::<u32>().ok(),
    };
    n.filter(|n| *n > 0)
        .ok_or_else(|| serde::de::Error::custom("the baud rate must be a positive whole number"))
}

impl SerialConfig {
    pub fn new(url: impl Into<String>) -> Self {
        SerialConfig {
            url: url.into(),
            baudrate: DEFAULT_BAUDRATE,
            check_present: true,
            cps: None,
            disable_hupcl: false,
        }
    }

    fn cps_rate(&self) -> Option<f64> {
        self.cps.as_ref().and_then(serde_json::Number::as_f64)
    }
}

/// `PySerial`: see the module docs.
pub struct PySerial {
    config: SerialConfig,
    target: SerialUrl,
    logger: Logger,
    /// Parent of the tokens of active `connect` streams; `close()` cancels it (and replaces it
    /// for later streams).
    streams: Mutex<CancellationToken>,
}

/// Why a `PySerial` cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Url(#[from] UrlError),
    /// `check_present` could not open the device.
    #[error("{0} (set check_present: false for devices that appear later)")]
    NotPresent(#[source] PortError),
}

impl PySerial {
    /// Builds the driver: parses the URL and, with `check_present`, opens the device once.
    pub fn new(config: SerialConfig, logger: Logger) -> Result<PySerial, BuildError> {
        let target = SerialUrl::parse(&config.url)?;
        let driver = PySerial {
            config,
            target,
            logger,
            streams: Mutex::new(CancellationToken::new()),
        };
        if driver.config.check_present {
            driver.check_present().map_err(BuildError::NotPresent)?;
        }
        Ok(driver)
    }

    /// Opens and closes the port (a TCP connection for `socket://`).
    fn check_present(&self) -> Result<(), PortError> {
        match &self.target {
            SerialUrl::Loop => Ok(()),
            SerialUrl::Device(path) => {
                let (port, tuned) =
                    port::open_blocking(path, self.config.baudrate, self.config.disable_hupcl)?;
                self.log_hupcl(tuned);
                drop(port);
                Ok(())
            }
            SerialUrl::Socket { host, port } => {
                use std::net::ToSocketAddrs;
                let what = self.target.to_string();
                let addrs = (host.as_str(), *port).to_socket_addrs().map_err(|source| {
                    PortError::Socket {
                        what: what.clone(),
                        source,
                    }
                })?;
                let mut last = None;
                for addr in addrs {
                    match std::net::TcpStream::connect_timeout(
                        &addr,
                        std::time::Duration::from_secs(5),
                    ) {
                        Ok(_) => return Ok(()),
                        Err(e) => last = Some(e),
                    }
                }
                Err(match last {
                    Some(source) => PortError::Socket { what, source },
                    None => PortError::NoAddresses {
                        what,
                        host: host.clone(),
                    },
                })
            }
        }
    }

    fn log_hupcl(&self, tuned: port::Tuned) {
        if tuned.hupcl_cleared {
            self.logger
                .debug(format!("Disabled HUPCL on {}", self.config.url));
        }
    }

    /// Ends every active `connect` stream: their reads end, writes fail, devices are released.
    pub fn close_streams(&self) {
        let mut parent = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut *parent, CancellationToken::new());
        old.cancel();
    }

    async fn open_line(&self) -> Result<BoxStream, DriverError> {
        let cps = self.config.cps_rate();
        match &self.target {
            SerialUrl::Loop => Ok(Box::new(Throttled::new(EchoStream::new(), cps))),
            SerialUrl::Socket { host, port } => {
                let what = self.target.to_string();
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| DriverError::io(format!("could not open port {what}"), e))?;
                let _ = s.set_nodelay(true);
                Ok(Box::new(Throttled::new(LineStream::new(s, what), cps)))
            }
            SerialUrl::Device(path) => {
                let (s, tuned) =
                    port::open_async(path, self.config.baudrate, self.config.disable_hupcl)
                        .map_err(DriverError::other)?;
                if tuned.hupcl_cleared {
                    self.logger
                        .info(format!("Disabled HUPCL on {}", self.config.url));
                }
                let what = path.display().to_string();
                Ok(Box::new(Throttled::new(LineStream::new(s, what), cps)))
            }
        }
    }

    async fn set_line(&self, line: Line, value: &Value) -> Result<(), DriverError> {
        let value = truthy(value, line)?;
        let SerialUrl::Device(path) = &self.target else {
            // loop:// and socket:// have no modem lines to set; pyserial ignores the request.
            self.logger.debug(format!(
                "{}({value}) ignored on {}",
                line.method(),
                self.config.url
            ));
            return Ok(());
        };
        let path: PathBuf = path.clone();
        let (baud, no_hupcl) = (self.config.baudrate, self.config.disable_hupcl);
        tokio::task::spawn_blocking(move || port::set_line(&path, baud, no_hupcl, line, value))
            .await
            .map_err(|e| DriverError::other(format!("{} failed: {e}", line.method())))?
            .map_err(DriverError::other)?;
        Ok(())
    }
}

/// `value` as Python would take its truth: booleans, and numbers (non-zero is true).
fn truthy(value: &Value, line: Line) -> Result<bool, DriverError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
        other => Err(DriverError::invalid(format!(
            "{}: value must be a boolean, got {other}",
            line.method(),
        ))),
    }
}

#[async_trait]
impl Serial for PySerial {
    async fn connect(&self) -> Result<BoxStream, DriverError> {
        let cps_info = self
            .config
            .cps
            .as_ref()
            .map(|c| format!(", cps: {c}"))
            .unwrap_or_default();
        self.logger.info(format!(
            "Connecting to {}, baudrate: {}{cps_info}",
            self.config.url, self.config.baudrate
        ));
        let token = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .child_token();
        let line = self.open_line().await?;
        // Upstream logs the disconnection of real ports only.
        let on_drop: Option<Box<dyn FnOnce() + Send>> = match self.target {
            SerialUrl::Loop => None,
            _ => {
                let (logger, url) = (self.logger.clone(), self.config.url.clone());
                Some(Box::new(move || {
                    logger.info(format!("Disconnected from {url}"))
                }))
            }
        };
        Ok(Box::new(Closable::new(line, token, on_drop)))
    }

    async fn close_connections(&self) -> Result<(), DriverError> {
        self.logger.debug(format!(
            "close() closing connections to {}",
            self.config.url
        ));
        self.close_streams();
        Ok(())
    }

    async fn set_dtr(&self, value: Value) -> Result<(), DriverError> {
        self.set_line(Line::Dtr, &value).await
    }

    async fn set_rts(&self, value: Value) -> Result<(), DriverError> {
        self.set_line(Line::Rts, &value).await
    }
}

jumpstarter_core::export! {
    impl PySerial {
        client = PYSERIAL_CLIENT;
        interfaces = [Serial];
        /// The session ends: like upstream (whose exported `close` is also its close hook),
        /// every active stream is closed.
        async fn close(&self) {
            self.close_streams();
        }
    }
}

pub(super) fn build(ctx: &BuildContext<'_>) -> Result<Arc<PySerial>, ConfigError> {
    let config: SerialConfig = ctx.config.parse()?;
    let driver = PySerial::new(config, ctx.logger.clone())
        .map_err(|e| ctx.config.error(Some("url"), format!("config.url: {e}")))?;
    Ok(Arc::new(driver))
}
