//! Records to protocol messages and back, and resource-name parsing (controller.md §3.1,
//! §4.7).

use jumpstarter_protocol::client_v1;
use jumpstarter_protocol::v1;
use tonic::Status;

use crate::model::{Condition, ExporterRecord, LeaseRecord, now_nanos};
use crate::text::clip;

/// CRD status string -> protocol enum.
pub fn status_to_proto(s: &str) -> v1::ExporterStatus {
    use v1::ExporterStatus as S;
    match s {
        "Offline" => S::Offline,
        "Available" => S::Available,
        "BeforeLeaseHook" => S::BeforeLeaseHook,
        "LeaseReady" => S::LeaseReady,
        "AfterLeaseHook" => S::AfterLeaseHook,
        "BeforeLeaseHookFailed" => S::BeforeLeaseHookFailed,
        "AfterLeaseHookFailed" => S::AfterLeaseHookFailed,
        _ => S::Unspecified,
    }
}

/// Protocol enum -> CRD status string.
pub fn status_from_proto(s: i32) -> &'static str {
    use v1::ExporterStatus as S;
    match S::try_from(s).unwrap_or(S::Unspecified) {
        S::Offline => "Offline",
        S::Available => "Available",
        S::BeforeLeaseHook => "BeforeLeaseHook",
        S::LeaseReady => "LeaseReady",
        S::AfterLeaseHook => "AfterLeaseHook",
        S::BeforeLeaseHookFailed => "BeforeLeaseHookFailed",
        S::AfterLeaseHookFailed => "AfterLeaseHookFailed",
        S::Unspecified => "Unspecified",
    }
}

pub fn ts(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

pub fn dur(ns: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ns / 1_000_000_000,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

pub fn dur_ns(d: &prost_types::Duration) -> i64 {
    d.seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(d.nanos))
}

pub fn condition(c: &Condition) -> v1::Condition {
    v1::Condition {
        r#type: Some(c.type_.clone()),
        status: Some(c.status.clone()),
        observed_generation: Some(c.observed_generation),
        last_transition_time: Some(v1::Time {
            seconds: Some(c.last_transition),
            nanos: Some(0),
        }),
        reason: Some(c.reason.clone()),
        message: Some(c.message.clone()),
    }
}

pub fn lease(l: &LeaseRecord) -> client_v1::Lease {
    let ns = &l.namespace;
    let effective_duration = l.st_begin.map(|b| {
        let end = l.st_end.map_or(now_nanos(), |e| e * 1_000_000_000);
        dur((end - b * 1_000_000_000).max(0))
    });
    client_v1::Lease {
        name: format!("namespaces/{ns}/leases/{}", l.name),
        selector: l.selector.to_string(),
        duration: l.duration_ns.map(dur),
        effective_duration,
        begin_time: l.begin_time.map(ts),
        effective_begin_time: l.st_begin.map(ts),
        end_time: l.end_time.map(ts),
        effective_end_time: l.st_end.map(ts),
        client: Some(format!("namespaces/{ns}/clients/{}", l.client)),
        exporter: l
            .st_exporter
            .as_ref()
            .map(|e| format!("namespaces/{ns}/exporters/{e}")),
        conditions: l.conditions.iter().map(condition).collect(),
        exporter_name: l.exporter_name.clone(),
        tags: l.tags.clone().into_iter().collect(),
        allow_disabled: l.allow_disabled,
        deprecated_labels: Default::default(),
    }
}

pub fn exporter(e: &ExporterRecord) -> client_v1::Exporter {
    client_v1::Exporter {
        name: format!("namespaces/{}/exporters/{}", e.namespace, e.name),
        labels: e.labels.clone().into_iter().collect(),
        #[allow(deprecated)]
        online: e.online(),
        status: status_to_proto(&e.status) as i32,
        status_message: e.status_message.clone(),
        enabled: Some(e.enabled),
        deprecated_labels: Default::default(),
    }
}

/// `namespaces/{ns}` -> ns.
pub fn parse_parent(s: &str) -> Result<String, Status> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() != 2 {
        return Err(Status::invalid_argument(format!(
            "invalid number of segments in identifier \"{}\", expecting 2, got {}",
            clip(s),
            parts.len()
        )));
    }
    if parts[0] != "namespaces" {
        return Err(Status::invalid_argument(format!(
            "invalid first segment in identifier \"{}\", expecting \"namespaces\", got \"{}\"",
            clip(s),
            clip(parts[0])
        )));
    }
    Ok(parts[1].to_string())
}

/// `namespaces/{ns}/{kind}/{name}` -> (ns, name).
pub fn parse_name(s: &str, kind: &str) -> Result<(String, String), Status> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() != 4 {
        return Err(Status::invalid_argument(format!(
            "invalid number of segments in identifier \"{}\", expecting 4, got {}",
            clip(s),
            parts.len()
        )));
    }
    if parts[0] != "namespaces" {
        return Err(Status::invalid_argument(format!(
            "invalid first segment in identifier \"{}\", expecting \"namespaces\", got \"{}\"",
            clip(s),
            clip(parts[0])
        )));
    }
    if parts[2] != kind {
        return Err(Status::invalid_argument(format!(
            "invalid third segment in identifier \"{}\", expecting \"{kind}\", got \"{}\"",
            clip(s),
            clip(parts[2])
        )));
    }
    Ok((parts[1].to_string(), parts[3].to_string()))
}

/// Whether `name` is a valid Kubernetes object name (DNS-1123 subdomain).
pub fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_parent("namespaces/lab").unwrap(), "lab");
        assert_eq!(
            parse_name("namespaces/lab/leases/x", "leases").unwrap(),
            ("lab".into(), "x".into())
        );
        let e = parse_name("namespaces/lab/exporters/x", "leases").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            e.message(),
            "invalid third segment in identifier \"namespaces/lab/exporters/x\", expecting \
             \"leases\", got \"exporters\""
        );
        assert!(
            parse_name("a/b", "leases")
                .unwrap_err()
                .message()
                .contains("expecting 4, got 2")
        );
        assert!(valid_object_name("01234-abc.d"));
        assert!(!valid_object_name("Bad_Name"));
    }
}
