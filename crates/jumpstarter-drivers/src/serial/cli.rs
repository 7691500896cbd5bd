//! `j <serial> pipe|start-console` (upstream `PySerialClient`'s commands), plus the generic
//! `call` for the driver's other methods (`j serial call set_dtr true`).
//!
//! * `pipe`: the serial output to stdout (or a file); stdin to the serial port when stdin is
//!   not a terminal, or with `-i`. Status lines go to stderr with upstream's wording, so
//!   scripts reading them keep working. Ctrl-C stops it (`Stopped.`, exit 0).
//! * `start-console`: an interactive console on the terminal in raw mode; three Ctrl-B in a
//!   row leave it. The terminal is restored on every way out (the guard runs on return, error,
//!   panic, and on SIGINT/SIGTERM/SIGHUP, which are caught for that).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use jumpstarter_core::DriverClient;
use jumpstarter_family::{CliError, CliResult, generic, usage};
use jumpstarter_family::{HELP_TEMPLATE, group, help_for};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::SerialClient;

/// Where a usage error of `pipe` learns the command path (for `Usage: j serial pipe ...`).
const PATH_ARG: &str = "jmp-command-path";

/// How long `pipe --no-output` keeps the stream open after the end of its input, so what was
/// sent leaves this process before it exits (the exporter answers nothing to a serial line's
/// end of input); a stream the exporter ends sooner ends it sooner.
const SEND_GRACE: Duration = Duration::from_secs(1);

const CTRL_B: u8 = 0x02;

const PIPE_HELP: &str = "Pipe the serial port to stdout or a file, and stdin to the serial port";
/// Shown by `pipe --help` between the summary and the options.
const PIPE_DETAILS: &str =
    "Serial output goes to stdout, or to the file given with -o. When stdin is not a \
terminal (a pipe or a file), it is sent to the serial port too; once it ends, the output keeps \
coming until Ctrl+C. -i sends stdin even from a terminal, --no-input never sends it, and \
--no-output only sends stdin and exits when it ends.

Examples:
  j serial pipe -o console.log
  printf 'reboot\\n' | j serial pipe
  cat script.txt | j serial pipe --no-output";

jumpstarter_family::command_set! {
    /// The commands of `PySerialClient`.
    pub struct SerialCommands => command, run;
}

fn command(path: &str, node: &DriverClient) -> Command {
    let pipe = match node.methods_description().get("pipe") {
        Some(help) => Command::new("pipe").about(help.clone()),
        None => Command::new("pipe")
            .about(PIPE_HELP)
            .before_help(PIPE_DETAILS),
    };
    let mut cmd = group(path, node, "Serial port client")
        .subcommand(pipe_args(pipe, &format!("{path} pipe")))
        .subcommand(
            Command::new("start-console")
                .help_template(HELP_TEMPLATE)
                .about(help_for(
                    node,
                    "start-console",
                    "Start an interactive serial console (leave with Ctrl-B three times)",
                )),
        );
    if let Some(call) = generic::command(path, node)
        .get_subcommands()
        .find(|c| c.get_name() == "call")
    {
        cmd = cmd.subcommand(call.clone().about(help_for(
            node,
            "call",
            "Call a driver method (close, set_dtr, set_rts) and print its result",
        )));
    }
    cmd
}

fn flag(name: &'static str) -> Arg {
    Arg::new(name).long(name).action(ArgAction::SetTrue)
}

/// The options of `pipe`; `path` is its full command path (`j serial pipe`).
fn pipe_args(cmd: Command, path: &str) -> Command {
    cmd.help_template(
        "{usage-heading} {usage}\n\n{about-with-newline}\n{before-help}{all-args}{after-help}",
    )
    .arg(
        Arg::new("output")
            .short('o')
            .long("output")
            .value_name("PATH")
            .value_parser(value_parser!(PathBuf))
            .help("Write the serial output to this file instead of stdout"),
    )
    .arg(
        flag("input")
            .short('i')
            .help("Send stdin to the serial port even when it is a terminal"),
    )
    .arg(flag("no-input").help("Never send stdin to the serial port"))
    .arg(
        flag("append")
            .short('a')
            .help("Append to the output file instead of replacing it"),
    )
    .arg(
        flag("no-output")
            .help("Ignore the serial output: send stdin to the serial port and exit when it ends"),
    )
    .arg(
        Arg::new(PATH_ARG)
            .long(PATH_ARG)
            .hide(true)
            .default_value(path.to_owned()),
    )
}

async fn run(node: &DriverClient, m: &ArgMatches) -> CliResult {
    let serial = SerialClient::new(node.clone());
    match m.subcommand() {
        Some(("pipe", sub)) => pipe(&serial, sub).await,
        Some(("start-console", _)) => start_console(&serial).await,
        Some(("call", _)) => generic::run(node, m).await,
        _ => unreachable!("clap requires a sub-command"),
    }
}

