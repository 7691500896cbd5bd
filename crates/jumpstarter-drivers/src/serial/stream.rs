//! Byte-stream adapters of the serial driver.
//!
//! * [`LineStream`]: a serial line (tty or raw TCP) as pyserial presents it: there is no end of
//!   stream (a read of zero bytes means the device went away and is an error), half-closing is
//!   a no-op (the line stays readable after the client's input ends), and flushing does not
//!   wait for the UART to drain (that would block a runtime thread).
//! * [`Throttled`]: `cps` throttling: bytes are written one at a time, with `1/cps` between
//!   the bytes of one frame (a frame ends at a flush), as upstream sends each chunk.
//! * [`Closable`]: ends a stream from outside (the driver's `close()`): reads see end of
//!   stream, writes fail, and the device handle is released at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use jumpstarter_core::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A serial line: see the module docs.
pub struct LineStream<S> {
    inner: S,
    /// What the line is, for the disconnect error (`/dev/ttyUSB0`, `socket://h:p`).
    what: String,
}

impl<S> LineStream<S> {
    pub fn new(inner: S, what: impl Into<String>) -> Self {
        LineStream {
            inner,
            what: what.into(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LineStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() == before {
            // pyserial's words: a disconnected device is always readable and returns nothing.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!(
                    "{}: device reports readiness to read but returned no data \
                     (device disconnected?)",
                    self.what
                ),
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LineStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are in the kernel's buffer; waiting for the UART (tcdrain) would block.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A serial line has no end-of-file: the client's input ended, the device keeps talking.
        Poll::Ready(Ok(()))
    }
}

/// `cps` throttling: see the module docs.
pub struct Throttled<S> {
    inner: S,
    delay: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A byte of the current frame was written, so the next one waits `delay`.
    mid_frame: bool,
}

impl<S> Throttled<S> {
    /// Throttles to `cps` bytes per second; `None` (or a rate that is not positive) writes
    /// through unchanged.
    pub fn new(inner: S, cps: Option<f64>) -> Self {
        let delay = cps
            .filter(|c| c.is_finite() && *c > 0.0)
            .and_then(|c| Duration::try_from_secs_f64(1.0 / c).ok());
        Throttled {
            inner,
            delay,
            sleep: None,
            mid_frame: false,
        }
    }

    fn end_frame(&mut self) {
        self.mid_frame = false;
        self.sleep = None;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Throttled<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Throttled<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(delay) = self.delay else {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        };
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.mid_frame {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(sleep.as_mut().poll(cx));
        }
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..1]))?;
        if n > 0 {
            self.sleep = None;
            self.mid_frame = true;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.end_frame();
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.end_frame();
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream that [`CancellationToken::cancel`] ends: see the module docs. `on_drop` runs
/// once when the stream is dropped (the driver logs the disconnection there).
pub struct Closable {
    inner: Option<BoxStream>,
    token: CancellationToken,
    read_wait: Pin<Box<WaitForCancellationFutureOwned>>,
    write_wait: Pin<Box<WaitForCancellationFutureOwned>>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl Closable {
    pub fn new(
        inner: BoxStream,
        token: CancellationToken,
        on_drop: Option<Box<dyn FnOnce() + Send>>,
    ) -> Self {
        Closable {
            inner: Some(inner),
            read_wait: Box::pin(token.clone().cancelled_owned()),
            write_wait: Box::pin(token.clone().cancelled_owned()),
            token,
            on_drop,
        }
    }

    /// The inner stream unless the token was cancelled (then it is released).
    fn live(&mut self, read: bool, cx: &mut Context<'_>) -> Option<&mut BoxStream> {
        let cancelled = self.token.is_cancelled() || {
            let wait = if read {
                &mut self.read_wait
            } else {
                &mut self.write_wait
            };
            wait.as_mut().poll(cx).is_ready()
        };
        if cancelled {
            self.inner = None;
        }
        self.inner.as_mut()
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the serial port was closed")
}

impl AsyncRead for Closable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.live(true, cx) {
            Some(s) => Pin::new(s).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Closable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.live(false, cx) {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.live(false, cx) {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.live(false, cx) {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for Closable {
    fn drop(&mut self) {
        self.inner = None;
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::EchoStream;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    type WriteLog = Arc<Mutex<Vec<(Duration, Vec<u8>)>>>;

    /// Records every write with the (paused, virtual) time it happened at.
    struct Recorder {
        start: Instant,
        log: WriteLog,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.log
                .lock()
                .unwrap()
                .push((self.start.elapsed(), buf.to_vec()));
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// On tokio's paused clock: one byte per write, `1/cps` between the bytes of a frame and
    /// no wait at a frame boundary (a flush), as upstream's per-chunk loop does.
    #[tokio::test(start_paused = true)]
    async fn throttling_spaces_bytes_within_a_frame() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let rec = Recorder {
            start: Instant::now(),
            log: log.clone(),
        };
        let mut t = Throttled::new(rec, Some(10.0));
        t.write_all(b"abc").await.unwrap();
        t.flush().await.unwrap();
        t.write_all(b"de").await.unwrap();
        t.flush().await.unwrap();
        let got = log.lock().unwrap().clone();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            got,
            vec![
                (ms(0), b"a".to_vec()),
                (ms(100), b"b".to_vec()),
                (ms(200), b"c".to_vec()),
                (ms(200), b"d".to_vec()),
                (ms(300), b"e".to_vec()),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_or_non_positive_cps_writes_through() {
        for cps in [None, Some(0.0), Some(-5.0), Some(f64::NAN)] {
            let log = Arc::new(Mutex::new(Vec::new()));
            let rec = Recorder {
                start: Instant::now(),
                log: log.clone(),
            };
            let mut t = Throttled::new(rec, cps);
            t.write_all(b"abc").await.unwrap();
            assert_eq!(
                *log.lock().unwrap(),
                vec![(Duration::ZERO, b"abc".to_vec())]
            );
        }
    }

    #[tokio::test]
    async fn line_stream_turns_eof_into_an_error_and_ignores_shutdown() {
        let mut s = LineStream::new(EchoStream::new(), "loop-test");
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        // Shutdown is ignored, so the echo keeps working.
        s.shutdown().await.unwrap();
        s.write_all(b"y").await.unwrap();
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"y");
        // A stream whose inner side reaches EOF reports a disconnection.
        let mut e = EchoStream::new();
        e.shutdown().await.unwrap();
        let mut s = LineStream::new(e, "/dev/ttyX");
        let err = s.read(&mut b).await.unwrap_err();
        assert!(err.to_string().contains("/dev/ttyX"), "{err}");
        assert!(err.to_string().contains("device disconnected"), "{err}");
    }

    #[tokio::test]
    async fn closable_ends_reads_fails_writes_and_runs_on_drop() {
        let token = CancellationToken::new();
        let dropped = Arc::new(Mutex::new(false));
        let d = dropped.clone();
        let mut s = Closable::new(
            Box::new(EchoStream::new()),
            token.child_token(),
            Some(Box::new(move || *d.lock().unwrap() = true)),
        );
        s.write_all(b"hi").await.unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.unwrap();
        // A blocked read ends when the token is cancelled.
        let reader = tokio::spawn(async move {
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            let err = s.write_all(b"late").await.unwrap_err();
            (rest, err.kind(), s)
        });
        tokio::task::yield_now().await;
        token.cancel();
        let (rest, kind, s) = reader.await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(kind, io::ErrorKind::BrokenPipe);
        assert!(!*dropped.lock().unwrap());
        drop(s);
        assert!(*dropped.lock().unwrap());
    }
}
