//! `Shell`: runs a configured method's script in its own process group and streams its output.

use std::collections::BTreeMap;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jumpstarter_core::interface::Items;
use jumpstarter_core::logs::Level;
use jumpstarter_core::{BuildContext, ConfigError, DriverError, Logger, Value};
use jumpstarter_process::{Group, GroupChild, SpawnError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::config::{Seconds, ShellConfig};
use super::env::{EnvEntryError, EnvPolicy, parse_env};
use super::interface::ShellInterface;
use super::{ALLOWED_ENV_KEY, SHELL_CLIENT, TIMEOUT_CODE};
use crate::py::{py_list_repr, py_str_repr, py_tuple_repr, py_type_name, py_value_repr};
use crate::text::Utf8Text;

/// How long a process group gets between SIGTERM and SIGKILL (`JMP_KILL_GRACE`).
fn kill_grace() -> Duration {
    jumpstarter_core::limits::global().kill_grace
}
/// Items buffered between the script and a slow client.
const CHANNEL_DEPTH: usize = 32;
const READ_CHUNK: usize = 16 * 1024;

/// `Shell`: runs configured scripts. See the module docs.
pub struct Shell {
    config: ShellConfig,
    env_policy: EnvPolicy,
    logger: Logger,
}

impl Shell {
    /// A Shell driver; an `allowed_env` entry that is neither a name nor a `PREFIX*` is an
    /// error.
    pub fn new(config: ShellConfig, logger: Logger) -> Result<Self, EnvEntryError> {
        let env_policy = EnvPolicy::new(config.allowed_env.as_deref())?;
        Ok(Shell {
            config,
            env_policy,
            logger,
        })
    }

    pub fn config(&self) -> &ShellConfig {
        &self.config
    }

    fn names(&self) -> Vec<String> {
        self.config.methods.keys().cloned().collect()
    }

    /// Validates a `call_method` call (in upstream's order: method, env, script, args, cwd)
    /// and starts the script; the returned stream carries its output.
    fn start(
        &self,
        method: Value,
        env: Value,
        rest: Vec<Value>,
    ) -> Result<Items<Value>, DriverError> {
        let method = match method {
            Value::String(s) => s,
            other => py_value_repr(&other),
        };
        self.logger.info(format!(
            "calling {method} with args: {} and kwargs as env: {}",
            py_tuple_repr(&rest),
            env_names_repr(Some(&env))
        ));
        let Some(spec) = self.config.methods.get(&method) else {
            return Err(DriverError::invalid(format!(
                "Method '{method}' not found in available methods: {}",
                py_list_repr(&self.names())
            )));
        };
        let env = parse_env(Some(&env), &self.env_policy)?;
        let script = spec.script();
        let timeout = spec.timeout.unwrap_or(self.config.timeout);
        self.logger
            .debug(format!("running script: {script} with timeout: {timeout}"));
        if script.trim().is_empty() {
            return Err(DriverError::invalid(
                "Shell script must be a non-empty string",
            ));
        }
        let mut script_args = Vec::with_capacity(rest.len());
        for a in rest {
            match a {
                Value::String(s) => script_args.push(s),
                other => {
                    return Err(DriverError::invalid(format!(
                        "All arguments must be strings, got <class '{}'>",
                        py_type_name(&other)
                    )));
                }
            }
        }
        if let Some(cwd) = &self.config.cwd
            && !cwd.is_empty()
            && !std::path::Path::new(cwd).is_dir()
        {
            return Err(DriverError::invalid(format!(
                "Working directory does not exist: {cwd}"
            )));
        }

        let mut argv: Vec<String> = self.config.shell.clone();
        argv.push(script.to_owned());
        argv.push(method.clone());
        argv.extend(script_args);
        let Some((program, program_args)) = argv.split_first() else {
            return Err(DriverError::other("empty command line"));
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(program_args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = self.config.cwd.as_deref().filter(|c| !c.is_empty()) {
            cmd.current_dir(cwd);
        }
        let child = GroupChild::spawn(&mut cmd, Group::Own, None).map_err(|e| match e {
            SpawnError::Start(e) => DriverError::io(format!("cannot run {program}"), e),
            SpawnError::Vanished => {
                DriverError::other(format!("{program} exited before it started"))
            }
        })?;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let run = Run {
            method,
            command: py_list_repr(&argv),
            timeout,
            logger: self.logger.clone(),
        };
        tokio::spawn(pump(child, tx, run));
        let items = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(items.boxed())
    }
}

#[jumpstarter_core::async_trait]
impl ShellInterface for Shell {
    async fn get_methods(&self) -> Result<Vec<String>, DriverError> {
        let names = self.names();
        self.logger.debug(format!(
            "get_methods called, returning methods: {}",
            py_list_repr(&names)
        ));
        Ok(names)
    }

    fn call_method(
        self: Arc<Self>,
        method: Value,
        env: Value,
        args: Vec<Value>,
    ) -> Result<Items<Value>, DriverError> {
        self.start(method, env, args)
    }
}

jumpstarter_core::export! {
    impl Shell {
        client = SHELL_CLIENT;
        interfaces = [ShellInterface];

        fn methods_description(&self) -> BTreeMap<String, String> {
            self.config
                .methods
                .iter()
                .filter_map(|(name, m)| Some((name.clone(), m.description.clone()?)))
                .collect()
        }
    }
}

/// Builds a Shell driver from its `config:`.
pub(crate) fn build(ctx: &BuildContext<'_>) -> Result<Arc<Shell>, ConfigError> {
    let config: ShellConfig = ctx.config.parse()?;
    for (name, m) in &config.methods {
        if m.command.is_none() {
            tracing::warn!(
                "{}: method `{name}` has no `command`; it runs `echo Hello` (as upstream)",
                ctx.type_name
            );
        }
    }
    let shell = Shell::new(config, ctx.logger.clone())
        .map_err(|e| ctx.config.error(Some(ALLOWED_ENV_KEY), e.to_string()))?;
    Ok(Arc::new(shell))
}

/// What one call's pump needs besides the process.
struct Run {
    method: String,
    /// The command line as Python prints a list (for the timeout message).
    command: String,
    timeout: Seconds,
    logger: Logger,
}

enum Outcome {
    Exited(io::Result<ExitStatus>),
    TimedOut,
    ClientGone,
}

async fn read_some<R: AsyncRead + Unpin>(r: &mut Option<R>, buf: &mut [u8]) -> io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

fn chunk(stdout: String, stderr: String) -> Value {
    Value::Array(vec![
        Value::String(stdout),
        Value::String(stderr),
        Value::Null,
    ])
}

/// Streams one script's output to `tx` until it ends, times out, or the receiver goes away.
///
/// `child` sends SIGKILL to its process group if the pump ends without finishing (its task
/// aborted by a runtime shutdown, or a panic), so no script outlives its call.
async fn pump(mut child: GroupChild, tx: mpsc::Sender<Result<Value, DriverError>>, run: Run) {
    let mut out = child.child().stdout.take();
    let mut err = child.child().stderr.take();
    let mut out_text = Utf8Text::default();
    let mut err_text = Utf8Text::default();
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; READ_CHUNK];
    let mut status: Option<io::Result<ExitStatus>> = None;
    let deadline = tokio::time::sleep(run.timeout.duration());
    tokio::pin!(deadline);
    let debug = run.logger.enabled(Level::Debug);

    let outcome = loop {
        if out.is_none()
            && err.is_none()
            && let Some(s) = status.take()
        {
            break Outcome::Exited(s);
        }
        let item = tokio::select! {
            _ = tx.closed() => break Outcome::ClientGone,
            _ = &mut deadline => break Outcome::TimedOut,
            r = read_some(&mut out, &mut out_buf) => {
                let text = match r {
                    Ok(n) if n > 0 => out_text.push(&out_buf[..n]),
                    _ => {
                        out = None;
                        out_text.finish()
                    }
                };
                if debug && !text.is_empty() {
                    run.logger.debug(format!("{} stdout:\n{}", run.method, text.trim_end()));
                }
                chunk(text, String::new())
            }
            r = read_some(&mut err, &mut err_buf) => {
                let text = match r {
                    Ok(n) if n > 0 => err_text.push(&err_buf[..n]),
                    _ => {
                        err = None;
                        err_text.finish()
                    }
                };
                if debug && !text.is_empty() {
                    run.logger.debug(format!("{} stderr:\n{}", run.method, text.trim_end()));
                }
                chunk(String::new(), text)
            }
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                continue;
            }
        };
        let empty = item
            .as_array()
            .is_some_and(|a| a.iter().take(2).all(|t| t.as_str() == Some("")));
        if !empty && tx.send(Ok(item)).await.is_err() {
            break Outcome::ClientGone;
        }
    };

    match outcome {
        Outcome::Exited(Ok(status)) => {
            child.disarm();
            let code = jumpstarter_process::exit::returncode(status);
            if code != 0 {
                run.logger
                    .info(format!("{} return code: {code}", run.method));
            }
            let last = Value::Array(vec![
                Value::String(String::new()),
                Value::String(String::new()),
                Value::from(code),
            ]);
            let _ = tx.send(Ok(last)).await;
        }
        Outcome::Exited(Err(e)) => {
            terminate(&mut child, &run).await;
            let _ = tx
                .send(Err(DriverError::io(
                    format!("cannot wait for {}", run.method),
                    e,
                )))
                .await;
        }
        Outcome::TimedOut => {
            let detail = format!(
                "Command '{}' timed out after {} seconds",
                run.command, run.timeout
            );
            run.logger.error(format!(
                "Timeout expired while running {}: {detail}",
                run.method
            ));
            terminate(&mut child, &run).await;
            let last = Value::Array(vec![
                Value::String(String::new()),
                Value::String(format!(
                    "\nTimeout expired while running {}: {detail}\n",
                    run.method
                )),
                Value::from(TIMEOUT_CODE),
            ]);
            let _ = tx.send(Ok(last)).await;
        }
        Outcome::ClientGone => {
            run.logger.info(format!(
                "client went away while running {}, stopping it",
                run.method
            ));
            terminate(&mut child, &run).await;
        }
    }
}

/// SIGTERM to the group; SIGKILL if anything of it is still running after the kill grace
/// (`JMP_KILL_GRACE`). Reaps the script itself.
async fn terminate(child: &mut GroupChild, run: &Run) {
    if !child.terminate(kill_grace()).await {
        run.logger.warning(format!(
            "SIGTERM failed to terminate {} (process group {}), sending SIGKILL",
            run.method,
            child.pid()
        ));
        // SIGKILL is delivered asynchronously: wait (boundedly) until the group is really gone.
        child.kill(kill_grace()).await;
    }
    child.disarm();
}

/// The env of a call for the log: names only, values hidden.
fn env_names_repr(env: Option<&Value>) -> String {
    match env {
        Some(Value::Object(m)) => {
            let inner: Vec<String> = m
                .keys()
                .map(|k| format!("{}: '***'", py_str_repr(k)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Some(other) => py_value_repr(other),
        None => "{}".into(),
    }
}
