//! `RouterService.Stream` frames <-> byte streams, written once and used everywhere.
//!
//! * [`pump_to_frames`] / [`pump_from_frames`]: the two directions of a bridge between frames
//!   and a [`ByteStream`](crate::driver::ByteStream). The session server uses them to serve a
//!   driver stream; tunnels use them to carry whole connections.
//! * [`FrameIo`]: a byte stream made of a frame receiver and a frame sender, for the calling
//!   side (our client opening a driver stream, or a tunnel endpoint).
//!
//! Rules (protocol notes §5.3): DATA carries bytes (a read becomes one frame, a frame becomes
//! one write); GOAWAY ends the direction it travels in; PING and RST_STREAM are ignored; the
//! end of the underlying gRPC stream also ends the direction.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use jumpstarter_protocol::frames::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Largest payload put in one DATA frame (well under gRPC's 4 MiB message limit).
pub const MAX_FRAME: usize = 1 << 20;
/// Read size when turning a byte stream into frames.
pub const READ_CHUNK: usize = 256 * 1024;

/// Reads `io` until EOF, sending each read as a DATA frame, then a GOAWAY frame.
/// Returns `Ok(true)` when the GOAWAY was sent, `Ok(false)` if the receiver went away.
pub async fn pump_to_frames<R, F>(
    mut io: R,
    tx: &mpsc::Sender<F>,
    data: impl Fn(Bytes) -> F,
    goaway: F,
) -> io::Result<bool>
where
    R: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        // Stop as soon as the receiver is gone: a stream whose client left must not go on
        // reading (and so swallowing) what the device sends next.
        let n = tokio::select! {
            r = io.read_buf(&mut buf) => r?,
            _ = tx.closed() => return Ok(false),
        };
        if n == 0 {
            break;
        }
        if tx.send(data(buf.split().freeze())).await.is_err() {
            return Ok(false);
        }
    }
    Ok(tx.send(goaway).await.is_ok())
}

/// Writes DATA frames from `frames` into `io` until GOAWAY or the end of the frame stream,
/// then shuts down `io`'s write side. Errors from the frame stream are returned.
pub async fn pump_from_frames<W, S, E>(mut frames: S, mut io: W) -> Result<(), PumpError<E>>
where
    W: AsyncWrite + Unpin,
    S: Stream<Item = Result<Frame, E>> + Unpin,
{
    use futures::StreamExt;
    while let Some(item) = frames.next().await {
        match item.map_err(PumpError::Frames)? {
            Frame::Data(b) => {
                if !b.is_empty() {
                    io.write_all(&b).await.map_err(PumpError::Io)?;
                    io.flush().await.map_err(PumpError::Io)?;
                }
            }
            Frame::GoAway => break,
            Frame::Ignored => {}
        }
    }
    io.shutdown().await.map_err(PumpError::Io)
}

/// Why a frame pump stopped early.
#[derive(Debug)]
pub enum PumpError<E> {
    /// The frame stream failed (peer reset or connection lost).
    Frames(E),
    /// Writing to the byte stream failed.
    Io(io::Error),
}

/// A byte stream over frames: reads come from `incoming`, writes become DATA frames on
/// `outgoing`, and `shutdown` sends GOAWAY and then closes `outgoing` (a half-close).
pub struct FrameIo<S, F> {
    incoming: S,
    outgoing: PollSender<F>,
    make_data: fn(Bytes) -> F,
    make_goaway: fn() -> F,
    pending: Bytes,
    read_done: bool,
    shutdown: ShutdownState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShutdownState {
    Open,
    GoawaySent,
    Closed,
}

impl<S, F> FrameIo<S, F>
where
    F: Send + 'static,
{
    pub fn new(
        incoming: S,
        outgoing: mpsc::Sender<F>,
        make_data: fn(Bytes) -> F,
        make_goaway: fn() -> F,
    ) -> Self {
        FrameIo {
            incoming,
            outgoing: PollSender::new(outgoing),
            make_data,
            make_goaway,
            pending: Bytes::new(),
            read_done: false,
            shutdown: ShutdownState::Open,
        }
    }
}

impl<S, F> FrameIo<S, F>
where
    F: Send + 'static,
{
    /// Sends `data` as DATA frames without copying it (split at [`MAX_FRAME`]).
    pub async fn send_data(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            if self.shutdown != ShutdownState::Open {
                return Err(closed());
            }
            std::future::poll_fn(|cx| self.outgoing.poll_reserve(cx))
                .await
                .map_err(|_| closed())?;
            let part = data.split_to(data.len().min(MAX_FRAME));
            let frame = (self.make_data)(part);
            self.outgoing.send_item(frame).map_err(|_| closed())?;
        }
        Ok(())
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "stream closed by peer")
}

impl<S, F, E> AsyncRead for FrameIo<S, F>
where
    S: Stream<Item = Result<Frame, E>> + Unpin,
    E: std::fmt::Display,
    F: Send + 'static,
{
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
            if self.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.incoming).poll_next(cx)) {
                Some(Ok(Frame::Data(b))) => self.pending = b,
                Some(Ok(Frame::Ignored)) => {}
                Some(Ok(Frame::GoAway)) | None => self.read_done = true,
                Some(Err(e)) => {
                    self.read_done = true;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        e.to_string(),
                    )));
                }
            }
        }
    }
}

