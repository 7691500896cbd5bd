//! Small local servers for network driver tests, and free ports.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

/// A TCP server that answers each connection with the upper-cased bytes it received, after
/// the client shuts down its write side. Returns the port.
pub fn tcp_upper_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf);
                let _ = c.write_all(&buf.to_ascii_uppercase());
            });
        }
    });
    port
}

/// A UDP server that echoes each datagram back, prefixed with `echo:`. Returns the port.
pub fn udp_echo_server() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                return;
            };
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, from);
        }
    });
    port
}

/// A unix socket server that answers like [`tcp_upper_server`], at `dir/unix.sock`.
pub fn unix_upper_server(dir: &Path) -> PathBuf {
    let path = dir.join("unix.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf);
                let _ = c.write_all(&buf.to_ascii_uppercase());
            });
        }
    });
    path
}

/// A free TCP port on 127.0.0.1 (for upstream's `jmp run`, which wants a real port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
