//! An expect-style helper for consoles: send text, wait for patterns.
//!
//! [`Console`] drives any byte stream (a serial `connect` stream, a TCP socket, a pty). It is
//! what upstream's clients get from pexpect (`client.serial.open()`), without a local port
//! forward:
//!
//! ```no_run
//! # async fn demo(serial: jumpstarter_drivers::serial::SerialClient) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! let mut console = serial.console().await?;
//! console.send_line("root").await?;
//! console.expect(r"[#$] $", Duration::from_secs(30)).await?;
//! console.send_line("uname -r").await?;
//! let m = console.expect(r"(\d+\.\d+\.\d+)", Duration::from_secs(5)).await?;
//! println!("kernel {}", m.group_str(1).unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! Matching works on bytes (`regex::bytes`), so binary output and invalid UTF-8 never break it.
//! Every expect searches the bytes received and not yet consumed; a match consumes everything
//! up to its end, and what follows stays for the next expect. On a timeout or the end of the
//! stream nothing is consumed, and the error carries what was seen.

use std::fmt;
use std::io;
use std::time::Duration;

use regex::bytes::Regex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What an expect matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Which pattern matched (always 0 for [`Console::expect`] and [`Console::expect_exact`]).
    pub index: usize,
    /// The bytes received before the match.
    pub before: Vec<u8>,
    /// The matched bytes.
    pub matched: Vec<u8>,
    /// Capture groups of the regex (group 0 is the whole match); `None` for groups that did
    /// not take part.
    pub groups: Vec<Option<Vec<u8>>>,
}

impl Match {
    /// [`Match::before`] as text (invalid UTF-8 replaced).
    pub fn before_str(&self) -> String {
        String::from_utf8_lossy(&self.before).into_owned()
    }

    /// [`Match::matched`] as text (invalid UTF-8 replaced).
    pub fn matched_str(&self) -> String {
        String::from_utf8_lossy(&self.matched).into_owned()
    }

    /// Capture group `i` as text, if it took part in the match.
    pub fn group_str(&self, i: usize) -> Option<String> {
        self.groups
            .get(i)?
            .as_ref()
            .map(|g| String::from_utf8_lossy(g).into_owned())
    }
}

/// Why an expect or a send failed.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    /// Nothing matched in time. `seen` is everything received and not consumed.
    #[error("timed out after {timeout:?} waiting for {pattern}; seen: {}", Seen(.seen))]
    Timeout {
        pattern: String,
        timeout: Duration,
        seen: Vec<u8>,
    },
    /// The stream ended before anything matched.
    #[error("end of stream while waiting for {pattern}; seen: {}", Seen(.seen))]
    Eof { pattern: String, seen: Vec<u8> },
    /// A pattern is not a valid regular expression.
    #[error("invalid pattern: {0}")]
    Pattern(#[from] regex::Error),
    /// Reading or writing the stream failed.
    #[error("console I/O failed: {0}")]
    Io(#[from] io::Error),
}

impl ExpectError {
    /// What was received and not consumed, for timeouts and end of stream.
    pub fn seen(&self) -> Option<&[u8]> {
        match self {
            ExpectError::Timeout { seen, .. } | ExpectError::Eof { seen, .. } => Some(seen),
            _ => None,
        }
    }
}

/// Shows received bytes in an error message: escaped, the last 200 bytes at most.
struct Seen<'a>(&'a [u8]);

impl fmt::Display for Seen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 200;
        let tail = &self.0[self.0.len().saturating_sub(MAX)..];
        let dots = if tail.len() < self.0.len() { "..." } else { "" };
        write!(f, "\"{dots}{}\"", tail.escape_ascii())
    }
}

