//! `j` commands for storage muxes and flashers.
//!
//! * StorageMux: `host`, `dut`, `off`, `write-local-file FILE` (registered here; upstream
//!   0.9.0 loses it to a decorator bug), `read-local-file FILE`.
//! * StorageMuxFlasher: the above plus `flash FILE` and `dump FILE` (with upstream's
//!   `-t/--target` and `--target`, which it refuses: it has one medium).
//! * Flasher (both upstream labels): `flash [FILE] [-t NAME:FILE]...`, `dump FILE [--target T]`.
//!
//! `--compression gzip|xz|bz2|zstd` says what format the local file is in. Every transfer shows
//! a progress bar (bytes, rate, ETA) on a terminal and nothing otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use jumpstarter_core::{DriverClient, Encoding};
use jumpstarter_family::async_trait;
use jumpstarter_family::{CliError, CliResult, Commands, Node, group, help_for};

use super::{FlasherClient, Source, StorageMuxClient, Transfer};

/// Which storage interface a node has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Mux,
    MuxFlasher,
    Flasher,
}

/// The commands of one storage flavour.
pub struct StorageCommands(pub Flavour);

#[async_trait(?Send)]
impl Commands for StorageCommands {
    fn command(&self, node: &Node<'_>) -> Command {
        command(node.path, node.client, self.0)
    }

    async fn run(&self, node: &Node<'_>, m: &ArgMatches) -> CliResult {
        run(node.client, m, self.0).await
    }
}

fn compression_arg() -> Arg {
    Arg::new("compression")
        .long("compression")
        .value_parser(["gzip", "xz", "bz2", "zstd"])
        .ignore_case(true)
        .help("Format of the local file")
}

fn file_arg() -> Arg {
    Arg::new("file")
        .value_name("FILE")
        .required(true)
        .value_parser(value_parser!(PathBuf))
}

fn command(path: &str, node: &DriverClient, flavour: Flavour) -> Command {
    let builtin = match flavour {
        Flavour::Mux => "Storage operations",
        Flavour::MuxFlasher | Flavour::Flasher => "Generic flasher interface",
    };
    let mut cmd = group(path, node, builtin);
    if flavour != Flavour::Mux {
        // Upstream's flasher commands, which the storage-mux flasher inherits: `-t` flashes
        // images to targets by name.
        let flash = Command::new("flash")
            .about(help_for(node, "flash", "Flash an image to the DUT"))
            .arg(
                Arg::new("file")
                    .value_name("FILE")
                    .num_args(0..)
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("target")
                    .short('t')
                    .long("target")
                    .value_name("NAME:FILE")
                    .action(ArgAction::Append)
                    .help("name:file"),
            )
            .arg(compression_arg());
        let dump = Command::new("dump")
            .about(help_for(node, "dump", "Dump image from DUT to file"))
            .arg(file_arg())
            .arg(Arg::new("target").long("target").value_name("TARGET"))
            .arg(compression_arg());
        cmd = cmd.subcommand(flash).subcommand(dump);
    }
    if flavour != Flavour::Flasher {
        cmd = cmd
            .subcommand(Command::new("host").about(help_for(
                node,
                "host",
                "Connect storage to host",
            )))
            .subcommand(Command::new("dut").about(help_for(node, "dut", "Connect storage to dut")))
            .subcommand(Command::new("off").about(help_for(node, "off", "Disconnect storage")))
            .subcommand(
                Command::new("write-local-file")
                    .about(help_for(
                        node,
                        "write-local-file",
                        "Write a local file to the storage device",
                    ))
                    .arg(file_arg())
                    .arg(compression_arg()),
            )
            .subcommand(
                Command::new("read-local-file")
                    .about(help_for(
                        node,
                        "read-local-file",
                        "Read the storage device into a local file",
                    ))
                    .arg(file_arg())
                    .arg(compression_arg()),
            );
    }
    cmd
}

