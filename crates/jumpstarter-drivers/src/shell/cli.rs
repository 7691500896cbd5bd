//! `j <shell> <method> [-e/--env KEY=VALUE]... [ARGS]...` (upstream `ShellClient`'s commands).
//!
//! One command per method the driver lists (`get_methods`, as upstream's client asks), with
//! the method's description as help (or `Execute the <name> shell method`). A method
//! command's options are parsed as click parses them with `ignore_unknown_options` and no
//! interspersed arguments: `-e/--env` and `--help` are recognised until the first argument
//! that is not an option, unknown options are passed to the script, and `--` ends the
//! options (it is not passed on). The script's stdout and stderr pass through as they arrive,
//! and `j` exits with the script's return code (128+N when it died of signal N; upstream
//! 0.9.0 always exits 0).

use std::collections::BTreeMap;
use std::io::Write;

use clap::{Arg, ArgAction, ArgMatches, Command};
use jumpstarter_core::{ClientError, DriverClient};
use jumpstarter_family::async_trait;
use jumpstarter_family::{CliError, CliResult, Commands, Node, Prepared, group, help_for};

use super::ShellClient;

/// The method names of a Shell node, or why they could not be listed.
pub type ShellMethods = Result<Vec<String>, ClientError>;

/// The commands of `ShellClient`: one per method the node lists.
pub struct ShellCommands;

#[async_trait(?Send)]
impl Commands for ShellCommands {
    /// Lists the node's methods (`get_methods`) before the command tree is built.
    async fn prepare(&self, node: &DriverClient) -> Prepared {
        let methods: ShellMethods = ShellClient::new(node.clone()).get_methods().await;
        Some(std::sync::Arc::new(methods))
    }

    fn command(&self, node: &Node<'_>) -> Command {
        command(node.path, node.client, node.prepared())
    }

    async fn run(&self, node: &Node<'_>, m: &ArgMatches) -> CliResult {
        run(node.client, m, node.names, node.prepared(), node.argv).await
    }
}

fn command(path: &str, node: &DriverClient, methods: Option<&ShellMethods>) -> Command {
    let mut cmd = group(path, node, "Shell command executor");
    match methods {
        Some(Ok(names)) => {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            for name in names {
                cmd = cmd.subcommand(
                    Command::new(name.clone())
                        .about(method_help(node, &name))
                        .disable_help_flag(true)
                        // Everything after the method name; `run` parses it from the raw
                        // arguments, as click would.
                        .arg(
                            Arg::new("args")
                                .value_name("ARGS")
                                .num_args(0..)
                                .action(ArgAction::Append)
                                .trailing_var_arg(true)
                                .allow_hyphen_values(true),
                        ),
                );
            }
        }
        Some(Err(e)) => {
            cmd = cmd
                .about(format!(
                    "Shell command executor (cannot list its methods: {e})"
                ))
                .allow_external_subcommands(true);
        }
        None => {}
    }
    cmd
}

fn method_help(node: &DriverClient, name: &str) -> String {
    help_for(node, name, &format!("Execute the {name} shell method"))
}

/// A bad option of a method command (click's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ArgsError {
    #[error("Option '{0}' requires an argument.")]
    NeedsValue(&'static str),
    #[error("Option '--help' does not take a value.")]
    HelpTakesNoValue,
}

/// An `--env` value without `=`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid value: Invalid --env value '{0}'. Use KEY=VALUE.")]
struct BadEnvValue(String);

