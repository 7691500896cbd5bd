//! Generic commands for any driver, by method name: what `j` offers for client classes it has
//! no native commands for (upstream would need the Python client class installed).
//!
//! * `call METHOD [ARG]...`: a unary call; each ARG is JSON, or a plain string when it is not
//!   valid JSON. The result is printed (strings raw, null as nothing, others as JSON).
//! * `stream-call METHOD [ARG]...`: a streaming call, one result per line.
//! * `connect [METHOD]`: stdin/stdout to a byte-stream method (default `connect`).
//! * `methods`: the method descriptions the exporter configured.

use clap::{Arg, ArgAction, ArgMatches, Command};
use futures::StreamExt;
use jumpstarter_core::DriverClient;
use serde_json::Value;

use crate::output::print_value;
use crate::stdio::stdio;
use crate::{CliResult, group};

crate::command_set! {
    /// The generic command set (what `j` gives a client class no family registered).
    pub struct Generic => command, run;
}

/// The generic group of a node: `call`, `stream-call`, `connect` and `methods`. A family's
/// own command set may start from it and add its commands.
pub fn command(path: &str, node: &DriverClient) -> Command {
    let args = || {
        Arg::new("args")
            .value_name("ARG")
            .num_args(0..)
            .action(ArgAction::Append)
            .allow_hyphen_values(true)
            .help("Positional arguments, as JSON (or plain strings)")
    };
    let builtin = format!("Driver {} (generic commands)", node.client_class());
    group(path, node, &builtin)
        .subcommand(
            Command::new("call")
                .about("Call a method and print its result")
                .arg(Arg::new("method").value_name("METHOD").required(true))
                .arg(args()),
        )
        .subcommand(
            Command::new("stream-call")
                .about("Call a streaming method and print each result")
                .arg(Arg::new("method").value_name("METHOD").required(true))
                .arg(args()),
        )
        .subcommand(
            Command::new("connect")
                .about("Connect stdin and stdout to a byte-stream method")
                .arg(
                    Arg::new("method")
                        .value_name("METHOD")
                        .default_value("connect"),
                ),
        )
        .subcommand(Command::new("methods").about("List the methods the exporter describes"))
}

/// A command-line argument as a JSON value: JSON if it parses, else the text itself.
pub fn parse_arg(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

fn call_args(m: &ArgMatches) -> Vec<Value> {
    m.get_many::<String>("args")
        .map(|v| v.map(|s| parse_arg(s)).collect())
        .unwrap_or_default()
}

/// Runs a generic sub-command (`Ok(None)`-free: every sub-command of [`command`] is handled).
pub async fn run(node: &DriverClient, m: &ArgMatches) -> CliResult {
    match m.subcommand() {
        Some(("call", sub)) => {
            let method = sub.get_one::<String>("method").cloned().unwrap_or_default();
            let result = node.call(&method, call_args(sub)).await?;
            print_value(&result);
            Ok(0)
        }
        Some(("stream-call", sub)) => {
            let method = sub.get_one::<String>("method").cloned().unwrap_or_default();
            let mut items = Box::pin(node.streaming_call(&method, call_args(sub)).await?);
            while let Some(item) = items.next().await {
                print_value(&item?);
            }
            Ok(0)
        }
        Some(("connect", sub)) => {
            let method = sub.get_one::<String>("method").cloned().unwrap_or_default();
            stdio(node.stream(&method).await?).await
        }
        Some(("methods", _)) => {
            if node.methods_description().is_empty() {
                jumpstarter_core::outln!(
                    "(the exporter describes no methods for {})",
                    node.client_class()
                );
            }
            for (name, help) in node.methods_description() {
                jumpstarter_core::outln!("{name}\t{help}");
            }
            Ok(0)
        }
        _ => unreachable!("clap requires a sub-command"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_arg;
    use serde_json::json;

    #[test]
    fn arguments_are_json_or_text() {
        assert_eq!(parse_arg("3"), json!(3));
        assert_eq!(parse_arg("true"), json!(true));
        assert_eq!(parse_arg("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(parse_arg("\"quoted\""), json!("quoted"));
        assert_eq!(parse_arg("plain text"), json!("plain text"));
    }
}
