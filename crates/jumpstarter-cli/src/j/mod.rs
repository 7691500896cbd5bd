//! `j`: driver commands inside a `jmp shell`.
//!
//! `j` connects to `JUMPSTARTER_HOST`, reads the driver tree from `GetReport` and builds its
//! command tree from it: one group per export key, with the commands of the node's client
//! class (power, network, shell, ...), and generic `call`/`stream-call`/`connect`/`methods` commands
//! for client classes it has no native commands for.
//!
//! Conventions (upstream's): `--help` exits 0; usage errors and driver errors exit 1; a group
//! without a command prints its help to stderr and exits 1.

mod allow;
mod tree;

use std::ffi::OsString;

use jumpstarter_core::tls;
use jumpstarter_core::transport::{Dial, Target};
use jumpstarter_core::{Client, ClientError};

pub use allow::Allow;

/// Runs `j` with its arguments (without the program name); returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let host = match std::env::var("JUMPSTARTER_HOST") {
        Ok(h) if !h.is_empty() => h,
        _ => {
            eprintln!(
                "Error: the j command must be used inside a jmp shell: JUMPSTARTER_HOST not set"
            );
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(run(host, args));
    // Do not wait for a blocked stdin reader thread.
    rt.shutdown_background();
    code
}

async fn run(host: String, args: Vec<OsString>) -> i32 {
    crate::logging::init(&early_log_level(&args), crate::logging::Sink::Stdout);
    let target = Target::parse(&host);
    let dial = match dial_options(&target) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let client = match connect(&target, &dial).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let allow = allow::from_env();
    tree::run(&client, crate::families(), &allow, args).await
}

/// Connects and reads the report; a TLS/plaintext mismatch with a TCP target says which
/// setting to change.
async fn connect(target: &Target, dial: &Dial) -> Result<Client, String> {
    use jumpstarter_core::transport::{DialError, H2Channel, speaks_tls};
    let channel = match H2Channel::dial(target, dial).await {
        Ok(c) => c,
        Err(e @ DialError::Plaintext { .. }) => {
            return Err(format!(
                "Exporter did not respond to initial connection: {e}; set JMP_GRPC_INSECURE=1 \
                 to connect without TLS"
            ));
        }
        Err(e) => return Err(ClientError::Connect(e.to_string()).to_string()),
    };
    match Client::from_channel(channel).await {
        Ok(c) => Ok(c),
        Err(e @ ClientError::Connect(_)) => match target {
            Target::Tcp { host, port } if dial.tls.is_none() && speaks_tls(host, *port).await => {
                Err(format!(
                    "{e}; the exporter at {target} speaks TLS: unset JMP_GRPC_INSECURE (and trust \
                     its certificate with GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=CERT.pem)"
                ))
            }
            _ => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// How `j` reaches a TCP target (a direct-mode exporter), as upstream's `j` does:
/// `JMP_GRPC_INSECURE=1` (or `JUMPSTARTER_GRPC_INSECURE=1`) means plaintext, otherwise TLS
/// verified against `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` or the system store; the passphrase
/// comes from `JMP_GRPC_PASSPHRASE`. Unix socket targets use neither.
fn dial_options(target: &Target) -> Result<Dial, jumpstarter_core::exit::CliError> {
    if let Target::Unix(_) = target {
        return Ok(Dial::default());
    }
    let tls = if insecure_env() {
        None
    } else {
        let roots = tls::default_roots()?;
        Some(tls::client_config(&tls::ServerTrust::Roots(
            std::sync::Arc::new(roots),
        ))?)
    };
    let passphrase = std::env::var("JMP_GRPC_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty());
    Ok(Dial { tls, passphrase })
}

fn insecure_env() -> bool {
    ["JMP_GRPC_INSECURE", "JUMPSTARTER_GRPC_INSECURE"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")))
}

/// `--log-level` of the root group, read before the tree exists.
fn early_log_level(args: &[OsString]) -> String {
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--log-level" {
            return it.next().map(|v| v.into_owned()).unwrap_or_default();
        }
        if let Some(v) = a.strip_prefix("--log-level=") {
            return v.to_owned();
        }
    }
    "INFO".into()
}
