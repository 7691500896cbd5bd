//! How leases and exporters are shown: tables, `-o json|yaml|name`, times and names.

use std::time::Duration;

use jumpstarter_protocol::client_v1::{Exporter, Lease};
use serde_json::{Value as Json, json};

use crate::output;

pub(super) fn last_segment(s: &str) -> String {
    s.rsplit('/').next().unwrap_or(s).to_string()
}

pub(super) fn ts(t: &Option<prost_types::Timestamp>) -> Option<jiff::Timestamp> {
    t.as_ref()
        .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
}

/// Seconds as Python's `timedelta.total_seconds()` gives them: microseconds (nanoseconds
/// rounded toward zero, as protobuf's `ToTimedelta`).
pub(super) fn secs(d: &Option<prost_types::Duration>) -> Option<f64> {
    d.as_ref().map(|d| {
        let micros = i128::from(d.seconds) * 1_000_000 + i128::from(d.nanos / 1000);
        micros as f64 / 1e6
    })
}

/// ISO 8601 in local time as pydantic prints an aware datetime (`Z` for UTC).
pub(super) fn iso(t: jiff::Timestamp) -> String {
    let z = t.to_zoned(jiff::tz::TimeZone::system());
    let mut s = z.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = z.subsec_nanosecond() / 1000;
    if micros != 0 {
        s.push_str(&format!(".{micros:06}"));
    }
    let off = z.offset().seconds();
    if off == 0 {
        s.push('Z');
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
    }
    s
}

/// A protobuf timestamp as `YYYY-MM-DD HH:MM:SS` local time.
pub fn local_time(t: &prost_types::Timestamp) -> String {
    ts(&Some(*t)).map(local).unwrap_or_default()
}

pub(super) fn local(t: jiff::Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub(super) fn condition_json(c: &jumpstarter_protocol::v1::Condition) -> Json {
    // protobuf's MessageToDict: camelCase names, int64 as strings, unset fields left out.
    let mut m = serde_json::Map::new();
    if let Some(v) = &c.r#type {
        m.insert("type".into(), json!(v));
    }
    if let Some(v) = &c.status {
        m.insert("status".into(), json!(v));
    }
    if let Some(v) = c.observed_generation {
        m.insert("observedGeneration".into(), json!(v.to_string()));
    }
    if let Some(t) = &c.last_transition_time {
        let mut tm = serde_json::Map::new();
        if let Some(s) = t.seconds {
            tm.insert("seconds".into(), json!(s.to_string()));
        }
        if let Some(n) = t.nanos {
            tm.insert("nanos".into(), json!(n));
        }
        m.insert("lastTransitionTime".into(), Json::Object(tm));
    }
    if let Some(v) = &c.reason {
        m.insert("reason".into(), json!(v));
    }
    if let Some(v) = &c.message {
        m.insert("message".into(), json!(v));
    }
    Json::Object(m)
}

