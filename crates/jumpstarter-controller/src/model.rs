//! The stored objects (clients, exporters, leases) and their conditions. Times are whole unix
//! seconds like Kubernetes' `metav1.Time`; durations are exact nanoseconds.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::selector::LabelSelector;

/// Now, in whole unix seconds.
pub fn now_secs() -> i64 {
    now_nanos() / 1_000_000_000
}

/// Now, in unix nanoseconds.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A Kubernetes-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition: i64,
    pub observed_generation: i64,
}

/// Sets a condition the way `meta.SetStatusCondition` does: a new type is appended, an
/// existing one is updated in place, the transition time changes only when the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: i64,
    now: i64,
) {
    let status = if status { "True" } else { "False" };
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.status = status.into();
            c.last_transition = now;
        }
        c.reason = reason.into();
        c.message = message.into();
        c.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition: now,
            observed_generation: generation,
        });
    }
}

pub fn condition_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// A client object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub username: Option<String>,
    pub token: String,
    /// Bumped by every token rotation; only tokens of the current generation authenticate
    /// (records and tokens from before rotation revoked old tokens are generation 0).
    #[serde(default)]
    pub token_generation: u64,
    pub created: i64,
}

/// One driver instance of an exporter's last registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub uuid: String,
    #[serde(default)]
    pub parent_uuid: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An exporter object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExporterRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub username: Option<String>,
    pub enabled: bool,
    /// `None` until registered (and after Unregister).
    #[serde(default)]
    pub devices: Option<Vec<Device>>,
    /// The CRD spelling: `Available`, `LeaseReady`, ... or empty.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_message: String,
    #[serde(default)]
    pub last_seen: Option<i64>,
    pub token: String,
    /// Bumped by every token rotation; only tokens of the current generation authenticate
    /// (records and tokens from before rotation revoked old tokens are generation 0).
    #[serde(default)]
    pub token_generation: u64,
    pub created: i64,
}

/// How long without a heartbeat before an exporter counts as offline (Go: one minute).
pub const OFFLINE_AFTER_SECS: i64 = 60;

impl ExporterRecord {
    pub fn registered(&self) -> bool {
        self.devices.as_ref().is_some_and(|d| !d.is_empty())
    }

    /// Online: seen, and neither reported Offline nor marked Offline by the scheduler
    /// (which does that once the last heartbeat is older than the offline threshold).
    pub fn online(&self) -> bool {
        self.last_seen.is_some() && self.status != "Offline"
    }
}

/// A lease: the client's intent (spec) and the scheduler's outcome (status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub client: String,
    pub selector: LabelSelector,
    #[serde(default)]
    pub exporter_name: Option<String>,
    #[serde(default)]
    pub duration_ns: Option<i64>,
    #[serde(default)]
    pub begin_time: Option<i64>,
    #[serde(default)]
    pub end_time: Option<i64>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_disabled: bool,
    #[serde(default)]
    pub release: bool,
    /// Created through ClientService (those leases carry selector/tag labels).
    #[serde(default)]
    pub labelled: bool,
    #[serde(default)]
    pub st_exporter: Option<String>,
    #[serde(default)]
    pub st_begin: Option<i64>,
    #[serde(default)]
    pub st_end: Option<i64>,
    #[serde(default)]
    pub ended: bool,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default = "one")]
    pub generation: i64,
    pub created: i64,
}

fn one() -> i64 {
    1
}

/// Label prefix of lease tags.
pub const TAG_PREFIX: &str = "metadata.jumpstarter.dev/";
/// Label of ended leases.
pub const ENDED_LABEL: &str = "jumpstarter.dev/lease-ended";

impl LeaseRecord {
    /// The lease's own labels, which `ListLeases.filter` sees.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if self.labelled {
            for (k, v) in &self.selector.match_labels {
                if !k.starts_with(TAG_PREFIX) {
                    out.insert(k.clone(), v.clone());
                }
            }
            for (k, v) in &self.tags {
                out.insert(format!("{TAG_PREFIX}{k}"), v.clone());
            }
        }
        if self.ended {
            out.insert(ENDED_LABEL.into(), "true".into());
        }
        out
    }

    /// When the lease expires (4.6): the requested end, else requested begin + duration,
    /// else actual begin + duration. `None` before it began (and without requested times).
    pub fn expiration_nanos(&self) -> Option<i64> {
        const S: i64 = 1_000_000_000;
        if let Some(e) = self.end_time {
            return Some(e.saturating_mul(S));
        }
        let d = self.duration_ns.unwrap_or(0);
        if let Some(b) = self.begin_time {
            return Some(b.saturating_mul(S).saturating_add(d));
        }
        self.st_begin.map(|b| b.saturating_mul(S).saturating_add(d))
    }
}

