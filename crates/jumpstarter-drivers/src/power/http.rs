//! `jumpstarter_driver_http_power.driver.HttpPower`: power on/off and one reading per `read`
//! through HTTP requests. Clients use the power client (`j power on|off|read`).
//!
//! Config (as upstream):
//!
//! ```yaml
//! config:
//!   name: device                  # only used in log lines (default "device")
//!   power_on:  {url: "http://pdu/on",  method: POST, data: "1"}
//!   power_off: {url: "http://pdu/off", method: POST, data: "0"}
//!   power_read:                   # optional; `read` fails without it
//!     url: "http://pdu/status"
//!     voltage_path: emeter.voltage   # dotted path; numeric parts index lists
//!     current_path: meters.0.current
//!   auth: {basic: {user: admin, password: secret}}
//! ```
//!
//! An endpoint's `method` defaults to GET (case-insensitive); `data` is sent as the body only
//! with POST, PUT and PATCH (no content type, as upstream). A response outside 2xx is an
//! error. `read` parses the response as JSON and yields exactly one reading: a missing
//! configured path is an error, a missing default key (`voltage`, `current`) reads as 0.0,
//! and numeric strings and booleans count as numbers (Python's `float()`).
//!
//! Departures from upstream 0.9.0: every request has a timeout ([`REQUEST_TIMEOUT`]; upstream
//! sets none, so a dead device hangs the call forever) and a response-size cap; URLs and
//! methods are checked when the exporter starts instead of at the first call; passwords in
//! URLs are not logged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jumpstarter_config::ConfigError;
use jumpstarter_core::interface::Items;
use jumpstarter_core::{BuildContext, DriverError, Logger, Value};
use serde::Deserialize;

use super::{POWER_CLIENT, Power, PowerReading};
use crate::py::{py_str_repr, py_type_name};

pub const HTTP_POWER: &str = "jumpstarter_driver_http_power.driver.HttpPower";

/// The whole-request timeout (connect, send, receive).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest response body read.
const MAX_BODY: usize = 4 * 1024 * 1024;

fn default_name() -> String {
    "device".into()
}

fn default_method() -> String {
    "GET".into()
}

/// One HTTP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub data: Option<String>,
    /// For `power_read`: dotted JSON path to the voltage (default: top-level `voltage`).
    #[serde(default)]
    pub voltage_path: Option<String>,
    /// For `power_read`: dotted JSON path to the current (default: top-level `current`).
    #[serde(default)]
    pub current_path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub password: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub basic: Option<BasicAuth>,
}

/// HttpPower's `config:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPowerConfig {
    #[serde(default = "default_name")]
    pub name: String,
    pub power_on: EndpointConfig,
    pub power_off: EndpointConfig,
    #[serde(default)]
    pub power_read: Option<EndpointConfig>,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

/// An endpoint ready to call.
/// Why an endpoint of the config is not usable (the text follows `config.<key>.`).
#[derive(Debug, thiserror::Error)]
enum EndpointError {
    #[error("method: `{0}` is not an HTTP method")]
    Method(String),
    #[error("url: `{url}`: {source}")]
    Url {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("url: `{0}` is not an http:// or https:// URL")]
    Scheme(String),
}

#[derive(Debug, Clone)]
struct Endpoint {
    method: reqwest::Method,
    url: reqwest::Url,
    body: Option<String>,
    voltage_path: Option<String>,
    current_path: Option<String>,
}

impl Endpoint {
    fn new(c: &EndpointConfig) -> Result<Endpoint, EndpointError> {
        let name = c.method.to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(name.as_bytes())
            .map_err(|_| EndpointError::Method(c.method.clone()))?;
        let url = reqwest::Url::parse(&c.url).map_err(|source| EndpointError::Url {
            url: c.url.clone(),
            source: Box::new(source),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EndpointError::Scheme(c.url.clone()));
        }
        let sends_body = matches!(name.as_str(), "POST" | "PUT" | "PATCH");
        Ok(Endpoint {
            method,
            url,
            body: c.data.clone().filter(|d| sends_body && !d.is_empty()),
            voltage_path: c.voltage_path.clone(),
            current_path: c.current_path.clone(),
        })
    }

