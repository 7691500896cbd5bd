//! `RouterService.Stream` frames <-> byte streams, written once and used everywhere.
//!
//! * [`pump_to_frames`] / [`pump_from_frames`]: the two directions of a bridge between frames
//!   and a [`ByteStream`](crate::driver::ByteStream). The session server uses them to serve a
//!   driver stream; tunnels use them to carry whole connections.
//! * [`FrameIo`]: a byte stream made of a frame receiver and a frame sender, for the calling
//!   side (our client opening a driver stream, or a tunnel endpoint).
//!
//! * [`byte_channel`]: a one-way channel of byte chunks bounded by the bytes it holds (not the
//!   number of chunks), the buffer behind resource pipes and in-memory driver streams. A full
//!   channel makes the writer wait, so whoever feeds it stops reading its HTTP/2 stream and the
//!   peer's flow-control window closes: a slow or absent reader costs at most the bound.
//! * [`gauges`]: what every bounded channel and stream bridge of the process holds right now
//!   (tests assert that it returns to zero).
//!
//! Rules (protocol notes §5.3): DATA carries bytes (a read becomes one frame, a frame becomes
//! one write); GOAWAY ends the direction it travels in; PING and RST_STREAM are ignored; the
//! end of the underlying gRPC stream also ends the direction.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use jumpstarter_protocol::frames::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Largest payload put in one DATA frame (well under gRPC's 4 MiB message limit).
pub const MAX_FRAME: usize = 1 << 20;
/// Largest read when turning a byte stream into frames.
pub const READ_CHUNK: usize = 256 * 1024;
/// First read size of a stream. Reads grow towards [`READ_CHUNK`] only while they come back
/// full, so thousands of quiet streams (consoles, echo, small exchanges) do not each hold a
/// quarter-megabyte buffer: eager large buffers made the allocator keep hundreds of megabytes
/// resident after stream churn although nothing was live. A datagram stream whose datagram
/// does not fit answers [`NeedRoom`] and gets a larger buffer; nothing is cut.
pub const FIRST_READ_CHUNK: usize = 4 * 1024;

/// What a datagram-backed byte stream fails a read with (inside an `io::Error`) when the read's
/// buffer is smaller than the datagram waiting: the stream keeps the datagram, the reader grows
/// its buffer to at least this many bytes and reads again.
#[derive(Debug, thiserror::Error)]
#[error("a read needs room for {0} bytes")]
pub struct NeedRoom(pub usize);

impl NeedRoom {
    pub fn error(bytes: usize) -> io::Error {
        io::Error::other(NeedRoom(bytes))
    }

    /// The room asked for, if `e` is a [`NeedRoom`].
    pub fn of(e: &io::Error) -> Option<usize> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<NeedRoom>())
            .map(|n| n.0)
    }
}

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
    let mut chunk = FIRST_READ_CHUNK;
    let mut buf = BytesMut::with_capacity(chunk);
    loop {
        if buf.capacity() - buf.len() < chunk / 4 {
            buf.reserve(chunk);
        }
        let room = buf.capacity() - buf.len();
        // Stop as soon as the receiver is gone: a stream whose client left must not go on
        // reading (and so swallowing) what the device sends next.
        let n = tokio::select! {
            r = io.read_buf(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => match NeedRoom::of(&e) {
                    Some(need) => {
                        buf.reserve(need);
                        chunk = chunk.max(need.min(READ_CHUNK));
                        continue;
                    }
                    None => return Err(e),
                },
            },
            _ = tx.closed() => return Ok(false),
        };
        if n == 0 {
            break;
        }
        // A read that filled its room: the source is fast, read more at a time.
        if n == room && chunk < READ_CHUNK {
            chunk = (chunk * 2).min(READ_CHUNK);
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

/// Bytes held in byte channels, channels alive and stream bridges running, process-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gauges {
    /// Bytes written into a [`byte_channel`] and not yet read (or dropped).
    pub buffered_bytes: usize,
    /// [`byte_channel`]s with at least one half alive.
    pub channels: usize,
    /// Stream bridges (a session serving a driver or resource stream) still running.
    pub bridges: usize,
}

static BUFFERED: AtomicUsize = AtomicUsize::new(0);
static CHANNELS: AtomicUsize = AtomicUsize::new(0);
static BRIDGES: AtomicUsize = AtomicUsize::new(0);

/// The process's current [`Gauges`].
pub fn gauges() -> Gauges {
    Gauges {
        buffered_bytes: BUFFERED.load(Ordering::SeqCst),
        channels: CHANNELS.load(Ordering::SeqCst),
        bridges: BRIDGES.load(Ordering::SeqCst),
    }
}

/// Counts one running stream bridge in [`Gauges::bridges`] while it is alive.
#[derive(Debug)]
pub struct BridgeGauge(());

impl BridgeGauge {
    pub fn new() -> BridgeGauge {
        BRIDGES.fetch_add(1, Ordering::SeqCst);
        BridgeGauge(())
    }
}

impl Default for BridgeGauge {
    fn default() -> Self {
        BridgeGauge::new()
    }
}

impl Drop for BridgeGauge {
    fn drop(&mut self) {
        BRIDGES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a [`ByteReceiver`] gets: a chunk, or the sender's explicit end of data.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    Data(Bytes),
    End,
}

struct ChanState {
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    held: usize,
    capacity: usize,
    ended: bool,
    sender_alive: bool,
    receiver_alive: bool,
    rx_waker: Option<Waker>,
    tx_waker: Option<Waker>,
}

impl ChanState {
    /// How many of `want` bytes may be queued now (0: wait). A chunk always fits an empty
    /// channel, so one chunk larger than the capacity still passes, alone.
    fn room(&self, want: usize) -> usize {
        if self.held == 0 {
            want
        } else {
            want.min(self.capacity.saturating_sub(self.held))
        }
    }

    fn check_open(&self) -> io::Result<()> {
        if !self.receiver_alive {
            Err(receiver_gone())
        } else if self.ended {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after the end of the data",
            ))
        } else {
            Ok(())
        }
    }

    fn clear(&mut self) {
        self.queue.clear();
        BUFFERED.fetch_sub(self.held, Ordering::SeqCst);
        self.held = 0;
    }
}

