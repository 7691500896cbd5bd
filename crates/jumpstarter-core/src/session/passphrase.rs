//! The passphrase check of direct-mode TCP listeners, with a price on guessing.
//!
//! [`PassphraseLayer`] rejects every call without the right `x-jumpstarter-passphrase`
//! metadata with UNAUTHENTICATED `invalid or missing passphrase` (upstream's status and text;
//! the comparison takes the same time wherever the values differ). A session can be served on
//! several listeners with different options: the exporter's hook socket skips the check so
//! hooks can use `j` (upstream guards it too, bug B6).
//!
//! Failures are counted per peer address (IPv6 per /64): the first `passphrase_failures` are
//! free, then each one makes that address wait, twice as long each time up to
//! `passphrase_max_backoff`. While it waits, its calls get RESOURCE_EXHAUSTED saying when to
//! retry, without the passphrase even being compared. The log gets one warning when a burst of
//! failures starts and one summary when it ends (no failure for `passphrase_max_backoff` after
//! the last wait, or the right passphrase).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::Limits;

/// Peers tracked at once; past it new addresses share one record.
const MAX_TRACKED_PEERS: usize = 4096;

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// A tower layer checking the passphrase (or nothing, when it has none).
#[derive(Debug, Clone)]
pub struct PassphraseLayer {
    passphrase: Option<Arc<str>>,
    guesses: Arc<Guesses>,
}

impl Default for PassphraseLayer {
    fn default() -> Self {
        PassphraseLayer::new(None)
    }
}

impl PassphraseLayer {
    /// A check of `passphrase` with the process's limits ([`crate::limits::global`]).
    pub fn new(passphrase: Option<&str>) -> Self {
        Self::with_limits(passphrase, crate::limits::global())
    }

    /// A check of `passphrase` with the back-off of `limits`.
    pub fn with_limits(passphrase: Option<&str>, limits: &Limits) -> Self {
        PassphraseLayer {
            passphrase: passphrase.map(Arc::from),
            guesses: Arc::new(Guesses {
                free: limits.passphrase_failures,
                max_backoff: limits.passphrase_max_backoff,
                peers: Mutex::new(HashMap::new()),
                sweeping: Mutex::new(false),
            }),
        }
    }
}

impl<S> tower::Layer<S> for PassphraseLayer {
    type Service = PassphraseGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PassphraseGuard {
            inner,
            passphrase: self.passphrase.clone(),
            guesses: self.guesses.clone(),
        }
    }
}

/// See [`PassphraseLayer`].
#[derive(Debug, Clone)]
pub struct PassphraseGuard<S> {
    inner: S,
    passphrase: Option<Arc<str>>,
    guesses: Arc<Guesses>,
}

impl<S, B, R> tower::Service<http::Request<B>> for PassphraseGuard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        futures::future::Ready<Result<Self::Response, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(expected) = &self.passphrase {
            let peer = req
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|i| i.remote_addr());
            let refuse = |status: tonic::Status| {
                futures::future::Either::Right(futures::future::ready(Ok(status.into_http::<R>())))
            };
            if let Some(wait) = self.guesses.waiting(peer) {
                return refuse(tonic::Status::resource_exhausted(format!(
                    "too many wrong passphrases from {}: retry in {} s ({} free failures, then \
                     back-off up to {} s; {}, {})",
                    key_shown(peer),
                    wait.as_secs_f64().ceil().max(1.0),
                    self.guesses.free,
                    self.guesses.max_backoff.as_secs_f64(),
                    var("passphrase_failures"),
                    var("passphrase_max_backoff"),
                )));
            }
            let given = req
                .headers()
                .get(jumpstarter_protocol::metadata::PASSPHRASE)
                .map(|v| v.as_bytes());
            if !given.is_some_and(|g| constant_time_eq(g, expected.as_bytes())) {
                self.guesses.failed(peer, req.uri().path());
                return refuse(tonic::Status::unauthenticated(
                    "invalid or missing passphrase",
                ));
            }
            self.guesses.succeeded(peer);
        }
        futures::future::Either::Left(self.inner.call(req))
    }
}

fn var(field: &str) -> &'static str {
    Limits::name(field).map_or("", |n| n.var)
}

/// Which record a peer counts against: its IP address (IPv6: its /64), or the shared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    Shared,
}

fn key_of(peer: Option<SocketAddr>) -> Key {
    match peer.map(|p| p.ip().to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            Key::Ip(IpAddr::V6(o.into()))
        }
        Some(ip) => Key::Ip(ip),
        None => Key::Shared,
    }
}

fn key_shown(peer: Option<SocketAddr>) -> String {
    match (key_of(peer), peer.map(|p| p.ip().to_canonical())) {
        (Key::Ip(IpAddr::V6(net)), Some(IpAddr::V6(_))) => format!("{net}/64"),
        (Key::Ip(ip), _) => ip.to_string(),
        (Key::Shared, _) => "an unknown peer".into(),
    }
}

