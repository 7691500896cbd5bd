//! Administration on the data directory: clients and exporters (with their credentials) and
//! leases. The admin is whoever can open the data directory (it is created owner-only); the
//! running daemon sees changes through the store (its scheduler sweeps every few seconds).
//!
//! Config files are rendered in exactly the layout upstream's `jmp admin create ... --save`
//! writes (key order, `''` for an empty CA, `null`s, the hooks and failureDetection blocks).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::auth::Keys;
use crate::model::{ClientRecord, ExporterRecord, now_secs};
use crate::store::{Store, StoreError};
use crate::{SETTING_CA, SETTING_ENDPOINT, SETTING_TOKEN_LIFETIME};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] crate::auth::KeyError),
    #[error(
        "invalid name {0:?}: use lower-case letters, digits, '-' and '.' (Kubernetes object names)"
    )]
    Name(String),
    #[error("invalid label {0:?}: {1}")]
    Label(String, #[source] crate::selector::LabelError),
    #[error("invalid label {0:?}: expected key=value")]
    LabelFormat(String),
    #[error(
        "the controller's endpoint is not known yet: start the controller once on this data \
         directory, or pass --endpoint"
    )]
    NoEndpoint,
}

/// Parses `k=v` labels.
pub fn parse_labels(items: &[String]) -> Result<BTreeMap<String, String>, AdminError> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            return Err(AdminError::LabelFormat(item.clone()));
        };
        crate::selector::validate_key(k).map_err(|e| AdminError::Label(item.clone(), e))?;
        crate::selector::validate_value(v).map_err(|e| AdminError::Label(item.clone(), e))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

async fn lifetime(store: &Store) -> Duration {
    store
        .setting(SETTING_TOKEN_LIFETIME)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
        .map_or(crate::auth::DEFAULT_TOKEN_LIFETIME, Duration::from_secs)
}