/// An expect-style console over a byte stream; see the module docs.
pub struct Console<S> {
    io: S,
    buf: Vec<u8>,
    eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Console<S> {
    pub fn new(io: S) -> Self {
        Console {
            io,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Writes bytes as they are.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ExpectError> {
        self.io.write_all(data).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Writes `line` followed by `\n` (what pexpect's `sendline` sends on Linux).
    pub async fn send_line(&mut self, line: &str) -> Result<(), ExpectError> {
        let mut data = Vec::with_capacity(line.len() + 1);
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
        self.send(&data).await
    }

    /// Waits until `pattern` (a regular expression) matches the received bytes.
    pub async fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<Match, ExpectError> {
        let re = Regex::new(pattern)?;
        self.expect_any_regex(std::slice::from_ref(&re), timeout)
            .await
    }

    /// [`Console::expect`] with a compiled regex.
    pub async fn expect_regex(
        &mut self,
        re: &Regex,
        timeout: Duration,
    ) -> Result<Match, ExpectError> {
        self.expect_any_regex(std::slice::from_ref(re), timeout)
            .await
    }

    /// Waits for `text`, matched literally.
    pub async fn expect_exact(
        &mut self,
        text: &str,
        timeout: Duration,
    ) -> Result<Match, ExpectError> {
        let re = Regex::new(&regex::escape(text))?;
        self.expect_any_regex(std::slice::from_ref(&re), timeout)
            .await
    }

    /// Waits until one of `patterns` matches; the earliest match in the stream wins (the
    /// first pattern on a tie), as in pexpect. [`Match::index`] says which.
    pub async fn expect_any(
        &mut self,
        patterns: &[&str],
        timeout: Duration,
    ) -> Result<Match, ExpectError> {
        let res = patterns
            .iter()
            .map(|p| Regex::new(p))
            .collect::<Result<Vec<_>, _>>()?;
        self.expect_any_regex(&res, timeout).await
    }

    /// [`Console::expect_any`] with compiled regexes.
    pub async fn expect_any_regex(
        &mut self,
        res: &[Regex],
        timeout: Duration,
    ) -> Result<Match, ExpectError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.search(res) {
                return Ok(m);
            }
            if self.eof {
                return Err(ExpectError::Eof {
                    pattern: describe(res),
                    seen: self.buf.clone(),
                });
            }
            let mut chunk = [0u8; 4096];
            // Reads are cancel-safe: a timed-out read consumed nothing.
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Err(_) => {
                    return Err(ExpectError::Timeout {
                        pattern: describe(res),
                        timeout,
                        seen: self.buf.clone(),
                    });
                }
                Ok(Ok(0)) => self.eof = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    fn search(&mut self, res: &[Regex]) -> Option<Match> {
        let mut best: Option<(usize, regex::bytes::Captures<'_>)> = None;
        for (i, re) in res.iter().enumerate() {
            if let Some(c) = re.captures(&self.buf) {
                let start = c.get(0).map_or(0, |m| m.start());
                let better = best
                    .as_ref()
                    .is_none_or(|(_, b)| start < b.get(0).map_or(0, |m| m.start()));
                if better {
                    best = Some((i, c));
                }
            }
        }
        let (index, caps) = best?;
        let whole = caps.get(0)?;
        let (start, end) = (whole.start(), whole.end());
        let groups = caps
            .iter()
            .map(|g| g.map(|g| g.as_bytes().to_vec()))
            .collect();
        let m = Match {
            index,
            before: self.buf[..start].to_vec(),
            matched: self.buf[start..end].to_vec(),
            groups,
        };
        self.buf.drain(..end);
        Some(m)
    }

    /// Received bytes not consumed by a match yet.
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// Takes (and forgets) the received bytes not consumed by a match yet.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Whether the stream has ended (seen by an expect).
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// Ends our side of the stream (the device keeps what it got).
    pub async fn shutdown(&mut self) -> Result<(), ExpectError> {
        self.io.shutdown().await?;
        Ok(())
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The underlying stream; unconsumed bytes are dropped.
    pub fn into_inner(self) -> S {
        self.io
    }
}

fn describe(res: &[Regex]) -> String {
    let list: Vec<String> = res.iter().map(|r| format!("/{}/", r.as_str())).collect();
    list.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn matches_keep_the_rest_for_the_next_expect() {
        let (a, mut dev) = duplex(1024);
        let mut c = Console::new(a);
        dev.write_all(b"U-Boot 2024.01\r\nHit any key: 3\r\n=> ")
            .await
            .unwrap();
        let m = c.expect(r"U-Boot (\d+)\.(\d+)", T).await.unwrap();
        assert_eq!(m.before, b"");
        assert_eq!(m.matched_str(), "U-Boot 2024.01");
        assert_eq!(m.group_str(1).as_deref(), Some("2024"));
        assert_eq!(m.group_str(2).as_deref(), Some("01"));
        let m = c.expect_exact("=> ", T).await.unwrap();
        assert_eq!(m.before_str(), "\r\nHit any key: 3\r\n");
        assert!(c.buffer().is_empty());
        c.send_line("boot").await.unwrap();
        let mut got = [0u8; 5];
        dev.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"boot\n");
    }

    #[tokio::test]
    async fn a_pattern_split_across_reads_matches() {
        let (a, mut dev) = duplex(1024);
        let mut c = Console::new(a);
        let feeder = tokio::spawn(async move {
            for part in [&b"log"[..], b"in", b": "] {
                dev.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            dev
        });
        let m = c.expect_exact("login: ", T).await.unwrap();
        assert_eq!(m.matched, b"login: ");
        drop(feeder.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_returns_what_was_seen_and_keeps_it() {
        let (a, mut dev) = duplex(1024);
        let mut c = Console::new(a);
        dev.write_all(b"booting\xff...").await.unwrap();
        let err = c
            .expect("login:", Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(err, ExpectError::Timeout { .. }), "{err}");
        assert_eq!(err.seen().unwrap(), b"booting\xff...");
        assert!(
            err.to_string().contains(r#"seen: "booting\xff...""#),
            "{err}"
        );
        // Nothing was consumed: a later expect still sees it.
        dev.write_all(b"\nlogin: ").await.unwrap();
        let m = c.expect("login:", T).await.unwrap();
        assert_eq!(m.before, b"booting\xff...\n");
    }

    #[tokio::test]
    async fn earliest_match_wins_and_eof_is_reported() {
        let (a, mut dev) = duplex(1024);
        let mut c = Console::new(a);
        dev.write_all(b"error: x\nok\n").await.unwrap();
        drop(dev);
        let m = c.expect_any(&["ok", "error: (.*)"], T).await.unwrap();
        assert_eq!(m.index, 1);
        assert_eq!(m.group_str(1).as_deref(), Some("x"));
        let m = c.expect_any(&["ok", "error"], T).await.unwrap();
        assert_eq!(m.index, 0);
        let err = c.expect("prompt", T).await.unwrap_err();
        assert!(matches!(err, ExpectError::Eof { .. }), "{err}");
        assert_eq!(err.seen().unwrap(), b"\n");
        assert!(c.is_eof());
        assert!(matches!(
            c.expect("(", T).await.unwrap_err(),
            ExpectError::Pattern(_)
        ));
    }
}
