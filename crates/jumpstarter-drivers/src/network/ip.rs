//! `TcpNetwork` and `UdpNetwork`: `connect` to `host:port`, and `address`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use jumpstarter_core::{BoxStream, BuildContext, ConfigError, DriverError, Logger};
use serde::Deserialize;

use super::udp::UdpStream;
use super::{NETWORK_CLIENT, Network, NetworkAddress};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn scheme(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
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
impl Network for IpNetwork {
    async fn connect(&self) -> Result<BoxStream, DriverError> {
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

#[async_trait]
impl NetworkAddress for IpNetwork {
    async fn address(&self) -> Result<String, DriverError> {
        if !self.config.enable_address {
            return Err(DriverError::invalid(
                "enable_address mode is not true in the exporter configuration",
            ));
        }
        Ok(format!(
            "{}://{}",
            self.protocol.scheme(),
            self.display_address().await
        ))
    }
}

jumpstarter_core::export! {
    impl IpNetwork {
        client = NETWORK_CLIENT;
        interfaces = [Network, NetworkAddress];
    }
}

pub(super) fn build(
    ctx: &BuildContext<'_>,
    protocol: Protocol,
) -> Result<Arc<IpNetwork>, ConfigError> {
    let cfg: IpConfig = ctx.config.parse()?;
    Ok(Arc::new(IpNetwork::new(protocol, cfg, ctx.logger.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{NetworkClient, TCP_NETWORK, UDP_NETWORK};
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
}