/// Failed passphrases per peer.
#[derive(Debug)]
struct Guesses {
    free: u32,
    max_backoff: Duration,
    peers: Mutex<HashMap<Key, Record>>,
    /// Whether the task ending quiet bursts runs.
    sweeping: Mutex<bool>,
}

#[derive(Debug)]
struct Record {
    shown: String,
    first: Instant,
    last: Instant,
    failures: u32,
    refused: u64,
    until: Option<Instant>,
}

impl Guesses {
    fn key(&self, peers: &HashMap<Key, Record>, peer: Option<SocketAddr>) -> Key {
        let key = key_of(peer);
        if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(&key) {
            Key::Shared
        } else {
            key
        }
    }

    /// How long `peer` still has to wait, if it is backing off (the attempt is counted).
    fn waiting(&self, peer: Option<SocketAddr>) -> Option<Duration> {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let key = self.key(&peers, peer);
        let record = peers.get_mut(&key)?;
        let wait = record.until?.checked_duration_since(now)?;
        if wait.is_zero() {
            return None;
        }
        record.refused += 1;
        record.last = now;
        Some(wait)
    }

    /// The back-off after `failures` failures.
    fn backoff(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.free.max(1))?;
        let wait = Duration::from_secs(1).saturating_mul(1u32 << over.min(20));
        Some(wait.min(self.max_backoff))
    }

    fn failed(self: &Arc<Self>, peer: Option<SocketAddr>, method: &str) {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MAX_TRACKED_PEERS {
            self.end_quiet(&mut peers, now);
        }
        let key = self.key(&peers, peer);
        let record = peers.entry(key).or_insert_with(|| {
            let shown = if key == Key::Shared {
                "unknown or too many peers".to_string()
            } else {
                key_shown(peer)
            };
            tracing::warn!(
                "authentication failed: invalid or missing passphrase for method {method} from \
                 {shown} (further failures from there are summarised)"
            );
            Record {
                shown,
                first: now,
                last: now,
                failures: 0,
                refused: 0,
                until: None,
            }
        });
        record.failures = record.failures.saturating_add(1);
        record.last = now;
        if let Some(wait) = self.backoff(record.failures) {
            record.until = Some(now + wait);
        }
        drop(peers);
        self.sweep_later();
    }

    fn succeeded(&self, peer: Option<SocketAddr>) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.is_empty() {
            return;
        }
        let key = self.key(&peers, peer);
        if key != Key::Shared
            && let Some(record) = peers.remove(&key)
        {
            summarise(&record);
        }
    }

    /// Ends (and summarises) every burst quiet for `max_backoff` after its last wait.
    fn end_quiet(&self, peers: &mut HashMap<Key, Record>, now: Instant) {
        peers.retain(|_, r| {
            let quiet_from = r.until.map_or(r.last, |u| u.max(r.last));
            let over = now.saturating_duration_since(quiet_from) >= self.max_backoff;
            if over {
                summarise(r);
            }
            !over
        });
    }

    /// Starts the task that ends quiet bursts, unless it runs.
    fn sweep_later(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut sweeping = self.sweeping.lock().unwrap_or_else(|e| e.into_inner());
            if *sweeping {
                return;
            }
            *sweeping = true;
        }
        let weak: Weak<Guesses> = Arc::downgrade(self);
        let every =
            (self.max_backoff / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(guesses) = weak.upgrade() else {
                    return;
                };
                let mut peers = guesses.peers.lock().unwrap_or_else(|e| e.into_inner());
                guesses.end_quiet(&mut peers, Instant::now());
                if peers.is_empty() {
                    *guesses.sweeping.lock().unwrap_or_else(|e| e.into_inner()) = false;
                    return;
                }
            }
        });
    }
}

fn summarise(r: &Record) {
    if r.failures > 1 || r.refused > 0 {
        tracing::warn!(
            "{} failed passphrase attempts from {} in {:.0} s ({} more refused while backing off)",
            r.failures,
            r.shown,
            (r.last - r.first).as_secs_f64(),
            r.refused
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let l = PassphraseLayer::with_limits(Some("x"), &Limits::default());
        let g = &l.guesses;
        assert_eq!(g.backoff(4), None);
        assert_eq!(g.backoff(5), Some(Duration::from_secs(1)));
        assert_eq!(g.backoff(6), Some(Duration::from_secs(2)));
        assert_eq!(g.backoff(9), Some(Duration::from_secs(16)));
        assert_eq!(g.backoff(10), Some(Duration::from_secs(30)));
        assert_eq!(g.backoff(u32::MAX), Some(Duration::from_secs(30)));
    }

    #[test]
    fn peers_are_keyed_by_address() {
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:2000".parse().unwrap();
        assert_eq!(key_of(Some(a)), key_of(Some(b)));
        let v6a: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let v6b: SocketAddr = "[2001:db8::ffff:2]:2".parse().unwrap();
        assert_eq!(key_of(Some(v6a)), key_of(Some(v6b)));
        assert_eq!(key_shown(Some(v6a)), "2001:db8::/64");
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5".parse().unwrap();
        assert_eq!(key_of(Some(mapped)), key_of(Some(a)));
        assert_eq!(key_of(None), Key::Shared);
    }
}
