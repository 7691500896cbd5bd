//! Network: drivers exposing a `connect` byte stream (and `address`) and `NetworkClient`.
//!
//! | type | config | exports |
//! |---|---|---|
//! | `TcpNetwork` | `host`, `port`, `enable_address`=true | `connect`, `address` → `tcp://ip:port` |
//! | `UdpNetwork` | `host`, `port`, `enable_address`=true | `connect` (1 frame = 1 datagram), `address` → `udp://ip:port` |
//! | `UnixNetwork` | `path` | `connect` |
//! | `EchoNetwork` | — | `connect` echoes every chunk |

mod echo;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use jumpstarter_core::client::DriverStream;
use jumpstarter_core::{
    Args, BoxStream, CallContext, ClientError, Driver, DriverClient, DriverError, Logger, Method,
    Registry, Value,
};
use serde::Deserialize;

pub use echo::EchoStream;
pub use udp::UdpStream;

/// Client class of network drivers.
pub const NETWORK_CLIENT: &str = "jumpstarter_driver_network.client.NetworkClient";

pub const TCP_NETWORK: &str = "jumpstarter_driver_network.driver.TcpNetwork";
pub const UDP_NETWORK: &str = "jumpstarter_driver_network.driver.UdpNetwork";
pub const UNIX_NETWORK: &str = "jumpstarter_driver_network.driver.UnixNetwork";
pub const ECHO_NETWORK: &str = "jumpstarter_driver_network.driver.EchoNetwork";

const WITH_ADDRESS: &[Method] = &[
    Method::stream("connect").help("Open a byte stream to the remote end"),
    Method::unary("address").help("The address clients can connect to directly"),
];
const STREAM_ONLY: &[Method] = &[Method::stream("connect").help("Open a byte stream")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// `TcpNetwork` and `UdpNetwork`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpConfig {
    pub host: String,
    #[serde(deserialize_with = "crate::config::port")]
    pub port: u16,
    #[serde(default = "crate::config::default_true")]
    pub enable_address: bool,
}

pub struct IpNetwork {
    protocol: Protocol,
    config: IpConfig,
    logger: Logger,
}

impl IpNetwork {
    pub fn new(protocol: Protocol, config: IpConfig, logger: Logger) -> Self {
        IpNetwork {
            protocol,
            config,
            logger,
        }
    }

    async fn resolve(&self) -> Result<SocketAddr, DriverError> {
        let host = self.config.host.as_str();
        let mut addrs = tokio::net::lookup_host((host, self.config.port))
            .await
            .map_err(|e| DriverError::io(format!("cannot resolve {host}"), e))?;
        addrs
            .next()
            .ok_or_else(|| DriverError::other(format!("{host} has no addresses")))
    }

    /// `ip:port` with the host resolved now (IPv6 in brackets); the name as written if it
    /// does not resolve, like upstream.
    async fn display_address(&self) -> String {
        let host = &self.config.host;
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => tokio::net::lookup_host((host.as_str(), self.config.port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip()),
        };
        match ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.config.port),
            Some(ip) => format!("{ip}:{}", self.config.port),
            None => format!("{host}:{}", self.config.port),
        }
    }
}

#[async_trait]
impl Driver for IpNetwork {
    fn client(&self) -> &str {
        NETWORK_CLIENT
    }

    fn methods(&self) -> &[Method] {
        WITH_ADDRESS
    }

