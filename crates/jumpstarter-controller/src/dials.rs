//! The router streams of each lease: how many Dials are pending (minted, not paired yet) and
//! the signal that ends every stream of a lease when the lease ends.
//!
//! A Dial reserves a pending slot ([`Dials::reserve`], at most `max_pending_dials` per lease);
//! the slot is freed when its two streams pair, when the stream that came first gives up
//! waiting (the router's pairing timeout), or at the latest when its window has passed (nobody
//! came at all). The scheduler calls [`Dials::retain`] after every pass with the leases still
//! active: the others' streams are cancelled (waiting or relaying) and their entries dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::scheduler::lock;

/// (namespace, lease name).
pub type Key = (String, String);

#[derive(Default)]
struct LeaseDials {
    /// Cancelled when the lease ends.
    ended: CancellationToken,
    /// Stream id -> when its slot is given up even if nobody came.
    pending: HashMap<String, Instant>,
}

/// Router streams per lease (see the module docs).
#[derive(Default)]
pub struct Dials {
    leases: Mutex<HashMap<Key, LeaseDials>>,
}

impl Dials {
    /// Counts a new Dial of `lease` (stream id `stream`) as pending for at most `window`.
    /// Fails with the number pending when `max` are pending already.
    pub fn reserve(
        &self,
        lease: &Key,
        stream: &str,
        max: usize,
        window: Duration,
    ) -> Result<(), usize> {
        let mut map = lock(&self.leases);
        let entry = map.entry(lease.clone()).or_default();
        let now = Instant::now();
        entry.pending.retain(|_, until| *until > now);
        if entry.pending.len() >= max {
            return Err(entry.pending.len());
        }
        entry.pending.insert(stream.to_string(), now + window);
        Ok(())
    }

    /// The Dial of `stream` is no longer pending (paired, or given up).
    pub fn settle(&self, lease: &Key, stream: &str) {
        if let Some(entry) = lock(&self.leases).get_mut(lease) {
            entry.pending.remove(stream);
        }
    }

    /// The signal that `lease` has ended, for one of its streams; `None` when the lease is not
    /// known (it ended, or was never dialed on this controller).
    pub fn lease_end(&self, lease: &Key) -> Option<CancellationToken> {
        lock(&self.leases)
            .get(lease)
            .map(|entry| entry.ended.child_token())
    }

    /// Dials of `lease` pending now.
    pub fn pending(&self, lease: &Key) -> usize {
        let now = Instant::now();
        lock(&self.leases)
            .get(lease)
            .map_or(0, |e| e.pending.values().filter(|t| **t > now).count())
    }

    /// Leases with an entry (for tests and diagnostics).
    pub fn leases(&self) -> usize {
        lock(&self.leases).len()
    }

    /// Ends the streams of every lease for which `active` is false and forgets it.
    pub fn retain(&self, active: impl Fn(&Key) -> bool) {
        let mut map = lock(&self.leases);
        map.retain(|key, entry| {
            let keep = active(key);
            if !keep {
                tracing::debug!(lease = %key.1, "lease ended: ending its router streams");
                entry.ended.cancel();
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        ("ns".into(), "l".into())
    }

    #[test]
    fn pending_dials_are_bounded_and_released() {
        let d = Dials::default();
        let w = Duration::from_secs(60);
        d.reserve(&key(), "a", 2, w).unwrap();
        d.reserve(&key(), "b", 2, w).unwrap();
        assert_eq!(d.reserve(&key(), "c", 2, w), Err(2));
        d.settle(&key(), "a");
        d.reserve(&key(), "c", 2, w).unwrap();
        assert_eq!(d.pending(&key()), 2);
        // An expired window frees the slot by itself.
        d.reserve(&("ns".into(), "m".into()), "x", 1, Duration::ZERO)
            .unwrap();
        d.reserve(&("ns".into(), "m".into()), "y", 1, w).unwrap();
    }

    #[test]
    fn lease_end_cancels_its_streams() {
        let d = Dials::default();
        assert!(d.lease_end(&key()).is_none());
        d.reserve(&key(), "a", 4, Duration::from_secs(60)).unwrap();
        let end = d.lease_end(&key()).unwrap();
        d.retain(|_| true);
        assert!(!end.is_cancelled());
        d.retain(|_| false);
        assert!(end.is_cancelled());
        assert_eq!(d.leases(), 0);
        assert!(d.lease_end(&key()).is_none());
    }
}
