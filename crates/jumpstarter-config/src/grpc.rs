//! `grpcOptions` / `grpcConfig`: gRPC core channel arguments, mapped to settings our channels
//! really have.
//!
//! Defaults are upstream's (protocol notes §8.1). `grpcConfig` (the name the documentation
//! uses) is read first, then `grpcOptions` (the name upstream's code reads) overrides it key by
//! key. Keys that are not listed in [`KNOWN`] are returned so the caller can warn about them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{GrpcOptionValue, GrpcOptions};
use crate::error::ConfigError;

/// Settings of a channel to a controller, a router, or a direct-mode exporter over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// HTTP/2 PING interval (`grpc.keepalive_time_ms`, default 20 s).
    pub keepalive_time: Duration,
    /// How long to wait for a PING ack before closing (`grpc.keepalive_timeout_ms`, 180 s).
    pub keepalive_timeout: Duration,
    /// Ping also while no call is running (`grpc.keepalive_permit_without_calls`, 1).
    pub keepalive_permit_without_calls: bool,
    /// Largest message a client accepts (`grpc.max_receive_message_length`; None = no limit,
    /// upstream default 4 MiB is gRPC core's, which tonic shares).
    pub max_receive_message_length: Option<usize>,
    /// Largest message a client sends (`grpc.max_send_message_length`; None = no limit).
    pub max_send_message_length: Option<usize>,
    /// `grpc.primary_user_agent`: put in front of the user agent.
    pub user_agent: Option<String>,
    /// `grpc.ssl_target_name_override`: the name the server certificate is checked against.
    pub tls_server_name: Option<String>,
    /// `grpc.default_authority`: the `:authority` of requests.
    pub authority: Option<String>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            keepalive_time: Duration::from_millis(20_000),
            keepalive_timeout: Duration::from_millis(180_000),
            keepalive_permit_without_calls: true,
            max_receive_message_length: Some(4 * 1024 * 1024),
            max_send_message_length: None,
            user_agent: None,
            tls_server_name: None,
            authority: None,
        }
    }
}

/// Keys we understand. The last group is accepted with no effect: our channels already behave
/// that way (one connection per channel, no ping limit without data).
pub const KNOWN: &[&str] = &[
    "grpc.keepalive_time_ms",
    "grpc.keepalive_timeout_ms",
    "grpc.keepalive_permit_without_calls",
    "grpc.max_receive_message_length",
    "grpc.max_send_message_length",
    "grpc.primary_user_agent",
    "grpc.ssl_target_name_override",
    "grpc.default_authority",
    // accepted, nothing to change:
    "grpc.lb_policy_name",
    "grpc.http2.max_pings_without_data",
    "grpc.enable_retries",
    "grpc.enable_http_proxy",
];

impl ChannelOptions {
    /// Builds options from `grpcConfig` and `grpcOptions` (the latter wins). Returns the
    /// options and the keys that are not understood (to be warned about).
    pub fn from_maps(
        grpc_config: &GrpcOptions,
        grpc_options: &GrpcOptions,
    ) -> Result<(ChannelOptions, Vec<String>), ConfigError> {
        let mut merged: BTreeMap<&str, (&GrpcOptionValue, &str)> = BTreeMap::new();
        for (k, v) in grpc_config {
            merged.insert(k, (v, "grpcConfig"));
        }
        for (k, v) in grpc_options {
            merged.insert(k, (v, "grpcOptions"));
        }
        let mut o = ChannelOptions::default();
        let mut unknown = Vec::new();
        for (key, (value, field)) in merged {
            let int = || -> Result<i64, ConfigError> {
                match value {
                    GrpcOptionValue::Int(i) => Ok(*i),
                    GrpcOptionValue::Str(s) => s.trim().parse().map_err(|_| {
                        ConfigError::NotFound(format!(
                            "{field}: `{key}` must be a whole number, not '{s}'"
                        ))
                    }),
                }
            };
            let text = || match value {
                GrpcOptionValue::Int(i) => i.to_string(),
                GrpcOptionValue::Str(s) => s.clone(),
            };
            let millis = |what: &str| -> Result<Duration, ConfigError> {
                let v = int()?;
                if v <= 0 {
                    return Err(ConfigError::NotFound(format!(
                        "{field}: `{key}` ({what}) must be a positive number of milliseconds"
                    )));
                }
                Ok(Duration::from_millis(v as u64))
            };
            let size = || -> Result<Option<usize>, ConfigError> {
                let v = int()?;
                Ok(if v < 0 { None } else { Some(v as usize) })
            };
            match key {
                "grpc.keepalive_time_ms" => o.keepalive_time = millis("keepalive interval")?,
                "grpc.keepalive_timeout_ms" => o.keepalive_timeout = millis("keepalive timeout")?,
                "grpc.keepalive_permit_without_calls" => {
                    o.keepalive_permit_without_calls = int()? != 0
                }
                "grpc.max_receive_message_length" => o.max_receive_message_length = size()?,
                "grpc.max_send_message_length" => o.max_send_message_length = size()?,
                "grpc.primary_user_agent" => o.user_agent = Some(text()),
                "grpc.ssl_target_name_override" => o.tls_server_name = Some(text()),
                "grpc.default_authority" => o.authority = Some(text()),
                k if KNOWN.contains(&k) => {}
                other => unknown.push(other.to_owned()),
            }
        }
        Ok((o, unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, GrpcOptionValue)]) -> GrpcOptions {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn defaults_are_upstreams() {
        let (o, unknown) =
            ChannelOptions::from_maps(&GrpcOptions::new(), &GrpcOptions::new()).unwrap();
        assert_eq!(o, ChannelOptions::default());
        assert_eq!(o.keepalive_time, Duration::from_secs(20));
        assert_eq!(o.keepalive_timeout, Duration::from_secs(180));
        assert!(o.keepalive_permit_without_calls);
        assert!(unknown.is_empty());
    }

    #[test]
    fn options_override_config_and_unknown_keys_are_reported() {
        use GrpcOptionValue::*;
        let config = map(&[
            ("grpc.keepalive_time_ms", Int(1000)),
            ("grpc.max_send_message_length", Int(10)),
            ("grpc.fancy", Int(1)),
        ]);
        let options = map(&[
            ("grpc.keepalive_time_ms", Str("5000".into())),
            ("grpc.keepalive_permit_without_calls", Int(0)),
            ("grpc.max_receive_message_length", Int(-1)),
            ("grpc.ssl_target_name_override", Str("ctl.lab".into())),
            ("grpc.lb_policy_name", Str("pick_first".into())),
        ]);
        let (o, unknown) = ChannelOptions::from_maps(&config, &options).unwrap();
        assert_eq!(o.keepalive_time, Duration::from_secs(5));
        assert!(!o.keepalive_permit_without_calls);
        assert_eq!(o.max_receive_message_length, None);
        assert_eq!(o.max_send_message_length, Some(10));
        assert_eq!(o.tls_server_name.as_deref(), Some("ctl.lab"));
        assert_eq!(unknown, ["grpc.fancy"]);
        let err = ChannelOptions::from_maps(
            &GrpcOptions::new(),
            &map(&[("grpc.keepalive_time_ms", Str("soon".into()))]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`grpc.keepalive_time_ms` must be a whole number"),
            "{err}"
        );
    }
}
