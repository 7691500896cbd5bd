//! A connected UDP socket as a byte stream: each write is one datagram, each read returns
//! one datagram. A read with less room than the datagram waiting fails with
//! [`NeedRoom`] and keeps the datagram, so a bridge grows its buffer instead of cutting it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use jumpstarter_core::stream::NeedRoom;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

pub struct UdpStream {
    sock: UdpSocket,
    /// Where a datagram lands when the reader's buffer may be too small (allocated on the
    /// first such read).
    scratch: Vec<u8>,
    /// A datagram that did not fit the last read.
    staged: Option<Vec<u8>>,
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
        Ok(UdpStream {
            sock,
            scratch: Vec::new(),
            staged: None,
        })
    }
}

impl AsyncRead for UdpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(d) = &this.staged {
            if d.len() > buf.remaining() {
                return Poll::Ready(Err(NeedRoom::error(d.len())));
            }
            buf.put_slice(d);
            this.staged = None;
            return Poll::Ready(Ok(()));
        }
        loop {
            let got = if buf.remaining() >= MAX_DATAGRAM {
                this.sock.poll_recv(cx, buf)
            } else {
                if this.scratch.is_empty() {
                    this.scratch = vec![0; MAX_DATAGRAM];
                }
                let mut scratch = ReadBuf::new(&mut this.scratch);
                match this.sock.poll_recv(cx, &mut scratch) {
                    Poll::Ready(Ok(())) => {
                        let d = scratch.filled();
                        if d.len() > buf.remaining() {
                            this.staged = Some(d.to_vec());
                            return Poll::Ready(Err(NeedRoom::error(d.len())));
                        }
                        buf.put_slice(d);
                        Poll::Ready(Ok(()))
                    }
                    other => other,
                }
            };
            match got {
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
