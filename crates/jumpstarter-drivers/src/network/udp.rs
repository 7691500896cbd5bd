//! A connected UDP socket as a byte stream: each write is one datagram, each read returns
//! one datagram (bridges read with buffers larger than any datagram).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;

pub struct UdpStream {
    sock: UdpSocket,
}

impl UdpStream {
    /// Binds an ephemeral local port of the right address family and connects it.
    pub async fn connect(addr: std::net::SocketAddr) -> io::Result<UdpStream> {
        let local: std::net::SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await?;
        sock.connect(addr).await?;
        Ok(UdpStream { sock })
    }
}

impl AsyncRead for UdpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.sock.poll_recv(cx, buf) {
                // An ICMP "port unreachable" from an earlier send: UDP has no connection to
                // lose, so keep listening (the peer may come up later).
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                other => return other,
            }
        }
    }
}

impl AsyncWrite for UdpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.sock.poll_send(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Datagram sockets have no write half to close.
        Poll::Ready(Ok(()))
    }
}