/// The options of `pipe`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipeOptions {
    pub output: Option<PathBuf>,
    pub input: bool,
    pub no_input: bool,
    pub append: bool,
    pub no_output: bool,
}

/// What `pipe` will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipePlan {
    pub input: bool,
    /// The status line for stderr.
    pub status: String,
}

/// Checks the options (upstream's usage errors, in upstream's order) and decides the mode.
pub fn plan(o: &PipeOptions, stdin_is_tty: bool) -> Result<PipePlan, &'static str> {
    if o.input && o.no_input {
        return Err("Cannot use both --input and --no-input");
    }
    if o.no_output && o.output.is_some() {
        return Err("Cannot use both --no-output and --output");
    }
    if o.no_output && o.append {
        return Err("Cannot use both --no-output and --append");
    }
    if o.append && o.output.is_none() {
        return Err("--append requires --output");
    }
    let piped = !stdin_is_tty;
    let input = !o.no_input && (o.input || piped);
    if o.no_output && !input {
        return Err("--no-output requires stdin input (pipe stdin or use --input)");
    }
    let mode = if input && piped && !o.input {
        "auto-detected piped stdin"
    } else if input && o.input {
        "forced input mode"
    } else if input {
        "input enabled"
    } else {
        "read-only"
    };
    let status = match (&o.output, input) {
        _ if o.no_output => {
            format!("Fire-and-forget mode ({mode}): stdin→serial, no output (exits at EOF)")
        }
        (None, false) => format!("Reading from serial port ({mode})... (Ctrl+C to exit)"),
        (None, true) => {
            format!("Bidirectional mode ({mode}): stdin→serial, serial→stdout (Ctrl+C to exit)")
        }
        (Some(f), false) => format!(
            "Logging serial output to {} ({mode})... (Ctrl+C to exit)",
            f.display()
        ),
        (Some(f), true) => format!(
            "Bidirectional mode ({mode}) with logging to {}... (Ctrl+C to exit)",
            f.display()
        ),
    };
    Ok(PipePlan { input, status })
}

/// Prints a usage error the way the rest of `j` does (click's layout) and returns its code.
fn usage_error(path: &str, message: &str) -> CliResult {
    let err = pipe_args(Command::new("pipe"), path)
        .bin_name(path)
        .error(ErrorKind::ArgumentConflict, message);
    let r = usage::render(&err);
    eprint!("{}", r.text);
    Ok(r.code)
}

async fn pipe(serial: &SerialClient, m: &ArgMatches) -> CliResult {
    let opts = PipeOptions {
        output: m.get_one::<PathBuf>("output").cloned(),
        input: m.get_flag("input"),
        no_input: m.get_flag("no-input"),
        append: m.get_flag("append"),
        no_output: m.get_flag("no-output"),
    };
    let plan = match plan(&opts, std::io::stdin().is_terminal()) {
        Ok(p) => p,
        Err(msg) => {
            let path = m
                .get_one::<String>(PATH_ARG)
                .map_or("j pipe", String::as_str);
            return usage_error(path, msg);
        }
    };
    eprintln!("{}", plan.status);
    let out: Option<(Box<dyn AsyncWrite + Unpin>, bool)> = match &opts.output {
        _ if opts.no_output => None,
        None => Some((Box::new(jumpstarter_core::out::async_stdout()), true)),
        Some(path) => {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(opts.append)
                .truncate(!opts.append)
                .open(path)
                .await
                .map_err(|e| CliError::runtime(format!("cannot open {}: {e}", path.display())))?;
            Some((Box::new(file), false))
        }
    };
    tokio::select! {
        r = pipe_stream(serial, plan.input, out) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nStopped.");
            Ok(0)
        }
    }
}

async fn pipe_stream(
    serial: &SerialClient,
    input: bool,
    out: Option<(Box<dyn AsyncWrite + Unpin>, bool)>,
) -> CliResult {
    let stream = serial.connect().await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let Some((mut out, is_stdout)) = out else {
        // Fire-and-forget: send stdin, end our side, give it time to leave, exit.
        let (read, sent) = send_stdin(&mut wr).await;
        let _ = tokio::time::timeout(SEND_GRACE, async {
            let mut sink = [0u8; 4096];
            while let Ok(n) = rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        if read != sent {
            return Err(CliError::runtime(format!(
                "stdin forwarding incomplete: read {read} bytes but sent {sent} bytes"
            )));
        }
        return Ok(0);
    };
    let upload = async {
        if input {
            send_stdin(&mut wr).await;
        }
        std::future::pending::<()>().await
    };
    let download = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) => {
                    eprintln!("\nSerial connection closed normally (end of stream).");
                    return Ok(0);
                }
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!("serial stream failed: {e}");
                    eprintln!(
                        "\nSerial connection lost (broken resource). The connection may have been interrupted."
                    );
                    return Ok(0);
                }
            };
            let written = async {
                out.write_all(&buf[..n]).await?;
                out.flush().await
            };
            if let Err(e) = written.await {
                // A closed stdout (`j serial pipe | head`) ends the command quietly.
                if is_stdout && e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(0);
                }
                return Err(CliError::runtime(format!(
                    "cannot write the serial output: {e}"
                )));
            }
        }
    };
    tokio::select! {
        r = download => r,
        _ = upload => unreachable!("the upload never completes"),
    }
}