/// A method command's `--help`, laid out as click lays it out.
fn help_text(path: &str, help: &str) -> String {
    let mut text = format!("Usage: {path} [OPTIONS] [ARGS]...\n\n");
    for line in help.lines() {
        if line.trim().is_empty() {
            text.push('\n');
        } else {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text.push_str(
        "\nOptions:\n  -e, --env TEXT  Environment variables in KEY=VALUE format\n  \
         --help          Show this message and exit.\n",
    );
    text
}

/// A usage error of a method command, as click prints it.
fn usage_error(path: &str, message: &str) -> String {
    format!(
        "Usage: {path} [OPTIONS] [ARGS]...\nTry '{path} --help' for help.\n\nError: {message}\n"
    )
}

/// What follows a method name on the command line.
#[derive(Debug, Default, PartialEq, Eq)]
struct MethodArgs {
    env: Vec<String>,
    args: Vec<String>,
    help: bool,
}

/// click's option parsing for `[-e/--env TEXT]... [--help] [ARGS]...` with
/// `ignore_unknown_options` and no interspersed arguments. Errors are click's messages.
fn parse_method_args(raw: &[String]) -> Result<MethodArgs, ArgsError> {
    let mut parsed = MethodArgs::default();
    let mut passed = Vec::new();
    let mut i = 0;
    let value_for = |name: &'static str, i: &mut usize| -> Result<String, ArgsError> {
        let v = raw.get(*i).cloned().ok_or(ArgsError::NeedsValue(name))?;
        *i += 1;
        Ok(v)
    };
    while let Some(arg) = raw.get(i) {
        if arg == "--" {
            i += 1;
            break;
        }
        if !(arg.starts_with('-') && arg.len() > 1) {
            break;
        }
        i += 1;
        let (name, attached) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg.as_str(), None),
        };
        match (name, attached) {
            ("--env", Some(v)) => parsed.env.push(v.to_owned()),
            ("--env", None) => parsed.env.push(value_for("--env", &mut i)?),
            ("--help", Some(_)) => return Err(ArgsError::HelpTakesNoValue),
            ("--help", None) => parsed.help = true,
            _ if arg.starts_with("--") => passed.push(arg.clone()),
            _ => {
                // A cluster of short options: `e` takes the rest (or the next argument) as
                // its value; unknown letters are passed on, re-joined behind one dash.
                let mut unknown = String::new();
                for (at, ch) in arg.char_indices().skip(1) {
                    if ch == 'e' {
                        let rest = &arg[at + ch.len_utf8()..];
                        let value = if rest.is_empty() {
                            value_for("-e", &mut i)?
                        } else {
                            rest.to_owned()
                        };
                        parsed.env.push(value);
                        break;
                    }
                    unknown.push(ch);
                }
                if !unknown.is_empty() {
                    passed.push(format!("-{unknown}"));
                }
            }
        }
    }
    passed.extend(raw.iter().skip(i).cloned());
    parsed.args = passed;
    Ok(parsed)
}

/// The raw arguments after `names` (export keys, then the method) in `argv`, skipping the
/// groups' `--log-level` options; `None` if `argv` does not have that shape.
fn after_path<'a>(argv: &'a [String], names: &[&str]) -> Option<&'a [String]> {
    let mut i = 0;
    for name in names {
        loop {
            let arg = argv.get(i)?;
            i += 1;
            if arg == name {
                break;
            }
            if arg == "--log-level" {
                i += 1;
            } else if !arg.starts_with("--log-level=") {
                return None;
            }
        }
    }
    argv.get(i..)
}

/// `KEY=VALUE` options as a map (later ones win), or the offending value.
fn parse_env(values: &[String]) -> Result<BTreeMap<String, String>, BadEnvValue> {
    let mut env = BTreeMap::new();
    for v in values {
        let (k, val) = v.split_once('=').ok_or_else(|| BadEnvValue(v.clone()))?;
        env.insert(k.to_owned(), val.to_owned());
    }
    Ok(env)
}

/// The process exit status for a return code: 0-255 as is, `-N` (signal N) as 128+N.
fn exit_status(code: i32) -> i32 {
    if code < 0 {
        128i32.saturating_sub(code).min(255)
    } else {
        code.min(255)
    }
}

/// Runs the method command in `m`. `names` are the export keys leading to the node; `argv`
/// the raw arguments of `j`.
async fn run(
    node: &DriverClient,
    m: &ArgMatches,
    names: &[String],
    methods: Option<&ShellMethods>,
    argv: &[String],
) -> CliResult {
    if let Some(Err(e)) = methods {
        return Err(CliError::runtime(format!(
            "cannot list the methods of {}: {e}",
            node.name()
        )));
    }
    let Some((method, sub)) = m.subcommand() else {
        return Err(CliError::runtime("missing command"));
    };
    let mut path: Vec<&str> = names.iter().map(String::as_str).collect();
    path.push(method);
    let command_path = format!("j {}", path.join(" "));
    let raw: Vec<String> = match after_path(argv, &path) {
        Some(raw) => raw.to_vec(),
        None => sub
            .get_many::<String>("args")
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
    };
    // Parse errors are printed without the usage lines, as upstream `j` prints them.
    let parsed = parse_method_args(&raw).map_err(CliError::runtime)?;
    if parsed.help {
        jumpstarter_core::out!("{}", help_text(&command_path, &method_help(node, method)));
        return Ok(0);
    }
    let env = match parse_env(&parsed.env) {
        Ok(env) => env,
        Err(bad) => {
            eprint!("{}", usage_error(&command_path, &bad.to_string()));
            return Ok(1);
        }
    };
    let code = ShellClient::new(node.clone())
        .call(
            method,
            &parsed.args,
            &env,
            |s| {
                jumpstarter_core::out::write_stdout_bytes(s.as_bytes());
            },
            |s| {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(s.as_bytes());
                let _ = err.flush();
            },
        )
        .await
        .map_err(call_error)?;
    Ok(exit_status(code))
}