struct Chan {
    state: Mutex<ChanState>,
}

impl Chan {
    fn lock(&self) -> std::sync::MutexGuard<'_, ChanState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Chan {
    fn drop(&mut self) {
        self.lock().clear();
        CHANNELS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The writing half of a [`byte_channel`].
pub struct ByteSender {
    chan: Arc<Chan>,
}

/// The reading half of a [`byte_channel`].
pub struct ByteReceiver {
    chan: Arc<Chan>,
}

/// A channel of byte chunks holding at most `capacity` bytes (at least one chunk). Dropping
/// the receiver frees what it held and fails the sender; dropping the sender without
/// [`ByteSender::end`] makes the receiver see `None` (no end marker) once it read the rest.
pub fn byte_channel(capacity: usize) -> (ByteSender, ByteReceiver) {
    CHANNELS.fetch_add(1, Ordering::SeqCst);
    let chan = Arc::new(Chan {
        state: Mutex::new(ChanState {
            queue: VecDeque::new(),
            held: 0,
            capacity: capacity.max(1),
            ended: false,
            sender_alive: true,
            receiver_alive: true,
            rx_waker: None,
            tx_waker: None,
        }),
    });
    (ByteSender { chan: chan.clone() }, ByteReceiver { chan })
}

fn receiver_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the reading side went away")
}

impl ByteSender {
    /// Waits for room for up to `want` bytes (at least 1) and returns how many fit.
    fn poll_room(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let mut st = self.chan.lock();
        st.check_open()?;
        match st.room(want) {
            0 => {
                st.tx_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            n => Poll::Ready(Ok(n)),
        }
    }

    fn push(&mut self, chunk: Bytes) {
        let mut st = self.chan.lock();
        BUFFERED.fetch_add(chunk.len(), Ordering::SeqCst);
        st.held += chunk.len();
        st.queue.push_back(chunk);
        if let Some(w) = st.rx_waker.take() {
            w.wake();
        }
    }

    /// Queues `chunk` whole (no copy), waiting while the channel is full.
    pub async fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let len = chunk.len();
        std::future::poll_fn(|cx| self.poll_drained(cx, len)).await?;
        self.push(chunk);
        Ok(())
    }

