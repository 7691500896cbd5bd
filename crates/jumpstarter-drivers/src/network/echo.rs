//! An in-memory byte stream that returns every chunk written to it, chunk by chunk.
//!
//! What is written and not yet read back is bounded by `limits.stream_buffer` bytes
//! (`JMP_STREAM_BUFFER`): a client that writes and never reads makes its writes wait, so the
//! session stops reading its frames and the client's flow-control window closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use jumpstarter_core::stream::{ByteReceiver, ByteSender, Chunk, byte_channel};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
