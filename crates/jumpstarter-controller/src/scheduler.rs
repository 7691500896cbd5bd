//! Shared state and the scheduler.
//!
//! The scheduler is one task. Each pass runs controller.md §6.2 for every lease that has not
//! ended, inside one `BEGIN IMMEDIATE` transaction: first the assigned leases (release,
//! expiry), then the waiting ones in creation order (FIFO), so the oldest waiting lease that
//! fits a free exporter gets it. Passes are woken by events (lease created/updated/released,
//! exporter status, registration, connection) and by the earliest timer (scheduled begin,
//! expiry, offline deadline), with a slow sweep as a safety net and to pick up changes made
//! by the admin CLI. After each pass every exporter's binding (what its Status stream
//! reports) is recomputed and pushed to the streams.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::auth::Keys;
use crate::dials::Dials;
use crate::model::{ExporterRecord, LeaseRecord, now_nanos, set_condition};
use crate::store::{Store, StoreError, write_exporter, write_lease};
use jumpstarter_core::limits::Limits;
use jumpstarter_protocol::v1::ListenResponse;

/// Status stream heartbeat (Go: 10 s).
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// How often the scheduler runs even without events.
pub const SWEEP: Duration = Duration::from_secs(2);

/// What an exporter's Status stream reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Binding {
    pub leased: bool,
    pub lease_name: Option<String>,
    pub client_name: Option<String>,
}

impl Binding {
    pub fn of(lease: Option<&LeaseRecord>) -> Binding {
        match lease {
            Some(l) => Binding {
                leased: true,
                lease_name: Some(l.name.clone()),
                client_name: Some(l.client.clone()),
            },
            None => Binding::default(),
        }
    }
}

/// The Listen queue of one lease.
pub struct ListenQueue {
    pub generation: u64,
    pub tx: mpsc::Sender<ListenResponse>,
}

pub type Key = (String, String);

/// State shared by the services, the router and the scheduler.
pub struct Shared {
    pub store: Store,
    pub keys: Keys,
    /// Where clients and exporters reach the router.
    pub router_endpoint: String,
    pub token_lifetime: Duration,
    /// Silence after which an exporter is marked offline.
    pub offline_after: Duration,
    /// Status stream heartbeat (at most a third of `offline_after`).
    pub heartbeat: Duration,
    wake: Notify,
    bindings: Mutex<HashMap<Key, watch::Sender<Binding>>>,
    /// Bumped whenever an exporter's status value may have changed (Dial waits on it).
    pub status_version: watch::Sender<u64>,
    pub listeners: Mutex<HashMap<Key, ListenQueue>>,
    pub listen_generation: std::sync::atomic::AtomicU64,
    /// Router streams per lease: pending Dials and the end of every stream with its lease.
    pub dials: Dials,
    /// The resource bounds in force.
    pub limits: Limits,
    /// Lifetime of tokens issued by RotateToken.
    pub rotated_token_lifetime: Duration,
}

impl Shared {
    pub fn new(
        store: Store,
        keys: Keys,
        router_endpoint: String,
        token_lifetime: Duration,
        offline_after: Duration,
    ) -> Self {
        Shared {
            store,
            keys,
            router_endpoint,
            token_lifetime,
            offline_after,
            heartbeat: (offline_after / 3).clamp(Duration::from_millis(200), HEARTBEAT),
            wake: Notify::new(),
            bindings: Mutex::new(HashMap::new()),
            status_version: watch::Sender::new(0),
            listeners: Mutex::new(HashMap::new()),
            listen_generation: Default::default(),
            dials: Dials::default(),
            limits: jumpstarter_core::limits::global().clone(),
            rotated_token_lifetime: token_lifetime,
        }
    }