pub async fn create_client(
    store: &Store,
    keys: &Keys,
    ns: &str,
    name: &str,
    labels: BTreeMap<String, String>,
) -> Result<ClientRecord, AdminError> {
    if !crate::convert::valid_object_name(name) {
        return Err(AdminError::Name(name.into()));
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let (token, _) = keys.mint_internal("client", ns, name, &uid, lifetime(store).await)?;
    let c = ClientRecord {
        namespace: ns.into(),
        name: name.into(),
        uid,
        labels,
        username: None,
        token,
        token_generation: 0,
        created: now_secs(),
    };
    store.insert_client(&c).await?;
    Ok(c)
}

pub async fn create_exporter(
    store: &Store,
    keys: &Keys,
    ns: &str,
    name: &str,
    labels: BTreeMap<String, String>,
) -> Result<ExporterRecord, AdminError> {
    if !crate::convert::valid_object_name(name) {
        return Err(AdminError::Name(name.into()));
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let (token, _) = keys.mint_internal("exporter", ns, name, &uid, lifetime(store).await)?;
    let e = ExporterRecord {
        namespace: ns.into(),
        name: name.into(),
        uid,
        labels,
        username: None,
        enabled: true,
        devices: None,
        status: String::new(),
        status_message: String::new(),
        last_seen: None,
        token,
        token_generation: 0,
        created: now_secs(),
    };
    store.insert_exporter(&e).await?;
    Ok(e)
}

/// Where configs point and which CA they carry.
pub async fn endpoint_and_ca(
    store: &Store,
    endpoint: Option<&str>,
) -> Result<(String, String), AdminError> {
    let endpoint = match endpoint {
        Some(e) => e.to_string(),
        None => store
            .setting(SETTING_ENDPOINT)
            .await?
            .ok_or(AdminError::NoEndpoint)?,
    };
    let ca = store.setting(SETTING_CA).await?.unwrap_or_default();
    Ok((endpoint, ca))
}

/// A YAML scalar the way PyYAML's safe_dump writes it (plain when safe, else single-quoted).
pub fn yaml_scalar(s: &str) -> String {
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    let numeric = s.parse::<f64>().is_ok();
    let plain = !reserved
        && !numeric
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:-@+=*".contains(c))
        && !s.starts_with(|c: char| "-:@*".contains(c))
        && !s.ends_with(':')
        && !s.contains(": ");
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// The `drivers.allow` of a client config when `--allow` is not given: upstream's own
/// packages (the client classes of every built-in driver, and of upstream's core library).
/// Upstream's `jmp` and `j` read an empty list as "allow nothing", so an empty default would
/// leave a new client with no driver commands at all.
pub const DEFAULT_ALLOW: &[&str] = &["jumpstarter_driver_*", "jumpstarter.client.*"];

/// Options of a client config.
#[derive(Debug, Clone, Default)]
pub struct ClientConfigOptions {
    pub insecure: bool,
    pub allow: Vec<String>,
    pub unsafe_drivers: bool,
}

/// A `ClientConfig` file as upstream's admin CLI saves it.
pub fn client_config_yaml(
    c: &ClientRecord,
    endpoint: &str,
    ca: &str,
    o: &ClientConfigOptions,
) -> String {
    let allow = if o.allow.is_empty() {
        " []".to_string()
    } else {
        o.allow
            .iter()
            .map(|a| format!("\n  - {}", yaml_scalar(a)))
            .collect()
    };
    format!(
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nmetadata:\n  namespace: {}\n  \
         name: {}\nendpoint: {}\ntls:\n  ca: {}\n  insecure: {}\ntoken: {}\ngrpcOptions: {{}}\n\
         drivers:\n  allow:{allow}\n  unsafe: {}\nshell:\n  use_profiles: false\n",
        yaml_scalar(&c.namespace),
        yaml_scalar(&c.name),
        yaml_scalar(endpoint),
        yaml_scalar(ca),
        o.insecure,
        yaml_scalar(&c.token),
        o.unsafe_drivers,
    )
}

/// An `ExporterConfig` file as upstream's admin CLI saves it (`export: {}`).
pub fn exporter_config_yaml(
    e: &ExporterRecord,
    endpoint: &str,
    ca: &str,
    insecure: bool,
) -> String {
    format!(
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata:\n  namespace: {}\n  \
         name: {}\nendpoint: {}\ntls:\n  ca: {}\n  insecure: {insecure}\ntoken: {}\n\
         grpcOptions: {{}}\ndescription: null\nexport: {{}}\nhooks:\n  beforeLease: null\n  \
         afterLease: null\nfailureDetection:\n  maxRapidFailures: 5\n  rapidFailureWindow: 60\n",
        yaml_scalar(&e.namespace),
        yaml_scalar(&e.name),
        yaml_scalar(endpoint),
        yaml_scalar(ca),
        yaml_scalar(&e.token),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_quote_like_pyyaml() {
        assert_eq!(yaml_scalar("127.0.0.1:8082"), "127.0.0.1:8082");
        assert_eq!(yaml_scalar("[::1]:8082"), "'[::1]:8082'");
        assert_eq!(yaml_scalar(""), "''");
        assert_eq!(yaml_scalar("true"), "'true'");
        assert_eq!(yaml_scalar("123"), "'123'");
        assert_eq!(yaml_scalar("eyJh.eyJ-_x.sig"), "eyJh.eyJ-_x.sig");
        assert_eq!(yaml_scalar("jumpstarter_driver_*"), "jumpstarter_driver_*");
        assert_eq!(yaml_scalar("*x"), "'*x'");
    }

    #[test]
    fn client_config_matches_upstreams_layout() {
        let c = ClientRecord {
            namespace: "lab".into(),
            name: "alice".into(),
            uid: "u".into(),
            labels: Default::default(),
            username: None,
            token: "TOK".into(),
            token_generation: 0,
            created: 0,
        };
        let o = ClientConfigOptions {
            insecure: true,
            allow: vec![],
            unsafe_drivers: true,
        };
        // The bytes upstream 0.9.0's ClientConfigV1Alpha1.save writes for the same values.
        assert_eq!(
            client_config_yaml(&c, "127.0.0.1:8082", "", &o),
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nmetadata:\n  namespace: lab\n  name: alice\nendpoint: 127.0.0.1:8082\ntls:\n  ca: ''\n  insecure: true\ntoken: TOK\ngrpcOptions: {}\ndrivers:\n  allow: []\n  unsafe: true\nshell:\n  use_profiles: false\n"
        );
    }
}