/// Invalid arguments (unknown method, blocked env names) read as upstream prints them: the
/// driver's message alone.
fn call_error(e: ClientError) -> CliError {
    match e.as_call() {
        Some(call) if call.is_invalid_argument() => CliError::runtime(&call.message),
        _ => CliError::runtime(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn parse(args: &[&str]) -> Result<MethodArgs, String> {
        parse_method_args(&v(args)).map_err(|e| e.to_string())
    }

    fn ok(env: &[&str], args: &[&str]) -> Result<MethodArgs, String> {
        Ok(MethodArgs {
            env: v(env),
            args: v(args),
            help: false,
        })
    }

    #[test]
    fn options_are_parsed_like_click() {
        assert_eq!(parse(&[]), ok(&[], &[]));
        assert_eq!(parse(&["a", "b"]), ok(&[], &["a", "b"]));
        assert_eq!(
            parse(&["-e", "A=1", "--env", "B=2", "x"]),
            ok(&["A=1", "B=2"], &["x"])
        );
        assert_eq!(
            parse(&["-eA=1", "--env=B=2", "-e=C"]),
            ok(&["A=1", "B=2", "=C"], &[])
        );
        // No interspersed options: from the first argument on, everything is an argument.
        assert_eq!(
            parse(&["x", "-e", "A=1", "--help", "--"]),
            ok(&[], &["x", "-e", "A=1", "--help", "--"])
        );
        // Unknown options (and `-h`) go to the script, before the arguments; options after
        // them are still options.
        assert_eq!(
            parse(&["--foo=1", "-h", "-e", "A=1", "bar"]),
            ok(&["A=1"], &["--foo=1", "-h", "bar"])
        );
        assert_eq!(parse(&["-xe", "A=1", "y"]), ok(&["A=1"], &["-x", "y"]));
        assert_eq!(parse(&["-xyz", "-", "-5"]), ok(&[], &["-xyz", "-", "-5"]));
        // `--` ends the options and is not passed on.
        assert_eq!(parse(&["--", "-e", "x"]), ok(&[], &["-e", "x"]));
        assert_eq!(parse(&["-e", "A=1", "--", "--"]), ok(&["A=1"], &["--"]));
        // An option takes the next argument as its value, whatever it looks like.
        assert_eq!(parse(&["-e", "-x"]), ok(&["-x"], &[]));
        assert_eq!(
            parse(&["-e"]),
            Err("Option '-e' requires an argument.".into())
        );
        assert_eq!(
            parse(&["--env"]),
            Err("Option '--env' requires an argument.".into())
        );
        assert_eq!(
            parse(&["--help=1"]),
            Err("Option '--help' does not take a value.".into())
        );
        assert!(parse(&["-e", "A=1", "--help"]).unwrap().help);
        assert!(!parse(&["x", "--help"]).unwrap().help);
    }

    #[test]
    fn method_arguments_are_found_in_the_raw_command_line() {
        let argv = v(&[
            "--log-level",
            "DEBUG",
            "grp",
            "--log-level=info",
            "sh",
            "hello",
            "--",
            "-e",
        ]);
        assert_eq!(after_path(&argv, &["grp", "sh", "hello"]), Some(&argv[6..]));
        assert_eq!(
            after_path(&v(&["sh", "hello"]), &["sh", "hello"]),
            Some(&[][..])
        );
        assert_eq!(
            after_path(&v(&["sh", "--x", "hello"]), &["sh", "hello"]),
            None
        );
        assert_eq!(after_path(&v(&["sh"]), &["sh", "hello"]), None);
    }

    #[test]
    fn help_and_usage_as_click_prints_them() {
        assert_eq!(
            help_text("j sh hello", "Execute the hello shell method"),
            "Usage: j sh hello [OPTIONS] [ARGS]...\n\n  Execute the hello shell method\n\n\
             Options:\n  -e, --env TEXT  Environment variables in KEY=VALUE format\n  \
             --help          Show this message and exit.\n"
        );
        assert_eq!(
            usage_error("j sh hello", "Oops."),
            "Usage: j sh hello [OPTIONS] [ARGS]...\nTry 'j sh hello --help' for help.\n\nError: Oops.\n"
        );
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(3), 3);
        assert_eq!(exit_status(199), 199);
        assert_eq!(exit_status(-9), 137);
        assert_eq!(exit_status(-15), 143);
        assert_eq!(exit_status(300), 255);
        assert_eq!(exit_status(i32::MIN), 255);
    }

    #[test]
    fn env_values() {
        let env = parse_env(&v(&["A=1", "B=x=y", "A=2", "E="])).unwrap();
        assert_eq!(env["A"], "2");
        assert_eq!(env["B"], "x=y");
        assert_eq!(env["E"], "");
        assert_eq!(parse_env(&v(&["A=1", "NOEQ"])).unwrap_err().0, "NOEQ");
    }
}