/// Copies stdin to the serial port until stdin ends, then ends our side of the stream.
/// Returns the bytes read and sent.
async fn send_stdin<W: AsyncWrite + Unpin>(wr: &mut W) -> (u64, u64) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let (mut read, mut sent) = (0u64, 0u64);
    loop {
        let n = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        read += n as u64;
        if wr.write_all(&buf[..n]).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = wr.shutdown().await;
    (read, sent)
}

/// Counts consecutive Ctrl-B bytes typed in the console.
#[derive(Debug, Default)]
pub struct CtrlB {
    count: u8,
}

impl CtrlB {
    /// How many bytes of `typed` go to the serial port, and whether the console ends (the
    /// third Ctrl-B in a row, which is not sent; earlier ones are).
    pub fn feed(&mut self, typed: &[u8]) -> (usize, bool) {
        for (i, &b) in typed.iter().enumerate() {
            if b == CTRL_B {
                self.count += 1;
                if self.count == 3 {
                    return (i, true);
                }
            } else {
                self.count = 0;
            }
        }
        (typed.len(), false)
    }
}

/// The terminal's settings before raw mode; dropping this restores them.
struct RawMode {
    stdin: std::io::Stdin,
    saved: Termios,
}

impl RawMode {
    fn enter() -> nix::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        Ok(RawMode { stdin, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Err(e) = termios::tcsetattr(&self.stdin, SetArg::TCSANOW, &self.saved) {
            tracing::debug!("cannot restore the terminal: {e}");
        }
    }
}

/// How a console session ended.
enum ConsoleEnd {
    /// Ctrl-B three times, or the terminal went away.
    Left,
    StreamEnded,
    StreamLost(String),
    OutputFailed(String),
    Signal(i32),
}

async fn start_console(serial: &SerialClient) -> CliResult {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::runtime(
            "start-console needs a terminal, but stdin is not a TTY; \
             use `pipe` to connect the serial port to pipes or files",
        ));
    }
    let stream = serial.connect().await?;
    // Signals are caught before the terminal goes raw, so none can leave it raw.
    let signals = watch_signals();
    let end = {
        let _raw = RawMode::enter()
            .map_err(|e| CliError::runtime(format!("cannot set up the terminal: {e}")))?;
        console_loop(stream, signals).await
    };
    match end {
        ConsoleEnd::Left => Ok(0),
        ConsoleEnd::StreamEnded => {
            eprintln!("\nSerial connection closed normally (end of stream).");
            Ok(0)
        }
        ConsoleEnd::StreamLost(e) => {
            tracing::debug!("serial stream failed: {e}");
            eprintln!(
                "\nSerial connection lost (broken resource). The connection may have been interrupted."
            );
            Ok(1)
        }
        ConsoleEnd::OutputFailed(e) => Err(CliError::runtime(format!(
            "cannot write to the terminal: {e}"
        ))),
        ConsoleEnd::Signal(n) => Ok(128 + n),
    }
}

type Signals = Vec<(tokio::signal::unix::Signal, i32)>;

/// SIGINT, SIGTERM and SIGHUP, with their numbers.
fn watch_signals() -> Signals {
    use tokio::signal::unix::{SignalKind, signal};
    let mut signals = Vec::new();
    for (kind, n) in [
        (SignalKind::interrupt(), 2),
        (SignalKind::terminate(), 15),
        (SignalKind::hangup(), 1),
    ] {
        match signal(kind) {
            Ok(s) => signals.push((s, n)),
            Err(e) => tracing::debug!("cannot watch signal {n}: {e}"),
        }
    }
    signals
}