    /// Asks the scheduler for a pass.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn status_changed(&self) {
        self.status_version.send_modify(|v| *v += 1);
        self.wake();
    }

    /// The binding cell of an exporter, created from the store when first asked for.
    pub async fn binding(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<watch::Receiver<Binding>, StoreError> {
        let key = (ns.to_string(), name.to_string());
        if let Some(tx) = lock(&self.bindings).get(&key) {
            return Ok(tx.subscribe());
        }
        let current = Binding::of(self.store.active_lease_of(ns, name).await?.as_ref());
        let mut map = lock(&self.bindings);
        let tx = map
            .entry(key)
            .or_insert_with(|| watch::Sender::new(current));
        Ok(tx.subscribe())
    }

    /// Re-reads one exporter's binding from the store (the Status stream's 10 s refresh).
    pub async fn refresh_binding(&self, ns: &str, name: &str) -> Result<(), StoreError> {
        let current = Binding::of(self.store.active_lease_of(ns, name).await?.as_ref());
        if let Some(tx) = lock(&self.bindings).get(&(ns.to_string(), name.to_string())) {
            tx.send_if_modified(|b| {
                if *b != current {
                    *b = current;
                    true
                } else {
                    false
                }
            });
        }
        Ok(())
    }

    fn publish_bindings(&self, exporters: &[ExporterRecord], leases: &[LeaseRecord]) {
        let mut active: HashMap<Key, &LeaseRecord> = HashMap::new();
        for l in leases.iter().filter(|l| !l.ended) {
            if let Some(e) = &l.st_exporter {
                active.insert((l.namespace.clone(), e.clone()), l);
            }
        }
        let mut map = lock(&self.bindings);
        // Drop cells nobody listens to any more.
        map.retain(|_, tx| tx.receiver_count() > 0);
        for e in exporters {
            let key = (e.namespace.clone(), e.name.clone());
            if let Some(tx) = map.get(&key) {
                let want = Binding::of(active.get(&key).copied());
                tx.send_if_modified(|b| {
                    if *b != want {
                        *b = want;
                        true
                    } else {
                        false
                    }
                });
            }
        }
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the scheduler until `stop` fires.
pub async fn run(shared: Arc<Shared>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    loop {
        let next = match pass(&shared).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("scheduling pass failed: {e}");
                Some(now_nanos() + 1_000_000_000)
            }
        };
        let mut sleep = SWEEP;
        if let Some(at) = next {
            let d = Duration::from_nanos(u64::try_from(at - now_nanos()).unwrap_or(0));
            sleep = sleep.min(d);
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

fn earliest(next: &mut Option<i64>, at: i64) {
    *next = Some(next.map_or(at, |n| n.min(at)));
}

const NS: i64 = 1_000_000_000;

/// One scheduling pass. Returns the instant (unix ns) of the next timer.
pub async fn pass(shared: &Shared) -> Result<Option<i64>, StoreError> {
    let mut tx = shared.store.begin().await?;
    let (mut exporters, mut leases) = Store::load_for_scheduling(&mut tx.conn).await?;
    let now_ns = now_nanos();
    let now = now_ns / NS;
    let mut next = None;
    let mut status_changed = false;

    // Exporters silent for more than a minute are offline.
    for e in exporters.iter_mut() {
        let Some(seen) = e.last_seen else { continue };
        if e.status == "Offline" {
            continue;
        }
        let after = i64::try_from(shared.offline_after.as_secs()).unwrap_or(i64::MAX);
        if now - seen > after {
            e.status = "Offline".into();
            e.status_message = "Connection lost - last seen more than 1 minute ago".into();
            write_exporter(&mut tx.conn, e).await?;
            status_changed = true;
        } else {
            earliest(&mut next, (seen + after + 1) * NS);
        }
    }

    let mut held: HashSet<Key> = leases
        .iter()
        .filter_map(|l| {
            l.st_exporter
                .as_ref()
                .map(|e| (l.namespace.clone(), e.clone()))
        })
        .collect();

    // Assigned leases first: a lease that ends frees its exporter for the waiting ones.
    for assigned in [true, false] {
        for l in leases.iter_mut() {
            if l.st_exporter.is_some() != assigned || l.ended {
                continue;
            }
            let before = l.clone();
            if !assigned {
                acquire(l, &exporters, &mut held, now, &mut next);
            }
            if !l.ended && l.st_exporter.is_some() {
                end_if_due(l, now, now_ns, &mut next);
                if l.ended
                    && let Some(e) = &l.st_exporter
                {
                    held.remove(&(l.namespace.clone(), e.clone()));
                }
            }
            if *l != before {
                write_lease(&mut tx.conn, l).await?;
            }
        }
    }
    tx.commit().await?;
    leases.retain(|l| !l.ended);
    shared.publish_bindings(&exporters, &leases);
    // Router streams end with their lease (whichever way it ended: released, expired, or
    // removed by an administrator).
    let active: HashSet<Key> = leases
        .iter()
        .map(|l| (l.namespace.clone(), l.name.clone()))
        .collect();
    shared.dials.retain(|k| active.contains(k));
    if status_changed {
        shared.status_version.send_modify(|v| *v += 1);
    }
    Ok(next)
}

fn end(l: &mut LeaseRecord, now: i64) {
    l.ended = true;
    l.st_end = Some(now);
}

/// Release and expiry of an assigned lease (§6.2 C).
fn end_if_due(l: &mut LeaseRecord, now: i64, now_ns: i64, next: &mut Option<i64>) {
    let generation = l.generation;
    if l.release {
        set_condition(
            &mut l.conditions,
            "Ready",
            false,
            "Released",
            "The lease was marked for release",
            generation,
            now,
        );
        end(l, now);
        return;
    }
    if let Some(exp) = l.expiration_nanos() {
        if exp <= now_ns {
            set_condition(
                &mut l.conditions,
                "Ready",
                false,
                "Expired",
                "The lease has expired",
                generation,
                now,
            );
            end(l, now);
        } else {
            earliest(next, exp);
        }
    }
}

fn unsatisfiable(l: &mut LeaseRecord, reason: &str, message: String, now: i64) {
    let g = l.generation;
    set_condition(
        &mut l.conditions,
        "Unsatisfiable",
        true,
        reason,
        &message,
        g,
        now,
    );
    end(l, now);
}

fn pending(l: &mut LeaseRecord, reason: &str, message: String, now: i64) {
    let g = l.generation;
    set_condition(&mut l.conditions, "Pending", true, reason, &message, g, now);
}

/// Steps A and B of §6.2 for a lease without an exporter.
fn acquire(
    l: &mut LeaseRecord,
    exporters: &[ExporterRecord],
    held: &mut HashSet<Key>,
    now: i64,
    next: &mut Option<i64>,
) {
    let g = l.generation;
    if l.release {
        // Released before it got an exporter.
        set_condition(
            &mut l.conditions,
            "Ready",
            false,
            "Released",
            "The lease was marked for release",
            g,
            now,
        );
        end(l, now);
        return;
    }
    if let Some(b) = l.begin_time
        && b > now
    {
        earliest(next, b * NS);
        return;
    }
    if l.selector.is_empty() && l.exporter_name.is_none() {
        set_condition(
            &mut l.conditions,
            "Invalid",
            true,
            "InvalidSelector",
            "The selector for the lease is empty, a selector is required",
            g,
            now,
        );
        end(l, now);
        return;
    }
    let in_ns = exporters.iter().filter(|e| e.namespace == l.namespace);
    let candidates: Vec<&ExporterRecord> = if let Some(name) = &l.exporter_name {
        let Some(e) = exporters
            .iter()
            .find(|e| e.namespace == l.namespace && &e.name == name)
        else {
            return unsatisfiable(
                l,
                "ExporterNotFound",
                format!("Requested exporter {name} was not found"),
                now,
            );
        };
        if !l.selector.is_empty() && !l.selector.matches(&e.labels) {
            let sel = l.selector.to_string();
            let sel = crate::text::clip(&sel);
            return unsatisfiable(
                l,
                "SelectorMismatch",
                format!("Requested exporter {name} does not match selector {sel}"),
                now,
            );
        }
        if !e.enabled && !l.allow_disabled {
            return unsatisfiable(
                l,
                "ExporterDisabled",
                format!(
                    "Requested exporter {name} is disabled. To lease a disabled exporter, set \
                     spec.allowDisabled: true on the Lease, or use --allow-disabled with jmp \
                     create lease"
                ),
                now,
            );
        }
        vec![e]
    } else {
        let matched: Vec<&ExporterRecord> =
            in_ns.filter(|e| l.selector.matches(&e.labels)).collect();
        let enabled: Vec<&ExporterRecord> = matched.iter().copied().filter(|e| e.enabled).collect();
        if !matched.is_empty() && enabled.is_empty() {
            return unsatisfiable(
                l,
                "AllDisabled",
                format!(
                    "All {} exporters matching the selector are disabled",
                    matched.len()
                ),
                now,
            );
        }
        enabled
    };
    // No access policies yet: every candidate is approved (priority 0, no spot access), so
    // the only way to have none is a selector that matches no exporter. The reason stays
    // upstream's (`NoAccess`); its text ("... none of them are approved by any policy") would
    // point at policies that do not exist here.
    if candidates.is_empty() {
        let sel = l.selector.to_string();
        let message = format!(
            "No exporter in namespace {} matches the selector {}",
            l.namespace,
            crate::text::clip(&sel)
        );
        return unsatisfiable(l, "NoAccess", message, now);
    }
    let online: Vec<&ExporterRecord> = candidates
        .iter()
        .copied()
        .filter(|e| e.registered() && e.online())
        .collect();
    if online.is_empty() {
        return pending(
            l,
            "Offline",
            format!(
                "While there are {} available exporters (i.e. ), none of them are online",
                candidates.len()
            ),
            now,
        );
    }
    let free: Vec<&ExporterRecord> = online
        .iter()
        .copied()
        .filter(|e| !held.contains(&(e.namespace.clone(), e.name.clone())))
        .collect();
    if free.is_empty() {
        return pending(
            l,
            "NotAvailable",
            format!(
                "There are {} approved exporters, (i.e. ) but all of them are already leased",
                online.len()
            ),
            now,
        );
    }
    let ready = free
        .iter()
        .copied()
        .filter(|e| matches!(e.status.as_str(), "Available" | "Unspecified" | ""))
        .min_by(|a, b| a.name.cmp(&b.name));
    let Some(e) = ready else {
        return pending(
            l,
            "NotReady",
            format!(
                "There are {} online exporters, but none are ready (still cleaning up previous \
                 lease)",
                free.len()
            ),
            now,
        );
    };
    held.insert((e.namespace.clone(), e.name.clone()));
    l.st_exporter = Some(e.name.clone());
    l.st_begin = Some(now);
    set_condition(
        &mut l.conditions,
        "Ready",
        true,
        "Ready",
        "An exporter has been acquired for the client",
        g,
        now,
    );
}
