//! An in-memory byte stream that returns every chunk written to it, chunk by chunk.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Chunks buffered before writes wait for reads (upstream buffers 32 items).
const DEPTH: usize = 32;

pub struct EchoStream {
    tx: Option<PollSender<Bytes>>,
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
}

impl EchoStream {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(DEPTH);
        EchoStream {
            tx: Some(PollSender::new(tx)),
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
                Some(chunk) => self.pending = chunk,
                None => return Poll::Ready(Ok(())),
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
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(tx.poll_reserve(cx)).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        tx.send_item(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Dropping the sender ends the read side once buffered chunks are read.
        self.tx = None;
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
}
