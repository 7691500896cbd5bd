//! An in-memory byte pipe between two tasks, with an explicit end of data.
//!
//! Unlike a socket pair, the end of data is only ever signalled by `shutdown()`. A side that is
//! dropped without shutting down makes the other side's next read fail with `BrokenPipe`, so a
//! client that vanishes mid-upload can never look like a finished upload to the driver.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Chunks buffered in each direction before writers wait (backpressure).
const DEPTH: usize = 32;

enum Msg {
    Data(Bytes),
    End,
}

/// One end of a [`pipe`].
pub struct PipeEnd {
    tx: Option<PollSender<Msg>>,
    rx: mpsc::Receiver<Msg>,
    pending: Bytes,
    ended: bool,
}

/// Two connected ends: what one writes, the other reads.
pub fn pipe() -> (PipeEnd, PipeEnd) {
    let (a_tx, b_rx) = mpsc::channel(DEPTH);
    let (b_tx, a_rx) = mpsc::channel(DEPTH);
    (
        PipeEnd {
            tx: Some(PollSender::new(a_tx)),
            rx: a_rx,
            pending: Bytes::new(),
            ended: false,
        },
        PipeEnd {
            tx: Some(PollSender::new(b_tx)),
            rx: b_rx,
            pending: Bytes::new(),
            ended: false,
        },
    )
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the other side went away before the end of the data",
    )
}

impl AsyncRead for PipeEnd {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(Msg::Data(b)) => self.pending = b,
                Some(Msg::End) => self.ended = true,
                None => return Poll::Ready(Err(gone())),
            }
        }
    }
}

impl AsyncWrite for PipeEnd {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        };
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(tx.poll_reserve(cx)).map_err(|_| gone())?;
        tx.send_item(Msg::Data(Bytes::copy_from_slice(buf)))
            .map_err(|_| gone())?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(tx) = self.tx.as_mut() {
            // A reader that is already gone needs no end marker.
            if ready!(tx.poll_reserve(cx)).is_ok() {
                let _ = tx.send_item(Msg::End);
            }
            self.tx = None;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn data_then_clean_end() {
        let (mut a, mut b) = pipe();
        a.write_all(b"hello").await.unwrap();
        a.shutdown().await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        assert!(a.write_all(b"x").await.is_err());
    }

    #[tokio::test]
    async fn dropping_without_shutdown_is_an_error() {
        let (mut a, mut b) = pipe();
        a.write_all(b"partial").await.unwrap();
        drop(a);
        let mut got = Vec::new();
        let err = b.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(got, b"partial");
    }

    #[tokio::test]
    async fn both_directions_are_independent() {
        let (mut a, mut b) = pipe();
        b.write_all(b"down").await.unwrap();
        b.shutdown().await.unwrap();
        a.shutdown().await.unwrap();
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"down");
        let mut none = Vec::new();
        b.read_to_end(&mut none).await.unwrap();
        assert!(none.is_empty());
    }
}