impl<S, F> AsyncWrite for FrameIo<S, F>
where
    S: Unpin,
    F: Send + 'static,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shutdown != ShutdownState::Open {
            return Poll::Ready(Err(closed()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.outgoing.poll_reserve(cx)).map_err(|_| closed())?;
        let n = buf.len().min(MAX_FRAME);
        let frame = (self.make_data)(Bytes::copy_from_slice(&buf[..n]));
        self.outgoing.send_item(frame).map_err(|_| closed())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shutdown == ShutdownState::Open {
            // A peer that is already gone needs no GOAWAY.
            if ready!(self.outgoing.poll_reserve(cx)).is_ok() {
                let goaway = (self.make_goaway)();
                let _ = self.outgoing.send_item(goaway);
            }
            self.shutdown = ShutdownState::GoawaySent;
        }
        if self.shutdown == ShutdownState::GoawaySent {
            self.outgoing.close();
            self.shutdown = ShutdownState::Closed;
        }
        Poll::Ready(Ok(()))
    }
}

/// Copies both directions between two byte streams, with half-close: when one side reaches
/// EOF the other side's write half is shut down. Returns the bytes copied each way.
pub async fn splice<A, B>(a: A, b: B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let a_to_b = async {
        let n = copy_chunks(&mut ar, &mut bw).await?;
        // Some writers (tokio's stdout) do not flush on shutdown.
        bw.flush().await?;
        bw.shutdown().await?;
        Ok::<_, io::Error>(n)
    };
    let b_to_a = async {
        let n = copy_chunks(&mut br, &mut aw).await?;
        aw.flush().await?;
        aw.shutdown().await?;
        Ok::<_, io::Error>(n)
    };
    tokio::try_join!(a_to_b, b_to_a)
}

/// Copies read-by-read (one write per read, so datagram boundaries survive).
async fn copy_chunks<R, W>(r: &mut R, w: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio_stream::wrappers::ReceiverStream;

    #[derive(Debug, PartialEq)]
    enum Out {
        Data(Bytes),
        GoAway,
    }

    type TestIo = FrameIo<ReceiverStream<Result<Frame, String>>, Out>;

    fn io_pair() -> (
        TestIo,
        mpsc::Sender<Result<Frame, String>>,
        mpsc::Receiver<Out>,
    ) {
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, out_rx) = mpsc::channel(8);
        let io = FrameIo::new(ReceiverStream::new(in_rx), out_tx, Out::Data, || {
            Out::GoAway
        });
        (io, in_tx, out_rx)
    }

    #[tokio::test]
    async fn reads_skip_ignored_frames_and_stop_at_goaway() {
        let (mut io, tx, _out) = io_pair();
        tx.send(Ok(Frame::Data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
        tx.send(Ok(Frame::Ignored)).await.unwrap();
        tx.send(Ok(Frame::Data(Bytes::new()))).await.unwrap();
        tx.send(Ok(Frame::Data(Bytes::from_static(b"cd"))))
            .await
            .unwrap();
        tx.send(Ok(Frame::GoAway)).await.unwrap();
        tx.send(Ok(Frame::Data(Bytes::from_static(b"late"))))
            .await
            .unwrap();
        let mut got = Vec::new();
        io.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abcd");
    }

    #[tokio::test]
    async fn frame_errors_are_io_errors() {
        let (mut io, tx, _out) = io_pair();
        tx.send(Err("reset".into())).await.unwrap();
        let mut buf = [0u8; 4];
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn writes_become_frames_and_shutdown_sends_goaway_once() {
        let (mut io, _tx, mut out) = io_pair();
        io.write_all(b"hello").await.unwrap();
        io.shutdown().await.unwrap();
        io.shutdown().await.unwrap();
        assert!(io.write_all(b"x").await.is_err());
        drop(io);
        let frames: Vec<Out> = ReceiverStream::new(out_take(&mut out)).collect().await;
        assert_eq!(
            frames,
            [Out::Data(Bytes::from_static(b"hello")), Out::GoAway]
        );
    }

    fn out_take(out: &mut mpsc::Receiver<Out>) -> mpsc::Receiver<Out> {
        let (tx, rx) = mpsc::channel(16);
        while let Ok(v) = out.try_recv() {
            tx.try_send(v).unwrap();
        }
        rx
    }

    #[tokio::test]
    async fn pumps_move_bytes_and_eof() {
        let (a, mut b) = tokio::io::duplex(64);
        let (tx, mut rx) = mpsc::channel(8);
        let task =
            tokio::spawn(async move { pump_to_frames(a, &tx, Out::Data, Out::GoAway).await });
        b.write_all(b"xyz").await.unwrap();
        b.shutdown().await.unwrap();
        let mut got = Vec::new();
        while let Some(f) = rx.recv().await {
            got.push(f);
        }
        assert_eq!(got.last(), Some(&Out::GoAway));
        assert!(task.await.unwrap().unwrap());

        let (c, mut d) = tokio::io::duplex(64);
        let frames = futures::stream::iter(vec![
            Ok::<_, String>(Frame::Data(Bytes::from_static(b"12"))),
            Ok(Frame::Ignored),
            Ok(Frame::Data(Bytes::from_static(b"34"))),
            Ok(Frame::GoAway),
        ]);
        pump_from_frames(frames, c).await.unwrap();
        let mut got = Vec::new();
        d.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"1234");
    }

    #[tokio::test]
    async fn splice_half_closes() {
        let (a1, mut a2) = tokio::io::duplex(64);
        let (b1, mut b2) = tokio::io::duplex(64);
        let t = tokio::spawn(splice(a1, b1));
        a2.write_all(b"ping").await.unwrap();
        a2.shutdown().await.unwrap();
        let mut got = Vec::new();
        b2.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        b2.write_all(b"pong").await.unwrap();
        b2.shutdown().await.unwrap();
        let mut back = Vec::new();
        a2.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
        assert_eq!(t.await.unwrap().unwrap(), (4, 4));
    }
}
