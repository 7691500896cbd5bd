//! Connecting to the controller named by a client config, and the controller's errors as
//! upstream's `jmp` words them.

use jumpstarter_config::{ClientConfig, Env, Locations, require_client};
use jumpstarter_core::channel::ChannelSettings;
use jumpstarter_core::controller::{ControllerError, Identity, LeaseClient};
use jumpstarter_core::exit::CliError;

use super::ClientOpts;

/// A controller error as upstream's `jmp` prints it ([`describe`]); the error is its source.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct Controller(#[source] pub ControllerError);

/// Controller errors as upstream's `jmp` words them.
pub fn describe(e: &ControllerError) -> String {
    use jumpstarter_core::client::Code;
    match e {
        ControllerError::Status(s) => match s.code() {
            Code::Unavailable => format!("grpc error: {}", s.message()),
            Code::Unknown => format!("grpc controller responded: {}", s.message()),
            Code::Unauthenticated | Code::PermissionDenied => format!(
                "Authentication or authorization failed. Check the client config's token (`jmp-controller admin config client NAME` prints a fresh config) and verify access permissions. Details: {}",
                s.message()
            ),
            code => format!(
                "grpc error (Caused by: status = {code:?}, details = \"{}\")",
                s.message()
            ),
        },
        other => other.to_string(),
    }
}

/// The client config and a connection to its controller.
pub async fn connect(opts: &ClientOpts) -> Result<(ClientConfig, LeaseClient), CliError> {
    let env = Env::process();
    let cfg = require_client(&opts.selection(), &env, &Locations::from_env())?;
    let client = connect_config(&cfg, &env).await?;
    Ok((cfg, client))
}

/// A connection to the controller of `cfg` (its endpoint, token, TLS and channel options).
pub async fn connect_config(cfg: &ClientConfig, env: &Env) -> Result<LeaseClient, CliError> {
    let (_, token) = cfg.endpoint_and_token()?;
    // A token that is not a JWT is named with its position before anything connects.
    cfg.token_claims()?;
    let settings = ChannelSettings::for_client(cfg, env)?;
    let who = Identity {
        token: token.to_string(),
        kind: "Client",
        namespace: cfg
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: cfg.metadata.name.clone(),
    };
    Ok(
        LeaseClient::connect(&settings.endpoint, settings.dial(), who)
            .await
            .map_err(Controller)?,
    )
}
