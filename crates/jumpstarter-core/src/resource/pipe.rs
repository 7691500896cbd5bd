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

use crate::stream::{ByteReceiver, ByteSender, Chunk, byte_channel};

/// One end of a [`pipe`].
pub struct PipeEnd {
    reader: PipeReader,
    writer: PipeWriter,
}

/// The reading half of a [`PipeEnd`].
pub struct PipeReader {
    rx: ByteReceiver,
    pending: Bytes,
    ended: bool,
}

/// The writing half of a [`PipeEnd`].
pub struct PipeWriter {
    tx: Option<ByteSender>,
}

/// Two connected ends: what one writes, the other reads. Each direction buffers at most
/// `limits.stream_buffer` bytes (`JMP_STREAM_BUFFER`) before writers wait.
pub fn pipe() -> (PipeEnd, PipeEnd) {
    pipe_with_capacity(crate::limits::global().stream_buffer)
}

/// A [`pipe`] buffering at most `capacity` bytes per direction (a single larger chunk passes
/// alone).
pub fn pipe_with_capacity(capacity: usize) -> (PipeEnd, PipeEnd) {
    let (a_tx, b_rx) = byte_channel(capacity);
    let (b_tx, a_rx) = byte_channel(capacity);
    let end = |tx, rx| PipeEnd {
        reader: PipeReader {
            rx,
            pending: Bytes::new(),
            ended: false,
        },
        writer: PipeWriter { tx: Some(tx) },
    };
    (end(a_tx, a_rx), end(b_tx, b_rx))
}

impl PipeEnd {
    /// Ends what this end writes (the end marker), without waiting.
    pub fn end_writes(&mut self) {
        if let Some(mut tx) = self.writer.tx.take() {
            tx.end();
        }
    }

    /// The two halves, usable from different tasks.
    pub fn into_split(self) -> (PipeReader, PipeWriter) {
        (self.reader, self.writer)
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the other side went away before the end of the data",
    )
}

impl PipeReader {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            if !self.pending.is_empty() {
                return Poll::Ready(Ok(Some(std::mem::take(&mut self.pending))));
            }
            if self.ended {
                return Poll::Ready(Ok(None));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(Chunk::Data(b)) => self.pending = b,
                Some(Chunk::End) => self.ended = true,
                None => return Poll::Ready(Err(gone())),
            }
        }
    }

    /// The next chunk as the writer sent it (no copy), or None after a clean end.
    pub async fn recv_chunk(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(mut chunk) = ready!(self.poll_chunk(cx))? {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk.split_to(n));
            self.pending = chunk;
        }
        Poll::Ready(Ok(()))
    }
}

impl PipeWriter {
    /// Sends a chunk without copying it; waits while the pipe is full.
    pub async fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let tx = self.tx.as_mut().ok_or_else(write_after_shutdown)?;
        tx.send(chunk).await.map_err(|_| gone())
    }
}

fn write_after_shutdown() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "write after shutdown")
}

impl AsyncWrite for PipeWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(Err(write_after_shutdown()));
        };
        tx.poll_write_slice(cx, buf).map_err(|_| gone())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(mut tx) = self.tx.take() {
            // A reader that is already gone needs no end marker.
            tx.end();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for PipeEnd {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for PipeEnd {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
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

    #[tokio::test]
    async fn chunks_pass_without_copies_and_mix_with_reads() {
        let (a, b) = pipe();
        let (_, mut w) = a.into_split();
        let (mut r, _) = b.into_split();
        let chunk = Bytes::from_static(b"0123456789");
        w.send(chunk.clone()).await.unwrap();
        w.send(Bytes::from_static(b"tail")).await.unwrap();
        w.shutdown().await.unwrap();
        let mut head = [0u8; 4];
        r.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"0123");
        let rest = r.recv_chunk().await.unwrap().unwrap();
        assert_eq!(&rest[..], b"456789");
        // The same allocation: no copy on the way.
        assert_eq!(rest.as_ptr(), chunk[4..].as_ptr());
        assert_eq!(&r.recv_chunk().await.unwrap().unwrap()[..], b"tail");
        assert!(r.recv_chunk().await.unwrap().is_none());
        assert!(w.send(Bytes::from_static(b"x")).await.is_err());
    }

    #[tokio::test]
    async fn writers_wait_at_the_byte_bound_and_a_dropped_reader_frees_it() {
        let (a, b) = pipe_with_capacity(1000);
        let (_, mut w) = a.into_split();
        let (r, _) = b.into_split();
        w.send(Bytes::from(vec![1u8; 600])).await.unwrap();
        w.send(Bytes::from(vec![2u8; 400])).await.unwrap();
        // Full: the next chunk waits.
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            w.send(Bytes::from_static(b"x")),
        )
        .await;
        assert!(blocked.is_err(), "a full pipe must make the writer wait");
        drop(r);
        assert_eq!(
            w.send(Bytes::from_static(b"x")).await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }

    #[tokio::test]
    async fn a_writer_dropped_mid_stream_fails_recv_chunk() {
        let (a, b) = pipe();
        let (_, mut w) = a.into_split();
        let (mut r, _) = b.into_split();
        w.send(Bytes::from_static(b"part")).await.unwrap();
        drop(w);
        assert_eq!(&r.recv_chunk().await.unwrap().unwrap()[..], b"part");
        let err = r.recv_chunk().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
