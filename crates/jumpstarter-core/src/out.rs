//! Writing to stdout without panicking when the reader went away.
//!
//! `println!` panics when stdout fails (`jmp completion bash | head -1`: "failed printing to
//! stdout: Broken pipe"). The command-line programs print through [`outln!`](crate::outln) and
//! [`out!`](crate::out) instead: a closed pipe (EPIPE) ends the process quietly with status 1,
//! as click does (upstream's `jmp` and `j` exit 1 there); any other write error is reported in
//! one line on stderr, also with status 1.
//!
//! SIGPIPE stays ignored process-wide (Rust's default): the exporter writes to sockets, and a
//! peer that goes away must end that connection, not the process.

use std::fmt;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The exit status of a command whose stdout was closed by its reader (click's).
pub const STDOUT_CLOSED: i32 = 1;

/// Writes `args` to stdout and flushes; on failure ends the process (see the module docs).
pub fn write_stdout(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

/// Writes raw bytes to stdout and flushes; on failure ends the process (see the module docs).
pub fn write_stdout_bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

/// Ends the process after a failed write to stdout: quietly for a closed pipe, with one line
/// on stderr otherwise. Status [`STDOUT_CLOSED`] either way.
pub fn stdout_failed(e: &io::Error) -> ! {
    if !is_closed_pipe(e) {
        let _ = writeln!(io::stderr(), "Error: cannot write to stdout: {e}");
    }
    std::process::exit(STDOUT_CLOSED)
}

/// Whether an error means the reader of our stdout went away (EPIPE).
pub fn is_closed_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Tokio's stdout, ending the process like [`write_stdout`] when a write or flush fails with
/// a closed pipe (other errors are returned to the caller).
pub struct AsyncStdout(tokio::io::Stdout);

/// Tokio's stdout for byte copies (`j ... connect`, `j fs read-bytes`): see [`AsyncStdout`].
pub fn async_stdout() -> AsyncStdout {
    AsyncStdout(tokio::io::stdout())
}

fn quiet_on_closed_pipe<T>(r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
    if let Poll::Ready(Err(e)) = &r
        && is_closed_pipe(e)
    {
        stdout_failed(e);
    }
    r
}

impl tokio::io::AsyncWrite for AsyncStdout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        quiet_on_closed_pipe(Pin::new(&mut self.0).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        quiet_on_closed_pipe(Pin::new(&mut self.0).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        quiet_on_closed_pipe(Pin::new(&mut self.0).poll_shutdown(cx))
    }
}

/// The stdout of log lines (`j`, `jmp shell`): a closed pipe swallows them silently instead of
/// ending the process or complaining on stderr (a log line never decides a command's fate).
pub struct LogStdout(io::Stdout);

impl LogStdout {
    pub fn new() -> Self {
        LogStdout(io::stdout())
    }
}

impl Default for LogStdout {
    fn default() -> Self {
        LogStdout::new()
    }
}

impl Write for LogStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if is_closed_pipe(&e) => Ok(buf.len()),
            r => r,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0.flush() {
            Err(e) if is_closed_pipe(&e) => Ok(()),
            r => r,
        }
    }
}

/// `print!` that ends the process quietly (status 1) when stdout is a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write_stdout(::std::format_args!($($arg)*))
    };
}

/// `println!` that ends the process quietly (status 1) when stdout is a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::write_stdout_bytes(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::out::write_stdout(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}