    async fn call(
        &self,
        method: &str,
        _args: Args,
        _ctx: &CallContext,
    ) -> Result<Value, DriverError> {
        match method {
            "address" => {
                if !self.config.enable_address {
                    return Err(DriverError::invalid(
                        "enable_address mode is not true in the exporter configuration",
                    ));
                }
                let scheme = match self.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                };
                Ok(Value::String(format!(
                    "{scheme}://{}",
                    self.display_address().await
                )))
            }
            other => Err(DriverError::method_not_found(other)),
        }
    }

    async fn open_stream(&self, method: &str) -> Result<BoxStream, DriverError> {
        if method != "connect" {
            return Err(DriverError::method_not_found(method));
        }
        let addr = self.resolve().await?;
        match self.protocol {
            Protocol::Tcp => {
                self.logger.debug(format!(
                    "Connecting TCP host={} port={}",
                    self.config.host, self.config.port
                ));
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| DriverError::io(format!("cannot connect to {addr}"), e))?;
                let _ = s.set_nodelay(true);
                Ok(Box::new(s))
            }
            Protocol::Udp => {
                self.logger.debug(format!(
                    "Connecting UDP host={} port={}",
                    self.config.host, self.config.port
                ));
                let s = UdpStream::connect(addr)
                    .await
                    .map_err(|e| DriverError::io(format!("cannot open UDP socket to {addr}"), e))?;
                Ok(Box::new(s))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixConfig {
    pub path: PathBuf,
}

/// `UnixNetwork`.
pub struct UnixNetwork {
    config: UnixConfig,
    logger: Logger,
}

#[async_trait]
impl Driver for UnixNetwork {
    fn client(&self) -> &str {
        NETWORK_CLIENT
    }

    fn methods(&self) -> &[Method] {
        STREAM_ONLY
    }

    async fn open_stream(&self, method: &str) -> Result<BoxStream, DriverError> {
        if method != "connect" {
            return Err(DriverError::method_not_found(method));
        }
        let path = &self.config.path;
        self.logger
            .debug(format!("Connecting UDS path={}", path.display()));
        let s = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| DriverError::io(format!("cannot connect to {}", path.display()), e))?;
        Ok(Box::new(s))
    }
}

/// `EchoNetwork`: every `connect` stream echoes what it receives.
pub struct EchoNetwork {
    logger: Logger,
}

impl EchoNetwork {
    pub fn new(logger: Logger) -> Self {
        EchoNetwork { logger }
    }
}

#[async_trait]
impl Driver for EchoNetwork {
    fn client(&self) -> &str {
        NETWORK_CLIENT
    }

    fn methods(&self) -> &[Method] {
        STREAM_ONLY
    }

    async fn open_stream(&self, method: &str) -> Result<BoxStream, DriverError> {
        if method != "connect" {
            return Err(DriverError::method_not_found(method));
        }
        self.logger.debug("Connecting Echo");
        Ok(Box::new(EchoStream::new()))
    }
}

pub fn register(r: &mut Registry) {
    r.register(TCP_NETWORK, |ctx| {
        let cfg: IpConfig = ctx.config.parse()?;
        Ok(Arc::new(IpNetwork::new(Protocol::Tcp, cfg, ctx.logger.clone())) as Arc<dyn Driver>)
    });
    r.register(UDP_NETWORK, |ctx| {
        let cfg: IpConfig = ctx.config.parse()?;
        Ok(Arc::new(IpNetwork::new(Protocol::Udp, cfg, ctx.logger.clone())) as Arc<dyn Driver>)
    });
    r.register(UNIX_NETWORK, |ctx| {
        let config: UnixConfig = ctx.config.parse()?;
        Ok(Arc::new(UnixNetwork {
            config,
            logger: ctx.logger.clone(),
        }) as Arc<dyn Driver>)
    });
    r.register(ECHO_NETWORK, |ctx| {
        crate::config::ignore_unknown(ctx, &[]);
        Ok(Arc::new(EchoNetwork::new(ctx.logger.clone())) as Arc<dyn Driver>)
    });
}

/// The client of network drivers.
#[derive(Debug, Clone)]
pub struct NetworkClient {
    pub driver: DriverClient,
}

impl NetworkClient {
    pub fn new(driver: DriverClient) -> Self {
        NetworkClient { driver }
    }

    /// The driver's `address` (e.g. `tcp://127.0.0.1:22`).
    pub async fn address(&self) -> Result<String, ClientError> {
        match self.driver.call("address", vec![]).await? {
            Value::String(s) => Ok(s),
            other => Err(ClientError::shape(
                "address",
                format!("expected a string, got {other}"),
            )),
        }
    }

    /// Opens the `connect` stream.
    pub async fn connect(&self) -> Result<DriverStream, ClientError> {
        self.driver.stream("connect").await
    }
}

/// Splits `scheme://host:port` (or `host:port`) into what `j address` prints.
pub fn strip_scheme(addr: &str) -> &str {
    addr.split_once("://").map_or(addr, |(_, rest)| rest)
}

/// Host and port of an address as `j address --host/--port` print them.
pub fn split_host_port(addr: &str) -> (String, String) {
    let rest = strip_scheme(addr);
    if let Some(v6) = rest.strip_prefix('[')
        && let Some((host, port)) = v6.split_once("]:")
    {
        return (host.to_owned(), port.to_owned());
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.to_owned()),
        None => (rest.to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jumpstarter_core::testing::serve;
    use jumpstarter_core::{DriverTree, Instance};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn tcp(host: &str, port: u16, enable_address: bool) -> Instance {
        let cfg = IpConfig {
            host: host.into(),
            port,
            enable_address,
        };
        Instance::new(
            Arc::new(IpNetwork::new(
                Protocol::Tcp,
                cfg,
                Logger::detached("driver.TcpNetwork"),
            )),
            TCP_NETWORK,
        )
    }

    #[tokio::test]
    async fn echo_stream_round_trip() {
        let tree = DriverTree::composite(vec![(
            "echo",
            Instance::new(
                Arc::new(EchoNetwork::new(Logger::detached("e"))),
                ECHO_NETWORK,
            ),
        )]);
        let served = serve(tree).await.unwrap();
        let net = NetworkClient::new(served.client.get("echo").unwrap().clone());
        let mut s = net.connect().await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        s.write_all(&vec![7u8; 3 << 20]).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), 3 << 20);
        assert!(rest.iter().all(|b| *b == 7));
        // Echo has no address.
        let err = net.address().await.unwrap_err();
        assert!(err.as_call().unwrap().is_not_implemented());
        served.shutdown().await;
    }

    #[tokio::test]
    async fn tcp_forward_and_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            c.read_to_end(&mut buf).await.unwrap();
            c.write_all(&buf.to_ascii_uppercase()).await.unwrap();
        });
        let tree = DriverTree::composite(vec![
            ("tcp", tcp("127.0.0.1", port, true)),
            ("hidden", tcp("localhost", port, false)),
            ("dead", tcp("127.0.0.1", 1, true)),
        ]);
        let served = serve(tree).await.unwrap();
        let net = NetworkClient::new(served.client.get("tcp").unwrap().clone());
        assert_eq!(
            net.address().await.unwrap(),
            format!("tcp://127.0.0.1:{port}")
        );
        let mut s = net.connect().await.unwrap();
        s.write_all(b"ping over tcp").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"PING OVER TCP");

        let hidden = NetworkClient::new(served.client.get("hidden").unwrap().clone());
        let err = hidden.address().await.unwrap_err();
        assert!(err.as_call().unwrap().is_invalid_argument());

        let dead = NetworkClient::new(served.client.get("dead").unwrap().clone());
        let err = dead.connect().await.unwrap_err();
        assert_eq!(
            err.as_call().unwrap().code,
            jumpstarter_core::client::Code::Unknown
        );
        served.shutdown().await;
    }

    /// Datagrams of any size cross whole in both directions, although the bridge starts with
    /// small reads (the UDP stream asks for room instead of cutting a datagram).
    #[tokio::test]
    async fn udp_datagrams_of_any_size_cross_whole() {
        let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = echo.local_addr().unwrap().port();
        let (sizes_tx, mut sizes_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = echo.recv_from(&mut buf).await else {
                    return;
                };
                let _ = sizes_tx.send(n);
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let cfg = IpConfig {
            host: "127.0.0.1".into(),
            port,
            enable_address: true,
        };
        let udp = Instance::new(
            Arc::new(IpNetwork::new(
                Protocol::Udp,
                cfg,
                Logger::detached("driver.UdpNetwork"),
            )),
            UDP_NETWORK,
        );
        let served = serve(DriverTree::composite(vec![("udp", udp)]))
            .await
            .unwrap();
        let net = NetworkClient::new(served.client.get("udp").unwrap().clone());
        let mut s = net.connect().await.unwrap();
        let mut sent = Vec::new();
        for (i, n) in [100usize, 60_000, 10, 20_000].into_iter().enumerate() {
            let d: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            s.write_all(&d).await.unwrap();
            assert_eq!(sizes_rx.recv().await, Some(n), "datagram {i} left whole");
            sent.extend(d);
            // One at a time, so the echoes come back in order.
            let mut back = vec![0u8; n];
            s.read_exact(&mut back).await.unwrap();
            assert_eq!(back, sent[sent.len() - n..], "datagram {i} came back whole");
        }
        drop(s);
        served.shutdown().await;
    }

    #[test]
    fn address_display_helpers() {
        assert_eq!(strip_scheme("tcp://127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(
            split_host_port("udp://[::1]:53"),
            ("::1".into(), "53".into())
        );
        assert_eq!(
            split_host_port("10.0.0.1:22"),
            ("10.0.0.1".into(), "22".into())
        );
    }
}
