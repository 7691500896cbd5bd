//! `EchoNetwork`, and the in-memory byte stream it serves: every chunk written to an
//! [`EchoStream`] is returned, chunk by chunk.
//!
//! What is written and not yet read back is bounded by `limits.stream_buffer` bytes
//! (`JMP_STREAM_BUFFER`): a client that writes and never reads makes its writes wait, so the
//! session stops reading its frames and the client's flow-control window closes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use bytes::Bytes;
use jumpstarter_core::stream::{ByteReceiver, ByteSender, Chunk, byte_channel};
use jumpstarter_core::{BoxStream, BuildContext, ConfigError, DriverError, Logger};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{NETWORK_CLIENT, Network};

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
impl Network for EchoNetwork {
    async fn connect(&self) -> Result<BoxStream, DriverError> {
        self.logger.debug("Connecting Echo");
        Ok(Box::new(EchoStream::new()))
    }
}

jumpstarter_core::export! {
    impl EchoNetwork {
        client = NETWORK_CLIENT;
        interfaces = [Network];
    }
}

pub(super) fn build(ctx: &BuildContext<'_>) -> Result<Arc<EchoNetwork>, ConfigError> {
    crate::config::ignore_unknown(ctx, &[]);
    Ok(Arc::new(EchoNetwork::new(ctx.logger.clone())))
}

/// An in-memory byte stream that returns every chunk written to it (see the module docs).
pub struct EchoStream {
    tx: Option<ByteSender>,
    rx: ByteReceiver,
    pending: Bytes,
}

impl EchoStream {
    /// An echo holding at most `limits.stream_buffer` unread bytes.
    pub fn new() -> Self {
        Self::with_capacity(jumpstarter_core::limits::global().stream_buffer)
    }

    /// An echo holding at most `capacity` unread bytes (a single larger write passes alone).
    pub fn with_capacity(capacity: usize) -> Self {
        let (tx, rx) = byte_channel(capacity);
        EchoStream {
            tx: Some(tx),
            rx,
            pending: Bytes::new(),
        }
    }
}

impl Default for EchoStream {
    fn default() -> Self {
        Self::new()
    }
}

impl AsyncRead for EchoStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(Chunk::Data(chunk)) => self.pending = chunk,
                Some(Chunk::End) | None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for EchoStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        tx.poll_write_slice(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The read side ends once the chunks written before are read.
        if let Some(mut tx) = self.tx.take() {
            tx.end();
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{ECHO_NETWORK, NetworkClient};
    use jumpstarter_core::testing::serve;
    use jumpstarter_core::{DriverTree, Instance};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    async fn echoes_then_ends() {
        let mut e = EchoStream::new();
        e.write_all(b"hello ").await.unwrap();
        e.write_all(b"world").await.unwrap();
        e.shutdown().await.unwrap();
        let mut got = String::new();
        e.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello world");
        assert!(e.write_all(b"x").await.is_err());
    }

    #[tokio::test]
    async fn unread_bytes_are_bounded() {
        let mut e = EchoStream::with_capacity(1024);
        e.write_all(&[7u8; 1024]).await.unwrap();
        let more = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            e.write_all(b"one more"),
        )
        .await;
        assert!(more.is_err(), "an echo nobody reads must make writes wait");
        let mut back = vec![0u8; 1024];
        e.read_exact(&mut back).await.unwrap();
        e.write_all(b"one more").await.unwrap();
    }
}