async fn console_loop<S: AsyncRead + AsyncWrite>(stream: S, mut signals: Signals) -> ConsoleEnd {
    let mut stdout = jumpstarter_core::out::async_stdout();
    // In raw mode the terminal does no CR/LF translation: end lines ourselves.
    let banner = "\r\nStarting serial port console ... exit with CTRL+B x 3 times\r\n\r\n";
    if let Err(e) = async {
        stdout.write_all(banner.as_bytes()).await?;
        stdout.flush().await
    }
    .await
    {
        return ConsoleEnd::OutputFailed(e.to_string());
    }
    let signalled = async move {
        if signals.is_empty() {
            return std::future::pending().await;
        }
        let waits = signals.iter_mut().map(|(s, n)| {
            let n = *n;
            Box::pin(async move {
                s.recv().await;
                n
            })
        });
        let (n, _, _) = futures::future::select_all(waits).await;
        n
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let typed = async {
        let mut stdin = tokio::io::stdin();
        let mut ctrl_b = CtrlB::default();
        let mut buf = [0u8; 1024];
        loop {
            let n = match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => return ConsoleEnd::Left,
                Ok(n) => n,
            };
            let (send, leave) = ctrl_b.feed(&buf[..n]);
            if send > 0 {
                let sent = async {
                    wr.write_all(&buf[..send]).await?;
                    wr.flush().await
                };
                if let Err(e) = sent.await {
                    return ConsoleEnd::StreamLost(e.to_string());
                }
            }
            if leave {
                return ConsoleEnd::Left;
            }
        }
    };
    let shown = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) => return ConsoleEnd::StreamEnded,
                Ok(n) => n,
                Err(e) => return ConsoleEnd::StreamLost(e.to_string()),
            };
            let written = async {
                stdout.write_all(&buf[..n]).await?;
                stdout.flush().await
            };
            if let Err(e) = written.await {
                return ConsoleEnd::OutputFailed(e.to_string());
            }
        }
    };
    tokio::select! {
        end = typed => end,
        end = shown => end,
        n = signalled => ConsoleEnd::Signal(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(f: impl FnOnce(&mut PipeOptions)) -> PipeOptions {
        let mut o = PipeOptions::default();
        f(&mut o);
        o
    }

    #[test]
    fn pipe_modes_and_status_lines() {
        let cases = [
            (
                opts(|_| {}),
                true,
                false,
                "Reading from serial port (read-only)... (Ctrl+C to exit)",
            ),
            (
                opts(|_| {}),
                false,
                true,
                "Bidirectional mode (auto-detected piped stdin): stdin→serial, serial→stdout (Ctrl+C to exit)",
            ),
            (
                opts(|o| o.input = true),
                true,
                true,
                "Bidirectional mode (forced input mode): stdin→serial, serial→stdout (Ctrl+C to exit)",
            ),
            (
                opts(|o| o.no_input = true),
                false,
                false,
                "Reading from serial port (read-only)... (Ctrl+C to exit)",
            ),
            (
                opts(|o| o.output = Some("f.log".into())),
                true,
                false,
                "Logging serial output to f.log (read-only)... (Ctrl+C to exit)",
            ),
            (
                opts(|o| {
                    o.output = Some("f.log".into());
                    o.append = true;
                }),
                false,
                true,
                "Bidirectional mode (auto-detected piped stdin) with logging to f.log... (Ctrl+C to exit)",
            ),
            (
                opts(|o| {
                    o.no_output = true;
                    o.input = true;
                }),
                true,
                true,
                "Fire-and-forget mode (forced input mode): stdin→serial, no output (exits at EOF)",
            ),
        ];
        for (o, tty, input, status) in cases {
            let p = plan(&o, tty).unwrap();
            assert_eq!((p.input, p.status.as_str()), (input, status), "{o:?}");
        }
    }

    #[test]
    fn pipe_conflicts_in_upstreams_order() {
        let both = opts(|o| {
            o.input = true;
            o.no_input = true;
            o.no_output = true;
            o.append = true;
        });
        assert_eq!(
            plan(&both, false).unwrap_err(),
            "Cannot use both --input and --no-input"
        );
        let no_output_tty = opts(|o| o.no_output = true);
        assert_eq!(
            plan(&no_output_tty, true).unwrap_err(),
            "--no-output requires stdin input (pipe stdin or use --input)"
        );
        assert!(plan(&no_output_tty, false).is_ok());
    }

    #[test]
    fn three_ctrl_b_in_a_row_leave_the_console() {
        let mut c = CtrlB::default();
        assert_eq!(c.feed(b"ab\x02\x02"), (4, false));
        // Another key resets the count; the earlier Ctrl-Bs were sent.
        assert_eq!(c.feed(b"x\x02"), (2, false));
        assert_eq!(c.feed(b"\x02"), (1, false));
        // The third is not sent, nor anything after it.
        assert_eq!(c.feed(b"\x02tail"), (0, true));
        let mut c = CtrlB::default();
        assert_eq!(c.feed(b"ls\r\x02\x02\x02rest"), (5, true));
        assert_eq!(CtrlB::default().feed(b""), (0, false));
    }
}