async fn run(node: &DriverClient, m: &ArgMatches, flavour: Flavour) -> CliResult {
    let mux = StorageMuxClient::new(node.clone());
    let flasher = FlasherClient::new(node.clone());
    match m.subcommand() {
        Some(("host", _)) => mux.host().await?,
        Some(("dut", _)) => mux.dut().await?,
        Some(("off", _)) => mux.off().await?,
        Some(("write-local-file", sub)) => {
            let file = sub.get_one::<PathBuf>("file").cloned().unwrap_or_default();
            let (opts, bar) = transfer(sub, Some(&file));
            let r = mux.write(&Source::Local(file), &opts).await;
            finish(bar, r.is_ok());
            r?;
        }
        Some(("read-local-file", sub)) => {
            let file = sub.get_one::<PathBuf>("file").cloned().unwrap_or_default();
            let (opts, bar) = transfer(sub, None);
            let r = mux.read(&file, &opts).await;
            finish(bar, r.is_ok());
            r?;
        }
        Some(("flash", sub)) => {
            let files: Vec<String> = sub
                .get_many::<String>("file")
                .map(|v| v.cloned().collect())
                .unwrap_or_default();
            let specs: Vec<String> = sub
                .get_many::<String>("target")
                .map(|v| v.cloned().collect())
                .unwrap_or_default();
            if !specs.is_empty() {
                let mut targets = Vec::new();
                for spec in &specs {
                    let Some(target) = spec.split_once(':') else {
                        return Err(CliError::runtime(format!(
                            "Invalid target spec '{spec}', expected name:file"
                        )));
                    };
                    targets.push(target);
                }
                if flavour == Flavour::MuxFlasher {
                    return Err(no_targets(targets[0].0));
                }
                for (name, file) in targets {
                    let source = Source::parse(file);
                    let (opts, bar) = transfer(sub, local_path(&source));
                    let r = flasher.flash(&source, Some(name), &opts).await;
                    finish(bar, r.is_ok());
                    r?;
                }
                return Ok(0);
            }
            let Some(first) = files.first() else {
                return Err(CliError::runtime(
                    "FILE argument is required unless --target/-t is used",
                ));
            };
            let source = Source::parse(first);
            let (opts, bar) = transfer(sub, local_path(&source));
            let r = match flavour {
                Flavour::MuxFlasher => mux.flash(&source, &opts).await,
                _ => flasher.flash(&source, None, &opts).await.map(drop),
            };
            finish(bar, r.is_ok());
            r?;
        }
        Some(("dump", sub)) => {
            let file = sub.get_one::<PathBuf>("file").cloned().unwrap_or_default();
            let target = sub.get_one::<String>("target").map(String::as_str);
            if flavour == Flavour::MuxFlasher
                && let Some(target) = target
            {
                return Err(no_targets(target));
            }
            let (opts, bar) = transfer(sub, None);
            let r = match flavour {
                Flavour::MuxFlasher => mux.dump(&file, &opts).await,
                _ => flasher.dump(&file, target, &opts).await.map(drop),
            };
            finish(bar, r.is_ok());
            r?;
        }
        _ => unreachable!("clap requires a sub-command"),
    }
    Ok(0)
}

/// A storage-mux flasher has one medium: upstream's client refuses a target by name.
fn no_targets(target: &str) -> CliError {
    CliError::runtime(format!(
        "target is not supported for StorageMuxFlasherClient, {target} provided"
    ))
}

fn local_path(source: &Source) -> Option<&Path> {
    match source {
        Source::Local(p) => Some(p),
        Source::Url(_) => None,
    }
}

/// The transfer options of a command, and its progress bar (on a terminal only).
fn transfer(m: &ArgMatches, upload: Option<&Path>) -> (Transfer, Option<indicatif::ProgressBar>) {
    let encoding = m
        .get_one::<String>("compression")
        .and_then(|c| Encoding::parse(c));
    if encoding.is_none()
        && let Some(path) = upload
        && let Some(guess) = sniff(path)
    {
        eprintln!(
            "note: {} looks like {guess} data; it is sent as is. Pass --compression {guess} to decompress it on the way.",
            path.display()
        );
    }
    let meta = upload.map(std::fs::metadata);
    let total = meta
        .as_ref()
        .and_then(|m| m.as_ref().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len());
    // A local file that is not there fails the command at once: no bar to draw.
    let missing = meta.as_ref().is_some_and(|m| m.is_err());
    let bar = if missing { None } else { progress_bar(total) };
    let progress = bar
        .clone()
        .map(|b| Arc::new(move |n: u64| b.inc(n)) as jumpstarter_core::client::Progress);
    (Transfer { encoding, progress }, bar)
}

/// The encoding a local file's name or first bytes suggest. Only a regular file is read
/// ahead: the bytes of a pipe, FIFO or terminal (`/dev/stdin`) can be read once only, and the
/// upload opens the source again.
fn sniff(path: &Path) -> Option<Encoding> {
    use std::io::Read;
    let by_name = || {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(Encoding::from_file_name)
    };
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return by_name();
    }
    let mut head = [0u8; 8];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    Encoding::from_magic(&head[..n]).or_else(by_name)
}

fn progress_bar(total: Option<u64>) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || std::env::var("TERM").is_ok_and(|t| t == "dumb") {
        return None;
    }
    // Without a known size (dumps, pipes, URLs) there is no bar to fill: bytes and rate only.
    let (bar, template) = match total {
        Some(t) if t > 0 => (
            indicatif::ProgressBar::new(t),
            "transfer {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} elapsed {elapsed} remaining {eta}",
        ),
        _ => (
            indicatif::ProgressBar::new_spinner(),
            "transfer {spinner} {bytes} {binary_bytes_per_sec} elapsed {elapsed}",
        ),
    };
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    Some(bar)
}

fn finish(bar: Option<indicatif::ProgressBar>, ok: bool) {
    if let Some(b) = bar {
        if ok {
            b.finish();
        } else {
            b.abandon();
        }
    }
}
