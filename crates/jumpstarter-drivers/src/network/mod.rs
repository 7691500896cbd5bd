//! The network family: drivers exposing a `connect` byte stream (and `address`),
//! `NetworkClient`, and `j <net> address|forward-tcp|forward-unix|connect`.
//!
//! Wire surface: `connect` (a byte stream, no arguments) on every driver; `address` (unary, no
//! arguments, a string) on the TCP and UDP drivers only: INVALID_ARGUMENT when
//! `enable_address` is off; the other drivers do not list it (NOT_IMPLEMENTED).
//!
//! | type | config | exports |
//! |---|---|---|
//! | `TcpNetwork` | `host`, `port`, `enable_address`=true | `connect`, `address` → `tcp://ip:port` |
//! | `UdpNetwork` | `host`, `port`, `enable_address`=true | `connect` (1 frame = 1 datagram), `address` → `udp://ip:port` |
//! | `UnixNetwork` | `path` | `connect` |
//! | `EchoNetwork` | — | `connect` echoes every chunk |
//!
//! * [`interface`]: the interfaces, declared once, `NetworkClient` and the address helpers.
//! * [`ip`]: `TcpNetwork` / `UdpNetwork`; [`unix`]: `UnixNetwork`; [`echo`]: `EchoNetwork`
//!   and [`EchoStream`]; [`udp`]: the datagram stream UDP connections use.
//! * [`cli`]: the `j` commands.

pub mod cli;
pub mod echo;
pub mod interface;
pub mod ip;
pub mod udp;
pub mod unix;

use jumpstarter_family::Families;

pub use echo::{EchoNetwork, EchoStream};
pub use interface::{
    Network, NetworkAddress, NetworkAddressClient, NetworkClient, split_host_port, strip_scheme,
};
pub use ip::{IpConfig, IpNetwork, Protocol};
pub use udp::UdpStream;
pub use unix::{UnixConfig, UnixNetwork};

/// Client class of network drivers.
pub const NETWORK_CLIENT: &str = "jumpstarter_driver_network.client.NetworkClient";
/// Upstream's D-Bus network client: `j` gives it the same commands.
pub const DBUS_NETWORK_CLIENT: &str = "jumpstarter_driver_network.client.DbusNetworkClient";

pub const TCP_NETWORK: &str = "jumpstarter_driver_network.driver.TcpNetwork";
pub const UDP_NETWORK: &str = "jumpstarter_driver_network.driver.UdpNetwork";
pub const UNIX_NETWORK: &str = "jumpstarter_driver_network.driver.UnixNetwork";
pub const ECHO_NETWORK: &str = "jumpstarter_driver_network.driver.EchoNetwork";

/// The family's registration: driver types and `j` command sets.
pub fn register(f: &mut Families) {
    f.driver(TCP_NETWORK, |ctx| ip::build(ctx, Protocol::Tcp))
        .driver(UDP_NETWORK, |ctx| ip::build(ctx, Protocol::Udp))
        .driver(UNIX_NETWORK, unix::build)
        .driver(ECHO_NETWORK, echo::build)
        .commands(&[NETWORK_CLIENT, DBUS_NETWORK_CLIENT], cli::NetworkCommands);
}