/// Why requested lease times do not fit together (the Go controller's texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimesError {
    #[error("duration conflicts with begin_time and end_time")]
    Conflict,
    #[error("duration is required (must specify Duration, or both BeginTime and EndTime)")]
    Required,
    /// The duration in Go's `time.Duration` form.
    #[error("duration must be positive, got {0}")]
    NotPositive(String),
}

/// Resolves requested begin/end/duration the way CreateLease and UpdateLease do (4.6).
/// Times in whole seconds, duration in nanoseconds.
pub fn reconcile_times(
    begin: Option<i64>,
    end: Option<i64>,
    duration: Option<i64>,
) -> Result<(Option<i64>, Option<i64>, i64), TimesError> {
    const S: i64 = 1_000_000_000;
    let duration = duration.filter(|d| *d != 0);
    let (begin, d) = match (begin, end, duration) {
        (b, None, Some(d)) => (b, d),
        (Some(b), Some(e), None) => (Some(b), (e - b).saturating_mul(S)),
        (None, Some(e), Some(d)) => (Some(e - d.div_euclid(S)), d),
        (Some(b), Some(e), Some(d)) => {
            if (e - b).saturating_mul(S) != d {
                return Err(TimesError::Conflict);
            }
            (Some(b), d)
        }
        (_, _, None) => {
            return Err(TimesError::Required);
        }
    };
    if d <= 0 {
        return Err(TimesError::NotPositive(go_duration(d)));
    }
    Ok((begin, end, d))
}

/// A duration in Go's `time.Duration.String()` form (`1h0m0s`, `1.5s`, `0s`).
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", frac(u, div));
    }
    let h = u / 3_600_000_000_000;
    let m = (u / 60_000_000_000) % 60;
    let s = u % 60_000_000_000;
    let secs = frac(s, 1_000_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rest = v % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn time_reconciliation_follows_the_table() {
        assert_eq!(
            reconcile_times(None, None, Some(60 * S)),
            Ok((None, None, 60 * S))
        );
        assert_eq!(
            reconcile_times(Some(100), Some(160), None),
            Ok((Some(100), Some(160), 60 * S))
        );
        assert_eq!(
            reconcile_times(None, Some(160), Some(60 * S)),
            Ok((Some(100), Some(160), 60 * S))
        );
        assert_eq!(
            reconcile_times(Some(100), Some(170), Some(60 * S))
                .unwrap_err()
                .to_string(),
            "duration conflicts with begin_time and end_time"
        );
        assert!(
            reconcile_times(None, Some(1), None)
                .unwrap_err()
                .to_string()
                .starts_with("duration is required")
        );
        assert_eq!(
            reconcile_times(Some(100), Some(90), None)
                .unwrap_err()
                .to_string(),
            "duration must be positive, got -10s"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(30 * 60 * S), "30m0s");
        assert_eq!(go_duration(3600 * S), "1h0m0s");
        assert_eq!(go_duration(1500 * 1_000_000), "1.5s");
        assert_eq!(go_duration(-10 * S), "-10s");
    }

    #[test]
    fn conditions_append_and_update_in_place() {
        let mut c = Vec::new();
        set_condition(&mut c, "Pending", true, "Offline", "m", 1, 10);
        set_condition(&mut c, "Ready", true, "Ready", "r", 1, 11);
        set_condition(&mut c, "Ready", true, "Ready", "r2", 1, 12);
        assert_eq!(c[1].last_transition, 11);
        set_condition(&mut c, "Ready", false, "Expired", "x", 1, 13);
        assert_eq!(
            c.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Pending", "Ready"]
        );
        assert_eq!(c[1].last_transition, 13);
        assert_eq!(c[1].reason, "Expired");
    }
}