    fn poll_drained(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        let mut st = self.chan.lock();
        st.check_open()?;
        if st.held == 0 || st.held + len <= st.capacity {
            Poll::Ready(Ok(()))
        } else {
            st.tx_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Copies as much of `buf` as fits (at least one byte), waiting while the channel is full.
    pub fn poll_write_slice(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(self.poll_room(cx, buf.len()))?;
        self.push(Bytes::copy_from_slice(&buf[..n]));
        Poll::Ready(Ok(n))
    }

    /// Marks the end of the data (the receiver reads [`Chunk::End`] after the rest); later
    /// sends fail. Returns false when the receiver is already gone.
    pub fn end(&mut self) -> bool {
        let mut st = self.chan.lock();
        st.ended = true;
        if let Some(w) = st.rx_waker.take() {
            w.wake();
        }
        st.receiver_alive
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        !self.chan.lock().receiver_alive
    }
}

impl Drop for ByteSender {
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        st.sender_alive = false;
        if let Some(w) = st.rx_waker.take() {
            w.wake();
        }
    }
}

impl ByteReceiver {
    /// The next chunk, the end marker, or `None` when the sender went away without an end
    /// (after everything it sent was read).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        let mut st = self.chan.lock();
        if let Some(chunk) = st.queue.pop_front() {
            st.held -= chunk.len();
            BUFFERED.fetch_sub(chunk.len(), Ordering::SeqCst);
            if let Some(w) = st.tx_waker.take() {
                w.wake();
            }
            return Poll::Ready(Some(Chunk::Data(chunk)));
        }
        if st.ended {
            return Poll::Ready(Some(Chunk::End));
        }
        if !st.sender_alive {
            return Poll::Ready(None);
        }
        st.rx_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub async fn recv(&mut self) -> Option<Chunk> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Drop for ByteReceiver {
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        st.receiver_alive = false;
        st.clear();
        if let Some(w) = st.tx_waker.take() {
            w.wake();
        }
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

    /// What a hostile or broken peer may send on a stream.
    #[derive(Debug, Clone)]
    enum Ev {
        Data(Vec<u8>),
        Ignored,
    }

    /// How the frame stream ends: GOAWAY (then junk that must be ignored), a reset, or the
    /// end of the gRPC stream without GOAWAY.
    #[derive(Debug, Clone, Copy)]
    enum End {
        GoAway,
        Reset,
        Eof,
    }

    fn events() -> impl proptest::strategy::Strategy<Value = (Vec<Ev>, End, Vec<Ev>, Vec<usize>)> {
        use proptest::prelude::*;
        let ev = prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Ev::Data),
            1 => Just(Ev::Data(Vec::new())),
            1 => Just(Ev::Ignored),
        ];
        let end = prop_oneof![Just(End::GoAway), Just(End::Reset), Just(End::Eof)];
        (
            proptest::collection::vec(ev.clone(), 0..40),
            end,
            proptest::collection::vec(ev, 0..4),
            // Read sizes (and duplex capacities) the reader uses, cycled.
            proptest::collection::vec(1usize..400, 1..8),
        )
    }

    fn frames(evs: &[Ev], end: End, tail: &[Ev]) -> Vec<Result<Frame, String>> {
        let to = |e: &Ev| match e {
            Ev::Data(d) => Ok(Frame::Data(Bytes::from(d.clone()))),
            Ev::Ignored => Ok(Frame::Ignored),
        };
        let mut v: Vec<_> = evs.iter().map(to).collect();
        match end {
            End::GoAway => {
                v.push(Ok(Frame::GoAway));
                v.extend(tail.iter().map(to));
            }
            End::Reset => {
                v.push(Err("reset by peer".to_owned()));
                v.extend(tail.iter().map(to));
            }
            End::Eof => {}
        }
        v
    }