pub fn lease_json(l: &Lease) -> Json {
    let (namespace, name) = split_name(&l.name);
    json!({
        "namespace": namespace,
        "name": name,
        "selector": l.selector,
        "exporter_name": l.exporter_name.as_deref().filter(|s| !s.is_empty()),
        "tags": l.tags.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "duration": secs(&l.duration).unwrap_or(0.0),
        "effective_duration": secs(&l.effective_duration),
        "begin_time": ts(&l.begin_time).map(iso),
        "client": l.client.as_deref().map(last_segment).unwrap_or_default(),
        "exporter": l.exporter.as_deref().map(last_segment).unwrap_or_default(),
        "conditions": l.conditions.iter().map(condition_json).collect::<Vec<_>>(),
        "effective_begin_time": ts(&l.effective_begin_time).map(iso),
        "effective_end_time": ts(&l.effective_end_time).map(iso),
        "deprecated_labels": l.deprecated_labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

pub(super) fn split_name(path: &str) -> (String, String) {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() == 4 {
        (parts[1].to_string(), parts[3].to_string())
    } else {
        (String::new(), last_segment(path))
    }
}

pub(super) fn expires_at(l: &Lease) -> Option<jiff::Timestamp> {
    if let Some(t) = ts(&l.effective_end_time) {
        return Some(t);
    }
    let d = jiff::SignedDuration::try_from(Duration::from_secs_f64(secs(&l.duration)?)).ok()?;
    ts(&l.effective_begin_time)
        .or_else(|| ts(&l.begin_time))
        .and_then(|b| b.checked_add(d).ok())
}

pub(super) fn remaining(at: Option<jiff::Timestamp>) -> String {
    let Some(at) = at else {
        return String::new();
    };
    let left = at.as_second() - jiff::Timestamp::now().as_second();
    if left <= 0 {
        return "expired".into();
    }
    let (days, hours, minutes) = (left / 86400, (left % 86400) / 3600, (left % 3600) / 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 || parts.is_empty() {
        parts.push(format!("{minutes}m"));
    }
    parts.join(" ")
}

const LEASE_COLUMNS: [&str; 7] = [
    "NAME",
    "SELECTOR",
    "EXPIRES AT",
    "REMAINING",
    "CLIENT",
    "EXPORTER",
    "TAGS",
];

pub(super) fn lease_row(l: &Lease) -> Vec<String> {
    let at = expires_at(l);
    let mut tags: Vec<String> = l.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    tags.sort();
    vec![
        split_name(&l.name).1,
        l.selector.clone(),
        at.map(local).unwrap_or_default(),
        remaining(at),
        l.client.as_deref().map(last_segment).unwrap_or_default(),
        l.exporter.as_deref().map(last_segment).unwrap_or_default(),
        tags.join(","),
    ]
}

pub(super) fn print_structured(v: &Json, yaml: bool) {
    if yaml {
        jumpstarter_core::outln!("{}", jumpstarter_config::emit::to_yaml_sorted(v));
    } else {
        jumpstarter_core::outln!("{}", output::json_indent4(v));
    }
}

pub(super) fn print_leases(leases: &[Lease], output: Option<&str>, single: bool) {
    match output {
        Some("name") => {
            for l in leases {
                jumpstarter_core::outln!("{}", split_name(&l.name).1);
            }
        }
        Some(f) => {
            let v = if single && leases.len() == 1 {
                lease_json(&leases[0])
            } else {
                json!({ "leases": leases.iter().map(lease_json).collect::<Vec<_>>() })
            };
            print_structured(&v, f == "yaml");
        }
        None => {
            let rows: Vec<Vec<String>> = leases.iter().map(lease_row).collect();
            output::table(&LEASE_COLUMNS, &rows);
        }
    }
}

pub(super) fn lease_status(l: &Lease) -> String {
    if l.effective_end_time.is_some() {
        return "Ended".into();
    }
    let Some(c) = l.conditions.last() else {
        return "Unknown".into();
    };
    match (c.r#type.as_deref(), c.status.as_deref()) {
        (Some("Ready"), Some("True")) => "In-Use".into(),
        (Some("Ready"), Some("False")) => "Waiting".into(),
        (Some("Expired"), _) => "Expired".into(),
        _ => c
            .reason
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "Unknown".into()),
    }
}

/// The deprecated `online` field: upstream 0.9.0 still shows it.
#[allow(deprecated)]
pub(super) fn online(e: &Exporter) -> bool {
    e.online
}

pub(super) fn status_name(s: i32) -> String {
    jumpstarter_protocol::v1::ExporterStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("EXPORTER_STATUS_")
                .to_string()
        })
        .unwrap_or_else(|_| "UNKNOWN".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_like_upstream() {
        let now = jiff::Timestamp::now();
        assert_eq!(remaining(None), "");
        assert_eq!(remaining(Some(now)), "expired");
        let later = now
            .checked_add(jiff::SignedDuration::from_secs(2 * 86400 + 3 * 3600 + 30))
            .unwrap();
        assert_eq!(remaining(Some(later)), "2d 3h");
    }
}
