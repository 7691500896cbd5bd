//! The network interfaces and `NetworkClient`.

use jumpstarter_core::{BoxStream, ClientError, DriverError};

/// Upstream's `NetworkInterface`: `connect`, a byte stream to whatever the driver reaches.
#[jumpstarter_core::interface(client = NetworkClient)]
pub trait Network {
    /// Open a byte stream
    #[stream]
    async fn connect(&self) -> Result<BoxStream, DriverError>;
}

/// The direct-connection part of the TCP and UDP drivers: `address`, where a client can
/// reach the remote end without the exporter (`tcp://ip:port`, `udp://ip:port`).
#[jumpstarter_core::interface(client = NetworkAddressClient)]
pub trait NetworkAddress {
    /// The address clients can connect to directly
    async fn address(&self) -> Result<String, DriverError>;
}

impl NetworkClient {
    /// The driver's `address` (e.g. `tcp://127.0.0.1:22`). Drivers without one (Unix, Echo)
    /// answer with NOT_IMPLEMENTED; a TCP/UDP driver without `enable_address` with
    /// INVALID_ARGUMENT.
    pub async fn address(&self) -> Result<String, ClientError> {
        NetworkAddressClient::new(self.driver.clone())
            .address()
            .await
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
