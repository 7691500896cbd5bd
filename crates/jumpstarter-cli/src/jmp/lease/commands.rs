//! The commands: `jmp create lease`, `jmp get leases|exporters`, `jmp update lease`,
//! `jmp delete leases`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jumpstarter_core::exit::{CliError, CliResult};
use jumpstarter_protocol::client_v1::{Exporter, Lease};
use serde_json::{Value as Json, json};

use super::connect::{Controller, connect};
use super::parse::{parse_tags, selector_contains};
use super::view::{
    expires_at, last_segment, lease_json, lease_status, local, online, print_leases,
    print_structured, split_name, status_name,
};
use super::{
    CreateCommand, DeleteCommand, GetCommand, GetExportersArgs, GetLeasesArgs, UpdateCommand,
};
use crate::output;

/// `jmp create lease`.
pub async fn create(cmd: CreateCommand) -> CliResult {
    let CreateCommand::Lease(a) = cmd;
    const USAGE: &str = "jmp create lease [OPTIONS]";
    if a.selector.is_empty() && a.exporter_name.is_none() {
        return Err(CliError::usage_of(
            USAGE,
            "one of --selector/-l or --name/-n is required",
        ));
    }
    let tags = parse_tags(&a.tags).map_err(|e| CliError::usage_of(USAGE, e))?;
    let (_, client) = connect(&a.config).await?;
    let lease = new_lease(
        &a.selector.join(","),
        a.exporter_name.clone(),
        a.duration.unwrap_or_default(),
        a.begin_time,
        tags,
        a.allow_disabled,
    );
    let l = client
        .create_lease(lease, a.lease_id.as_deref().unwrap_or(""))
        .await
        .map_err(Controller)?;
    for (k, m) in &l.deprecated_labels {
        let suffix = if m.is_empty() {
            String::new()
        } else {
            format!(": {m}")
        };
        eprintln!("Warning: selector label '{k}' is deprecated{suffix}");
    }
    print_leases(std::slice::from_ref(&l), a.output.as_deref(), true);
    Ok(0)
}

fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn proto_ts(t: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

pub fn new_lease(
    selector: &str,
    exporter_name: Option<String>,
    duration: Duration,
    begin_time: Option<jiff::Timestamp>,
    tags: HashMap<String, String>,
    allow_disabled: bool,
) -> Lease {
    Lease {
        selector: selector.to_string(),
        duration: Some(proto_duration(duration)),
        begin_time: begin_time.map(proto_ts),
        exporter_name,
        tags,
        allow_disabled,
        ..Default::default()
    }
}

/// `jmp get leases` and `jmp get exporters`.
pub async fn get(cmd: GetCommand) -> CliResult {
    match cmd {
        GetCommand::Leases(a) => get_leases(a).await,
        GetCommand::Exporters(a) => get_exporters(a).await,
    }
}

async fn get_leases(a: GetLeasesArgs) -> CliResult {
    let (cfg, client) = connect(&a.config).await?;
    let selector = a.selector.join(",");
    let mut leases = client
        .list_leases_tagged(
            &selector,
            !a.all,
            a.tag_filter.as_deref().unwrap_or_default(),
        )
        .await
        .map_err(Controller)?;
    if !selector.is_empty() {
        leases.retain(|l| selector_contains(&l.selector, &selector));
    }
    if !a.all_clients {
        leases.retain(|l| l.client.as_deref().map(last_segment) == Some(cfg.metadata.name.clone()));
    }
    print_leases(&leases, a.output.as_deref(), false);
    Ok(0)
}

async fn get_exporters(a: GetExportersArgs) -> CliResult {
    let (_, client) = connect(&a.config).await?;
    let with = |w: &str| a.with.iter().any(|x| x == w);
    let (leases_on, online_on, status_on) = (with("leases"), with("online"), with("status"));
    let mut exporters: Vec<Exporter> = client
        .list_exporters_hidden(&a.selector.join(","), a.show_hidden_labels)
        .await
        .map_err(Controller)?;
    if !a.allow_disabled {
        exporters.retain(|e| e.enabled != Some(false));
    }
    let mut held = HashMap::new();
    if leases_on {
        for l in client.list_leases("", true).await.map_err(Controller)? {
            let ready = l.conditions.last().is_some_and(|c| {
                c.r#type.as_deref() == Some("Ready") && c.status.as_deref() == Some("True")
            });
            if let Some(e) = l.exporter.as_deref().filter(|e| !e.is_empty())
                && l.effective_begin_time.is_some()
                && ready
            {
                held.insert(last_segment(e), l);
            }
        }
    }
    match a.output.as_deref() {
        Some("name") => {
            for e in &exporters {
                jumpstarter_core::outln!("{}", last_segment(&e.name));
            }
        }
        Some(f) => {
            let list: Vec<Json> = exporters
                .iter()
                .map(|e| {
                    let (namespace, name) = split_name(&e.name);
                    let mut m = serde_json::Map::new();
                    m.insert("namespace".into(), json!(namespace));
                    m.insert("name".into(), json!(name));
                    m.insert(
                        "labels".into(),
                        json!(e.labels.iter().collect::<BTreeMap<_, _>>()),
                    );
                    if online_on {
                        m.insert("online".into(), json!(online(e)));
                    }
                    if status_on {
                        m.insert(
                            "status".into(),
                            if e.status == 0 {
                                Json::Null
                            } else {
                                json!(e.status)
                            },
                        );
                    }
                    if a.allow_disabled {
                        m.insert("enabled".into(), json!(e.enabled.unwrap_or(true)));
                    }
                    if leases_on {
                        m.insert(
                            "lease".into(),
                            held.get(&name).map(lease_json).unwrap_or(Json::Null),
                        );
                    }
                    m.insert(
                        "deprecated_labels".into(),
                        json!(e.deprecated_labels.iter().collect::<BTreeMap<_, _>>()),
                    );
                    Json::Object(m)
                })
                .collect();
            print_structured(&json!({ "exporters": list }), f == "yaml");
        }
        None => {
            let mut headers = vec!["NAME"];
            if a.allow_disabled {
                headers.push("ENABLED");
            }
            if online_on {
                headers.push("ONLINE");
            }
            if status_on {
                headers.push("STATUS");
            }
            headers.push("LABELS");
            if leases_on {
                headers.extend(["LEASED BY", "LEASE STATUS", "RELEASE TIME"]);
            }
            let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
            let rows: Vec<Vec<String>> = exporters
                .iter()
                .map(|e| {
                    let name = last_segment(&e.name);
                    let mut row = vec![name.clone()];
                    if a.allow_disabled {
                        row.push(yes(e.enabled.unwrap_or(true)));
                    }
                    if online_on {
                        row.push(yes(online(e)));
                    }
                    if status_on {
                        row.push(status_name(e.status));
                    }
                    let mut labels: Vec<String> =
                        e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    labels.sort();
                    row.push(labels.join(","));
                    if leases_on {
                        match held.get(&name) {
                            Some(l) => row.extend([
                                l.client.as_deref().map(last_segment).unwrap_or_default(),
                                lease_status(l),
                                expires_at(l).map(local).unwrap_or_default(),
                            ]),
                            None => row.extend([String::new(), "Available".into(), String::new()]),
                        }
                    }
                    row
                })
                .collect();
            output::table(&headers, &rows);
        }
    }
    Ok(0)
}

/// `jmp update lease`.
pub async fn update(cmd: UpdateCommand) -> CliResult {
    let UpdateCommand::Lease(a) = cmd;
    if a.duration.is_none() && a.begin_time.is_none() && a.to_client.is_none() {
        return Err(CliError::usage_of(
            "jmp update lease [OPTIONS] NAME",
            "At least one of --duration, --begin-time, or --to-client must be specified",
        ));
    }
    let (_, client) = connect(&a.config).await?;
    let mut lease = Lease {
        name: a.name.clone(),
        ..Default::default()
    };
    let mut paths = Vec::new();
    if let Some(d) = a.duration {
        lease.duration = Some(proto_duration(d));
        paths.push("duration".to_string());
    }
    if let Some(t) = a.begin_time {
        lease.begin_time = Some(proto_ts(t));
        paths.push("begin_time".to_string());
    }
    if let Some(c) = &a.to_client {
        lease.client = Some(format!("namespaces/{}/clients/{c}", client.namespace()));
        paths.push("client".to_string());
    }
    let l = client
        .update_lease(lease, paths)
        .await
        .map_err(Controller)?;
    print_leases(std::slice::from_ref(&l), a.output.as_deref(), true);
    Ok(0)
}

/// `jmp delete leases`.
pub async fn delete(cmd: DeleteCommand) -> CliResult {
    let DeleteCommand::Leases(a) = cmd;
    if a.names.is_empty() && a.selector.is_empty() && !a.all && !a.all_clients {
        return Err(CliError::runtime(
            "One of NAMES, --selector, --all or --all-clients must be specified",
        ));
    }
    let (cfg, client) = connect(&a.config).await?;
    let names: Vec<String> = if !a.names.is_empty() {
        a.names.clone()
    } else {
        let selector = a.selector.join(",");
        let mut leases = client
            .list_leases(&selector, true)
            .await
            .map_err(Controller)?;
        if !selector.is_empty() {
            leases.retain(|l| selector_contains(&l.selector, &selector));
        }
        if !a.all_clients {
            leases.retain(|l| {
                l.client.as_deref().map(last_segment) == Some(cfg.metadata.name.clone())
            });
        }
        leases.iter().map(|l| split_name(&l.name).1).collect()
    };
    if names.is_empty() {
        return Err(CliError::runtime("no leases found matching the criteria"));
    }
    for n in &names {
        client.delete_lease(n).await.map_err(Controller)?;
        if a.output.is_some() {
            jumpstarter_core::outln!("{n}");
        } else {
            jumpstarter_core::outln!("lease \"{n}\" deleted");
        }
    }
    Ok(0)
}
