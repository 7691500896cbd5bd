//! `jmp`: the management CLI.

mod config;
mod direct;
mod run;
mod shell;

use std::ffi::OsString;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::logging;

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

#[derive(Debug, Parser)]
#[command(
    name = "jmp",
    about = "The Jumpstarter CLI",
    disable_version_flag = true,
    arg_required_else_help = true
)]
struct Jmp {
    /// Set the log level
    #[arg(long, value_name = "LEVEL", default_value = "INFO", ignore_case = true, value_parser = LEVELS)]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate shell completion script.
    Completion(CompletionArgs),
    /// Manage local configurations
    #[command(subcommand, alias = "conf")]
    Config(config::ConfigCommand),
    /// Spawns a shell (or runs a command) connected to a local exporter, a direct exporter, or
    /// an exporter leased from a controller
    #[command(alias = "sh", alias = "s")]
    Shell(Box<shell::ShellArgs>),
    /// Run an exporter: in direct mode (--tls-grpc-listener) clients connect to it over TCP
    #[command(after_help = run::AFTER_HELP)]
    Run(Box<run::RunArgs>),
    /// Get the current Jumpstarter version
    #[command(alias = "ver", alias = "v")]
    Version(VersionArgs),
}

#[derive(Debug, Args)]
struct CompletionArgs {
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    shell: String,
}

#[derive(Debug, Args)]
struct VersionArgs {
    /// Output format
    #[arg(short, long, value_parser = ["json", "yaml", "name"])]
    output: Option<String>,
}

/// Runs `jmp` with the full argv (program name first); returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Jmp::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Version(v) => version(v.output.as_deref()),
        Command::Config(c) => {
            logging::init(&cli.log_level, logging::Sink::Stdout);
            config::run(c)
        }
        Command::Completion(c) => completion(&c.shell),
        Command::Shell(args) => {
            logging::init(&cli.log_level, logging::Sink::Stdout);
            with_runtime(shell::run(*args))
        }
        Command::Run(args) => {
            logging::init(&cli.log_level, logging::Sink::Stderr);
            with_runtime(run::run(*args))
        }
    }
}

fn with_runtime(f: impl std::future::Future<Output = i32>) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(f);
    // Do not wait for blocked reader threads (stdin) or stray blocking tasks.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

/// Prints the completion script of a shell (clap_complete's generators for our command tree).
fn completion(shell: &str) -> i32 {
    use clap_complete::Shell;
    let shell = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        _ => Shell::Fish,
    };
    let mut cmd = Jmp::command();
    clap_complete::generate(shell, &mut cmd, "jmp", &mut std::io::stdout());
    0
}

fn version(output: Option<&str>) -> i32 {
    let version = env!("CARGO_PKG_VERSION");
    match output {
        Some("json") => println!(
            "{{\n    \"gitVersion\": \"{version}\",\n    \"implementation\": \"jumpstarter-rs\"\n}}"
        ),
        Some("yaml") => println!("gitVersion: {version}\nimplementation: jumpstarter-rs\n"),
        _ => {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "jmp".into());
            println!(
                "Jumpstarter v{version} from {exe} (jumpstarter-rs, protocol of Jumpstarter 0.9.0)"
            );
        }
    }
    0
}