    /// The URL without its password, for logs and errors.
    fn shown_url(&self) -> String {
        let mut u = self.url.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        u.to_string()
    }
}

/// `HttpPower`. See the module docs.
pub struct HttpPower {
    name: String,
    on: Endpoint,
    off: Endpoint,
    read: Option<Endpoint>,
    basic: Option<BasicAuth>,
    http: reqwest::Client,
    timeout: Duration,
    logger: Logger,
}

impl HttpPower {
    /// Checks the endpoints and builds the HTTP client. Errors name the offending key.
    pub fn new(config: HttpPowerConfig, logger: Logger) -> Result<Self, (String, String)> {
        Self::with_timeout(config, logger, REQUEST_TIMEOUT)
    }

    /// [`HttpPower::new`] with another request timeout.
    pub fn with_timeout(
        config: HttpPowerConfig,
        logger: Logger,
        timeout: Duration,
    ) -> Result<Self, (String, String)> {
        let endpoint = |key: &str, c: &EndpointConfig| {
            Endpoint::new(c).map_err(|e| (key.to_owned(), format!("config.{key}.{e}")))
        };
        let on = endpoint("power_on", &config.power_on)?;
        let off = endpoint("power_off", &config.power_off)?;
        let read = config
            .power_read
            .as_ref()
            .map(|c| endpoint("power_read", c))
            .transpose()?;
        // TLS needs a process-wide crypto provider; installing one twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| (String::new(), format!("cannot create an HTTP client: {e}")))?;
        Ok(HttpPower {
            name: config.name,
            on,
            off,
            read,
            basic: config.auth.and_then(|a| a.basic),
            http,
            timeout,
            logger,
        })
    }