    fn sent(evs: &[Ev]) -> Vec<u8> {
        evs.iter()
            .filter_map(|e| match e {
                Ev::Data(d) => Some(d.as_slice()),
                Ev::Ignored => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    proptest::proptest! {
        /// FrameIo reading arbitrary frame sequences with arbitrary read sizes: exactly the
        /// DATA bytes before GOAWAY/reset/EOF, an error only after a reset, nothing after.
        #[test]
        fn hostile_frame_sequences_read_exactly_the_data((evs, end, tail, sizes) in events()) {
            let want = sent(&evs);
            let input = frames(&evs, end, &tail);
            let (got, err) = rt().block_on(async move {
                let (tx, rx) = mpsc::channel(4);
                let feeder = tokio::spawn(async move {
                    for f in input {
                        if tx.send(f).await.is_err() {
                            break;
                        }
                    }
                });
                let (out_tx, _out_rx) = mpsc::channel::<Out>(1);
                let mut io = FrameIo::new(ReceiverStream::new(rx), out_tx, Out::Data, || Out::GoAway);
                let mut got = Vec::new();
                let mut err = None;
                for size in sizes.iter().cycle() {
                    let mut buf = vec![0u8; *size];
                    match io.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) => {
                            err = Some(e.kind());
                            break;
                        }
                    }
                }
                // After the end, reads stay at EOF.
                let mut buf = [0u8; 8];
                let after = io.read(&mut buf).await.map_err(|e| e.kind());
                if err.is_some() || matches!(end, End::GoAway | End::Eof) {
                    assert_eq!(after, Ok(0));
                }
                drop(io);
                let _ = feeder.await;
                (got, err)
            });
            proptest::prop_assert_eq!(&got, &want);
            match end {
                End::Reset => proptest::prop_assert_eq!(err, Some(io::ErrorKind::ConnectionReset)),
                _ => proptest::prop_assert_eq!(err, None),
            }
        }

        /// pump_from_frames into a byte stream with a tiny buffer (the reader slower than the
        /// frames): exactly the DATA bytes, shut down after GOAWAY or EOF, an error on reset.
        #[test]
        fn hostile_frame_sequences_pump_exactly_the_data((evs, end, tail, sizes) in events()) {
            let want = sent(&evs);
            let input = frames(&evs, end, &tail);
            let cap = sizes[0];
            let (got, result) = rt().block_on(async move {
                let (w, mut r) = tokio::io::duplex(cap);
                let pump = tokio::spawn(pump_from_frames(futures::stream::iter(input), w));
                let mut got = Vec::new();
                let read = r.read_to_end(&mut got).await;
                assert!(read.is_ok());
                let result = pump.await.expect("no panic");
                (got, result.map_err(|e| matches!(e, PumpError::Frames(_))))
            });
            // Every frame before the end is written whole before the next is looked at.
            proptest::prop_assert_eq!(&got, &want);
            match end {
                End::Reset => proptest::prop_assert_eq!(result, Err(true)),
                _ => proptest::prop_assert_eq!(result, Ok(())),
            }
        }

        /// pump_to_frames and FrameIo writes with arbitrary chunkings through a small bounded
        /// byte channel: the DATA frames carry exactly the bytes written, then one GOAWAY.
        #[test]
        fn hostile_chunkings_reach_the_frames_intact((evs, _end, _tail, sizes) in events()) {
            let want = sent(&evs);
            let cap = sizes[0];
            let chunks: Vec<Vec<u8>> = evs
                .iter()
                .filter_map(|e| match e {
                    Ev::Data(d) => Some(d.clone()),
                    Ev::Ignored => None,
                })
                .collect();
            let got = rt().block_on(async move {
                let (mut tx, mut rx) = byte_channel(cap);
                let (w, r) = tokio::io::duplex(cap);
                let writer = tokio::spawn(async move {
                    for c in chunks {
                        tx.send(Bytes::from(c)).await.expect("receiver alive");
                    }
                    tx.end();
                });
                // byte channel -> duplex -> frames.
                let copier = tokio::spawn(async move {
                    let mut w = w;
                    while let Some(Chunk::Data(b)) = rx.recv().await {
                        w.write_all(&b).await.expect("duplex");
                    }
                    w.shutdown().await.expect("shutdown");
                });
                let (ftx, mut frx) = mpsc::channel(2);
                let pump = tokio::spawn(async move { pump_to_frames(r, &ftx, Out::Data, Out::GoAway).await });
                let mut got = Vec::new();
                let mut goaways = 0;
                while let Some(f) = frx.recv().await {
                    match f {
                        Out::Data(b) => {
                            assert_eq!(goaways, 0, "data after GOAWAY");
                            assert!(!b.is_empty(), "empty DATA frame");
                            got.extend_from_slice(&b);
                        }
                        Out::GoAway => goaways += 1,
                    }
                }
                assert_eq!(goaways, 1);
                writer.await.expect("writer");
                copier.await.expect("copier");
                assert!(pump.await.expect("pump").expect("io"));
                got
            });
            proptest::prop_assert_eq!(&got, &want);
        }
    }

    #[tokio::test]
    async fn byte_channel_bounds_bytes_and_frees_on_drop() {
        let (mut tx, rx) = byte_channel(100);
        tx.send(Bytes::from(vec![0u8; 60])).await.unwrap();
        tx.send(Bytes::from(vec![0u8; 40])).await.unwrap();
        let full = tokio::time::timeout(
            std::time::Duration::from_millis(30),
            tx.send(Bytes::from_static(b"x")),
        )
        .await;
        assert!(full.is_err(), "a full channel makes the sender wait");
        drop(rx);
        assert!(tx.send(Bytes::from_static(b"x")).await.is_err());
        // One chunk larger than the capacity passes alone.
        let (mut tx, mut rx) = byte_channel(10);
        tx.send(Bytes::from(vec![1u8; 50])).await.unwrap();
        tx.end();
        assert_eq!(
            rx.recv().await,
            Some(Chunk::Data(Bytes::from(vec![1u8; 50])))
        );
        assert_eq!(rx.recv().await, Some(Chunk::End));
        let (tx, mut rx) = byte_channel(10);
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }
}