    /// One request; the response body when the status is 2xx.
    async fn request(&self, ep: &Endpoint) -> Result<Vec<u8>, DriverError> {
        let shown = ep.shown_url();
        self.logger
            .debug(format!("Making {} request to {shown}", ep.method));
        let mut req = self.http.request(ep.method.clone(), ep.url.clone());
        if let Some(b) = &self.basic {
            req = req.basic_auth(&b.user, Some(&b.password));
        }
        if let Some(body) = &ep.body {
            req = req.body(body.clone());
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                DriverError::Timeout(format!(
                    "{} {shown} timed out after {} s",
                    ep.method,
                    self.timeout.as_secs_f64()
                ))
            } else {
                DriverError::Other(format!("{} {shown} failed: {}", ep.method, error_chain(&e)))
            }
        };
        let mut resp = req.send().await.map_err(failed)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(DriverError::Other(format!(
                "{} {shown} failed with HTTP status {status}",
                ep.method
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(DriverError::Other(format!(
                    "{} {shown}: the response is larger than {MAX_BODY} bytes",
                    ep.method
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn reading(&self, ep: &Endpoint) -> Result<PowerReading, DriverError> {
        self.logger.debug("Reading power measurements via HTTP");
        let body = self.request(ep).await?;
        let data: Value = serde_json::from_slice(&body)
            .map_err(|e| DriverError::invalid(format!("read endpoint did not return JSON: {e}")))?;
        Ok(PowerReading {
            voltage: extract(&data, ep.voltage_path.as_deref(), "voltage")?,
            current: extract(&data, ep.current_path.as_deref(), "current")?,
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Walks a dotted path through objects and arrays (`meters.0.power`; negative indexes count
/// from the end, as in Python).
fn json_path<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(data, |cur, part| match cur {
        Value::Array(items) => {
            let i: i64 = part.trim().parse().ok()?;
            let len = i64::try_from(items.len()).ok()?;
            let i = if i < 0 { i + len } else { i };
            items.get(usize::try_from(i).ok()?)
        }
        Value::Object(map) => map.get(part),
        _ => None,
    })
}

/// One reading: the value at `path` (or at `default_key`) as Python's `float()` reads it.
fn extract(data: &Value, path: Option<&str>, default_key: &str) -> Result<f64, DriverError> {
    let key = path.unwrap_or(default_key);
    let Some(value) = json_path(data, key) else {
        return match path {
            Some(_) => Err(DriverError::invalid(format!(
                "configured path {} not found in read response",
                py_str_repr(key)
            ))),
            None => Ok(0.0),
        };
    };
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    number.ok_or_else(|| {
        DriverError::invalid(format!(
            "value at {} is not numeric (got {})",
            py_str_repr(key),
            py_type_name(value)
        ))
    })
}

#[async_trait]
impl Power for HttpPower {
    async fn on(&self) -> Result<(), DriverError> {
        self.logger
            .info(format!("Powering on {} via HTTP", self.name));
        self.request(&self.on).await?;
        self.logger.debug("Powering on via HTTP DONE");
        Ok(())
    }

    async fn off(&self) -> Result<(), DriverError> {
        self.logger
            .info(format!("Powering off {} via HTTP", self.name));
        self.request(&self.off).await?;
        self.logger.debug("Powering off via HTTP DONE");
        Ok(())
    }

    fn read(self: Arc<Self>) -> Result<Items<PowerReading>, DriverError> {
        let Some(ep) = self.read.clone() else {
            return Err(DriverError::invalid(
                "power_read endpoint is not configured",
            ));
        };
        let once = async move { self.reading(&ep).await };
        Ok(Box::pin(futures::stream::once(once)))
    }
}

jumpstarter_core::export! {
    impl HttpPower {
        client = POWER_CLIENT;
        interfaces = [Power];
    }
}

pub(super) fn build(ctx: &BuildContext<'_>) -> Result<Arc<HttpPower>, ConfigError> {
    let config: HttpPowerConfig = ctx.config.parse()?;
    for (key, ep) in [
        ("power_on", Some(&config.power_on)),
        ("power_off", Some(&config.power_off)),
        ("power_read", config.power_read.as_ref()),
    ] {
        if let Some(ep) = ep
            && ep.data.is_some()
            && !matches!(
                ep.method.to_ascii_uppercase().as_str(),
                "POST" | "PUT" | "PATCH"
            )
        {
            tracing::warn!(
                "{}: config.{key}.data is not sent with {} requests (only with POST, PUT and PATCH)",
                ctx.type_name,
                ep.method
            );
        }
    }
    let driver = HttpPower::new(config, ctx.logger.clone()).map_err(|(key, message)| {
        ctx.config
            .error(Some(key.as_str()).filter(|k| !k.is_empty()), message)
    })?;
    Ok(Arc::new(driver))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::PowerClient;
    use futures::StreamExt;
    use jumpstarter_config::DriverConfig;
    use jumpstarter_core::testing::{Served, serve};
    use jumpstarter_core::{ClientError, Driver, DriverTree, Instance};
    use serde_json::json;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the test server saw of one request.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        method: String,
        path: String,
        auth: Option<String>,
        content_type: Option<String>,
        body: String,
    }

    /// A small HTTP/1.1 server: `routes` maps a path to a status and a body (status 0: never
    /// answer). Every request is recorded; connections are closed after one response.
    struct Server {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Server {
        async fn start(routes: &[(&str, u16, &str)]) -> Server {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let routes: Vec<(String, u16, String)> = routes
                .iter()
                .map(|(p, s, b)| (p.to_string(), *s, b.to_string()))
                .collect();
            let log = seen.clone();
            tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(answer(conn, routes.clone(), log.clone()));
                }
            });
            Server { addr, seen }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn answer(
        mut conn: tokio::net::TcpStream,
        routes: Vec<(String, u16, String)>,
        seen: Arc<Mutex<Vec<Seen>>>,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let path = request_line.next().unwrap_or_default().to_owned();
        let header = |name: &str| {
            head.split("\r\n").find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        seen.lock().unwrap().push(Seen {
            method,
            path: path.clone(),
            auth: header("authorization"),
            content_type: header("content-type"),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let (status, text) = routes
            .iter()
            .find(|(p, _, _)| *p == path)
            .map(|(_, s, b)| (*s, b.clone()))
            .unwrap_or((404, "no such path".into()));
        if status == 0 {
            std::future::pending::<()>().await;
        }
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = conn.write_all(response.as_bytes()).await;
        let _ = conn.shutdown().await;
    }

    fn build_driver(config: Value, timeout: Duration) -> Result<Arc<dyn Driver>, String> {
        let config = DriverConfig::from_json(config);
        let parsed: HttpPowerConfig = config.parse().map_err(|e| e.to_string())?;
        let driver = HttpPower::with_timeout(parsed, Logger::detached("HttpPower"), timeout)
            .map_err(|(_, m)| m)?;
        Ok(Arc::new(driver))
    }

    /// Through the registry, as an exporter builds it.
    fn build_registered(config: Value) -> Result<Arc<dyn Driver>, String> {
        let families = crate::builtin();
        let factory = families.drivers().get(HTTP_POWER).expect("registered");
        let config = DriverConfig::from_json(config);
        let ctx = BuildContext {
            type_name: HTTP_POWER,
            config: &config,
            children: &[],
            logger: Logger::detached("HttpPower"),
        };
        factory(&ctx).map(|b| b.driver).map_err(|e| e.to_string())
    }

    async fn serve_power(driver: Arc<dyn Driver>) -> (Served, PowerClient) {
        let tree = DriverTree::composite(vec![("power", Instance::new(driver, HTTP_POWER))]);
        let served = serve(tree).await.unwrap();
        let power = PowerClient::new(served.client.get("power").unwrap().clone());
        (served, power)
    }

    async fn readings(power: &PowerClient) -> Result<Vec<PowerReading>, ClientError> {
        let mut out = Vec::new();
        let mut items = power.read().await?;
        while let Some(r) = items.next().await {
            out.push(r?);
        }
        Ok(out)
    }

    fn message(err: ClientError) -> (String, String) {
        let call = err.as_call().expect("a call error");
        (
            jumpstarter_core::client::code_name(call.code).to_owned(),
            call.message.clone(),
        )
    }

    #[tokio::test]
    async fn on_and_off_send_the_configured_requests() {
        let srv = Server::start(&[("/on", 200, "ok"), ("/off", 204, "")]).await;
        let driver = build_registered(json!({
            "name": "bench-psu",
            "power_on": {"url": srv.url("/on"), "method": "POST", "data": "relay=1"},
            "power_off": {"url": srv.url("/off"), "method": "put", "data": "relay=0"},
            "auth": {"basic": {"user": "admin", "password": "s3cret"}},
        }))
        .unwrap();
        let (served, power) = serve_power(driver).await;
        assert_eq!(power.driver.client_class(), POWER_CLIENT);
        power.on().await.unwrap();
        power.off().await.unwrap();
        let auth = Some("Basic YWRtaW46czNjcmV0".to_owned());
        assert_eq!(
            srv.seen(),
            [
                Seen {
                    method: "POST".into(),
                    path: "/on".into(),
                    auth: auth.clone(),
                    content_type: None,
                    body: "relay=1".into()
                },
                Seen {
                    method: "PUT".into(),
                    path: "/off".into(),
                    auth,
                    content_type: None,
                    body: "relay=0".into()
                },
            ]
        );
        // `read` without a read endpoint is a ValueError, as upstream.
        let err = readings(&power).await.unwrap_err();
        assert_eq!(
            message(err),
            (
                "INVALID_ARGUMENT".into(),
                "power_read endpoint is not configured".into()
            )
        );
        served.shutdown().await;
    }

    #[tokio::test]
    async fn get_is_the_default_and_sends_no_body_or_auth() {
        let srv = Server::start(&[("/on?x=1", 200, ""), ("/off", 200, "")]).await;
        let driver = build_registered(json!({
            "power_on": {"url": srv.url("/on?x=1"), "data": "ignored"},
            "power_off": {"url": srv.url("/off"), "method": "delete", "data": "ignored"},
        }))
        .unwrap();
        let (served, power) = serve_power(driver).await;
        power.on().await.unwrap();
        power.off().await.unwrap();
        let seen = srv.seen();
        assert_eq!(
            seen.iter()
                .map(|s| (
                    s.method.as_str(),
                    s.path.as_str(),
                    s.body.as_str(),
                    s.auth.is_none()
                ))
                .collect::<Vec<_>>(),
            [("GET", "/on?x=1", "", true), ("DELETE", "/off", "", true)]
        );
        served.shutdown().await;
    }

    #[tokio::test]
    async fn read_yields_one_reading_from_nested_paths() {
        let body = r#"{"emeter": {"voltage": "230.5"}, "meters": [{"current": 0.5}, {"current": 2}], "on": true}"#;
        let srv = Server::start(&[
            ("/status", 200, body),
            ("/flat", 200, r#"{"voltage": 12}"#),
            ("/list", 200, r#"[{"voltage": 5, "current": 1.5}]"#),
        ])
        .await;
        let cfg = |read: Value| {
            json!({
                "power_on": {"url": srv.url("/on")},
                "power_off": {"url": srv.url("/off")},
                "power_read": read,
            })
        };
        let driver = build_registered(cfg(json!({
            "url": srv.url("/status"),
            "voltage_path": "emeter.voltage",
            "current_path": "meters.-1.current",
        })))
        .unwrap();
        let (served, power) = serve_power(driver).await;
        assert_eq!(
            readings(&power).await.unwrap(),
            [PowerReading {
                voltage: 230.5,
                current: 2.0
            }]
        );
        served.shutdown().await;

        // Default keys; a missing default key reads as 0.
        let driver = build_registered(cfg(json!({"url": srv.url("/flat")}))).unwrap();
        let (served, power) = serve_power(driver).await;
        assert_eq!(
            readings(&power).await.unwrap(),
            [PowerReading {
                voltage: 12.0,
                current: 0.0
            }]
        );
        served.shutdown().await;

        let driver = build_registered(cfg(json!({
            "url": srv.url("/list"),
            "voltage_path": "0.voltage",
            "current_path": "0.current",
        })))
        .unwrap();
        let (served, power) = serve_power(driver).await;
        assert_eq!(
            readings(&power).await.unwrap(),
            [PowerReading {
                voltage: 5.0,
                current: 1.5
            }]
        );
        served.shutdown().await;
    }

    #[tokio::test]
    async fn bad_read_responses_are_value_errors() {
        let srv = Server::start(&[
            (
                "/status",
                200,
                r#"{"voltage": {"a": 1}, "current": "high", "list": [1]}"#,
            ),
            ("/text", 200, "<html>"),
        ])
        .await;
        let cases = [
            (
                json!({"url": srv.url("/status"), "voltage_path": "a.b"}),
                "configured path 'a.b' not found in read response",
            ),
            (
                json!({"url": srv.url("/status"), "voltage_path": "list.5"}),
                "configured path 'list.5' not found in read response",
            ),
            (
                json!({"url": srv.url("/status"), "voltage_path": "list.x"}),
                "configured path 'list.x' not found in read response",
            ),
            (
                json!({"url": srv.url("/status")}),
                "value at 'voltage' is not numeric (got dict)",
            ),
            (
                json!({"url": srv.url("/status"), "voltage_path": "list.0"}),
                "value at 'current' is not numeric (got str)",
            ),
        ];
        for (read, expected) in cases {
            let driver = build_registered(json!({
                "power_on": {"url": srv.url("/on")},
                "power_off": {"url": srv.url("/off")},
                "power_read": read,
            }))
            .unwrap();
            let (served, power) = serve_power(driver).await;
            let err = readings(&power).await.unwrap_err();
            assert_eq!(message(err), ("INVALID_ARGUMENT".into(), expected.into()));
            served.shutdown().await;
        }
        let driver = build_registered(json!({
            "power_on": {"url": srv.url("/on")},
            "power_off": {"url": srv.url("/off")},
            "power_read": {"url": srv.url("/text")},
        }))
        .unwrap();
        let (served, power) = serve_power(driver).await;
        let (code, msg) = message(readings(&power).await.unwrap_err());
        assert_eq!(code, "INVALID_ARGUMENT");
        assert!(
            msg.starts_with("read endpoint did not return JSON: "),
            "{msg}"
        );
        served.shutdown().await;
    }

    #[tokio::test]
    async fn http_failures_are_clear_errors() {
        let srv = Server::start(&[("/on", 500, "boom"), ("/hang", 0, "")]).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let driver = build_driver(
            json!({
                "power_on": {"url": srv.url("/on"), "method": "POST"},
                "power_off": {"url": format!("http://{closed}/off")},
                "power_read": {"url": srv.url("/hang")},
            }),
            Duration::from_secs(1),
        )
        .unwrap();
        let (served, power) = serve_power(driver).await;
        let (code, msg) = message(power.on().await.unwrap_err());
        assert_eq!(code, "UNKNOWN");
        assert_eq!(
            msg,
            format!(
                "POST {} failed with HTTP status 500 Internal Server Error",
                srv.url("/on")
            )
        );
        let (code, msg) = message(power.off().await.unwrap_err());
        assert_eq!(code, "UNKNOWN");
        assert!(
            msg.starts_with(&format!("GET http://{closed}/off failed: "))
                && msg.contains("onnection refused"),
            "{msg}"
        );
        // A device that never answers: the request times out.
        let (code, msg) = message(readings(&power).await.unwrap_err());
        assert_eq!(code, "DEADLINE_EXCEEDED");
        assert_eq!(msg, format!("GET {} timed out after 1 s", srv.url("/hang")));
        served.shutdown().await;
    }

    #[test]
    fn config_errors() {
        let base = || {
            json!({
                "power_on": {"url": "http://h/on"},
                "power_off": {"url": "http://h/off"},
            })
        };
        assert!(build_registered(base()).is_ok());
        let mut c = base();
        c["power_on"]["verb"] = json!("POST");
        let err = build_registered(c).unwrap_err();
        assert!(
            err.contains("config.power_on") && err.contains("unknown field `verb`"),
            "{err}"
        );
        let mut c = base();
        c["timeout"] = json!(5);
        assert!(
            build_registered(c)
                .unwrap_err()
                .contains("unknown field `timeout`")
        );
        let err = build_registered(json!({"power_on": {"url": "http://h/on"}})).unwrap_err();
        assert!(err.contains("missing field `power_off`"), "{err}");
        let mut c = base();
        c["power_off"]["url"] = json!("pdu/off");
        let err = build_registered(c).unwrap_err();
        assert!(err.contains("config.power_off.url: `pdu/off`"), "{err}");
        let mut c = base();
        c["power_off"]["url"] = json!("ftp://h/off");
        assert!(
            build_registered(c)
                .unwrap_err()
                .contains("not an http:// or https:// URL")
        );
        let mut c = base();
        c["power_on"]["method"] = json!("PO ST");
        let err = build_registered(c).unwrap_err();
        assert!(
            err.contains("config.power_on.method: `PO ST` is not an HTTP method"),
            "{err}"
        );
        let mut c = base();
        c["auth"] = json!({"basic": {"user": "u", "pass": "p"}});
        assert!(
            build_registered(c)
                .unwrap_err()
                .contains("unknown field `pass`")
        );
    }

    #[test]
    fn json_paths_as_upstream() {
        let data = json!({"a": {"b": [10, 20, {"c": "3.5"}]}, "s": "text", "t": true});
        assert_eq!(json_path(&data, "a.b.0"), Some(&json!(10)));
        assert_eq!(json_path(&data, "a.b.-1.c"), Some(&json!("3.5")));
        assert_eq!(json_path(&data, "a.b.-4"), None);
        assert_eq!(json_path(&data, "a.b.3"), None);
        assert_eq!(json_path(&data, "s.x"), None);
        assert_eq!(json_path(&data, "s.0"), None);
        assert_eq!(extract(&data, Some("a.b.-1.c"), "v").unwrap(), 3.5);
        assert_eq!(extract(&data, Some("t"), "v").unwrap(), 1.0);
        assert_eq!(extract(&data, None, "missing").unwrap(), 0.0);
        assert_eq!(
            extract(&data, Some("s"), "v").unwrap_err().to_string(),
            "value at 's' is not numeric (got str)"
        );
    }
}
