//! Shell: `jumpstarter_driver_shell.driver.Shell` (configured scripts run on the exporter host)
//! and `ShellClient`.
//!
//! Config (as upstream): `methods` maps a method name to a script, or to a mapping with
//! `command` (a mapping without one runs `echo Hello`, as upstream), `description` (reported
//! in `methods_description`) and `timeout`; `shell` (argv prefix, default `["bash", "-c"]`),
//! `timeout` (seconds, default 300) and `cwd`. Unknown keys are config errors. One key of
//! ours: `allowed_env` (see below).
//!
//! ## What environment a client may set
//!
//! The client's `env` is checked name by name, and one refused name refuses the call
//! (ValueError, nothing runs):
//! 1. the name must be an identifier (upstream's check and text);
//! 2. upstream's deny-list ([`BLOCKED_ENV_VARS`], [`BLOCKED_ENV_PREFIXES`]) is refused with
//!    upstream's text, unless `allowed_env` names it exactly;
//! 3. then an allow-list decides. Without `allowed_env`, a name is allowed when it is made of
//!    ASCII letters, digits and `_`, starts with a letter, and is not one the shell, the
//!    dynamic loader, libc or a common interpreter/tool reads ([`RESERVED_ENV_VARS`],
//!    [`RESERVED_ENV_PREFIXES`]: `SHELLOPTS`, `PS4`, `ENV`, `IFS`, `GLIBC_TUNABLES`,
//!    `PERL5OPT`, `GIT_*`...), so `FOO`, `ENV_VAR` or `version` work as with upstream. With
//!    `allowed_env: [NAME, PREFIX*, ...]` exactly what it lists is allowed: a `NAME` entry
//!    allows that name whatever it is (the owner's explicit choice), a `PREFIX*` entry the
//!    names starting with `PREFIX` except the reserved ones (`*` alone: any identifier not
//!    reserved); `allowed_env: []` refuses every name. Upstream accepts every identifier off
//!    its short deny-list, which lets `SHELLOPTS=xtrace PS4='$(cmd)'` run `cmd`.
//!
//! Wire surface (drivers notes §2.8):
//!
//! | method | kind | args | result |
//! |---|---|---|---|
//! | `get_methods` | unary | — | the configured method names |
//! | `call_method` | streaming | `method`, `env` (str → str), then any number of str args | `[stdout, stderr, returncode]` items |
//!
//! A call runs `shell + [script, method, *args]` (so `$0` is the method name and `$1...` the
//! args) in a new process group, with the exporter's environment plus the client's `env`.
//! Output is streamed as it arrives: each item carries one chunk of stdout or stderr text
//! (UTF-8; invalid bytes become U+FFFD, multi-byte characters are never split between items)
//! with a null return code, and the last item is `["", "", code]` (`-N` when the script died
//! of signal N, as Python reports it). When the method's timeout expires the whole process
//! group gets SIGTERM, then SIGKILL after 5 s (`JMP_KILL_GRACE`), and the last item is upstream's
//! `["", "\nTimeout expired while running <method>: Command '[...]' timed out after <t>
//! seconds\n", 199]`. The timeout covers the whole call: a background process that keeps the
//! output pipes open counts as still running.
//!
//! Departures from upstream 0.9.0, on purpose:
//! * a client that goes away mid-call (cancelled RPC, dropped connection, ended session) gets
//!   its process group terminated the same way; upstream leaves the script running;
//! * the script's stdin is `/dev/null` (upstream's inherits the exporter's stdin);
//! * after SIGTERM we wait for the whole group (not only the script) before SIGKILL;
//! * the `calling ...` log line shows env names but not their values;
//! * `get_methods` lists the names in config order, as upstream does.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use jumpstarter_core::driver::ValueStream;
use jumpstarter_core::logs::Level;
use jumpstarter_core::{
    Args, CallContext, ClientError, Driver, DriverClient, DriverError, Logger, Method, Param,
    Registry, Value,
};
use jumpstarter_process::{Group, GroupChild, SpawnError};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Client class of the Shell driver.
pub const SHELL_CLIENT: &str = "jumpstarter_driver_shell.client.ShellClient";
pub const SHELL: &str = "jumpstarter_driver_shell.driver.Shell";

/// The return code of a call whose method ran out of time (upstream's).
pub const TIMEOUT_CODE: i32 = 199;

/// Environment variables a client may not set (they can hijack the script), as upstream.
pub const BLOCKED_ENV_VARS: [&str; 7] = [
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "PATH",
    "PYTHONPATH",
    "BASH_ENV",
    "KUBECONFIG",
    "HOME",
];
/// Name prefixes a client may not set, as upstream.
pub const BLOCKED_ENV_PREFIXES: [&str; 2] = ["LD_", "BASH_FUNC_"];

/// Names a client may not set without `allowed_env` listing them: what shells (sh, dash,
/// bash, zsh, ksh), the dynamic loader, libc and common interpreters/tools read from the
/// environment to decide what to run, load or trace.
pub const RESERVED_ENV_VARS: &[&str] = &[
    // POSIX sh, dash, bash, ksh
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS0",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    "EXECIGNORE",
    "FIGNORE",
    "PROMPT_COMMAND",
    "PROMPT_DIRTRIM",
    "HOSTFILE",
    "INPUTRC",
    "MAIL",
    "MAILCHECK",
    "MAILPATH",
    "OPTARG",
    "OPTERR",
    "OPTIND",
    "POSIXLY_CORRECT",
    "SHELL",
    "SHLVL",
    "TMOUT",
    "TIMEFORMAT",
    "FUNCNEST",
    "FCEDIT",
    "IGNOREEOF",
    "PWD",
    "OLDPWD",
    "PPID",
    "UID",
    "EUID",
    "GROUPS",
    "HOSTNAME",
    "HOSTTYPE",
    "MACHTYPE",
    "OSTYPE",
    "LINENO",
    "RANDOM",
    "SRANDOM",
    "SECONDS",
    "EPOCHREALTIME",
    "EPOCHSECONDS",
    "COLUMNS",
    "LINES",
    "TERM",
    "TERMINFO",
    "TERMINFO_DIRS",
    "TERMCAP",
    "EMACS",
    "INSIDE_EMACS",
    "CHILD_MAX",
    "COPROC",
    "DIRSTACK",
    "FUNCNAME",
    "PIPESTATUS",
    "REPLY",
    "TEXTDOMAIN",
    "TEXTDOMAINDIR",
    "ZDOTDIR",
    "FPATH",
    "KSH_VERSION",
    "NULLCMD",
    "READNULLCMD",
    "STTY",
    // zsh's lowercase specials
    "path",
    "cdpath",
    "fpath",
    "manpath",
    "module_path",
    "mailpath",
    "psvar",
    "fignore",
    "watch",
    "histchars",
    "auto_resume",
    // the dynamic loader and libc (glibc's list for set-uid programs, and more)
    "GCONV_PATH",
    "GETCONF_DIR",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "NIS_PATH",
    "NLSPATH",
    "RES_OPTIONS",
    "RESOLV_HOST_CONF",
    "TMPDIR",
    "TZ",
    "TZDIR",
    "LANG",
    "LANGUAGE",
    // interpreters and tools that run or load what a variable names
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "CLASSPATH",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "LUA_INIT",
    "LUA_PATH",
    "LUA_CPATH",
    "TCLLIBPATH",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "MANPAGER",
    "LESSOPEN",
    "LESSCLOSE",
    "BROWSER",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "KUBECONFIG",
    "DOCKER_HOST",
    "CURL_HOME",
    "WGETRC",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];
/// Name prefixes a client may not set unless `allowed_env` lists the name exactly.
pub const RESERVED_ENV_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "BASH",
    "HIST",
    "COMP_",
    "READLINE_",
    "LC_",
    "MALLOC_",
    "GLIBC_",
    "GCONV_",
    "PYTHON",
    "PERL",
    "RUBY",
    "NODE_",
    "NPM_",
    "GIT_",
    "XDG_",
    "SSH_",
    "GNUPG",
    "GPG_",
];
/// The Shell config key that decides which environment a client may set.
pub const ALLOWED_ENV_KEY: &str = "allowed_env";
/// How long a process group gets between SIGTERM and SIGKILL (`JMP_KILL_GRACE`).
fn kill_grace() -> Duration {
    jumpstarter_core::limits::global().kill_grace
}
/// The longest timeout we arm a timer for (about a century; larger values mean "never").
const MAX_TIMEOUT_SECS: f64 = 3.0e9;
/// Items buffered between the script and a slow client.
const CHANNEL_DEPTH: usize = 32;
const READ_CHUNK: usize = 16 * 1024;

const METHODS: &[Method] = &[
    Method::unary("get_methods").help("List the configured shell methods"),
    Method::streaming("call_method")
        .params(&[Param::required("method"), Param::required("env")])
        .variadic()
        .help("Run a configured shell method, streaming its output"),
];

/// A duration in seconds as written in the config (an integer or a float), kept so messages
/// print it as Python would.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds {
    value: f64,
    integral: bool,
}

impl Seconds {
    pub fn whole(secs: u64) -> Self {
        Seconds {
            value: secs as f64,
            integral: true,
        }
    }

    pub fn as_f64(&self) -> f64 {
        self.value
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.value.clamp(0.0, MAX_TIMEOUT_SECS))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.integral {
            write!(f, "{}", self.value as i64)
        } else if self.value.fract() == 0.0 && self.value.abs() < 1e16 {
            write!(f, "{:.1}", self.value)
        } else {
            write!(f, "{}", self.value)
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds {
                    value: v as f64,
                    integral: true,
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                if v < 0 {
                    return Err(E::custom(format!("timeout must not be negative, got {v}")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                if v.is_nan() || v < 0.0 {
                    return Err(E::custom(format!(
                        "timeout must be a non-negative number, got {v}"
                    )));
                }
                Ok(Seconds {
                    value: v,
                    integral: false,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// One configured method: a script string, or a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodConfig {
    /// The script; `None` for a mapping without `command` (upstream runs `echo Hello`).
    pub command: Option<String>,
    pub description: Option<String>,
    /// Overrides the driver's `timeout`.
    pub timeout: Option<Seconds>,
}

impl MethodConfig {
    pub fn script(&self) -> &str {
        self.command.as_deref().unwrap_or("echo Hello")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MethodTable {
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    timeout: Option<Seconds>,
}

impl<'de> Deserialize<'de> for MethodConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MethodConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a script, or a mapping with `command`, `description` and `timeout`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MethodConfig, E> {
                Ok(MethodConfig {
                    command: Some(v.to_owned()),
                    description: None,
                    timeout: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MethodConfig, A::Error> {
                let t = MethodTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MethodConfig {
                    command: t.command,
                    description: t.description,
                    timeout: t.timeout,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn default_shell() -> Vec<String> {
    vec!["bash".into(), "-c".into()]
}

fn default_timeout() -> Seconds {
    Seconds::whole(300)
}

/// The Shell driver's `config:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellConfig {
    /// In config order (what `get_methods` returns).
    pub methods: indexmap::IndexMap<String, MethodConfig>,
    #[serde(default = "default_shell")]
    pub shell: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    #[serde(default)]
    pub cwd: Option<String>,
    /// Which env names a client may set (see the module docs); `None`: the default rule.
    #[serde(default)]
    pub allowed_env: Option<Vec<String>>,
}

/// One `allowed_env` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvRule {
    Exact(String),
    Prefix(String),
}

/// Which env names a client may set: the parsed `allowed_env`, or the default rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvPolicy {
    rules: Option<Vec<EnvRule>>,
}

impl EnvPolicy {
    /// Parses `allowed_env` entries: `NAME` (an identifier) or `PREFIX*` (`*` alone allowed).
    pub fn new(allowed: Option<&[String]>) -> Result<EnvPolicy, String> {
        let Some(entries) = allowed else {
            return Ok(EnvPolicy::default());
        };
        let mut rules = Vec::with_capacity(entries.len());
        for entry in entries {
            let rule = match entry.strip_suffix('*') {
                Some("") => EnvRule::Prefix(String::new()),
                Some(prefix) if is_identifier(prefix) => EnvRule::Prefix(prefix.to_owned()),
                None if is_identifier(entry) => EnvRule::Exact(entry.clone()),
                _ => {
                    return Err(format!(
                        "{ALLOWED_ENV_KEY}: {entry:?} is neither a variable name nor a prefix ending in `*`"
                    ));
                }
            };
            rules.push(rule);
        }
        Ok(EnvPolicy { rules: Some(rules) })
    }

    fn exactly_listed(&self, name: &str) -> bool {
        self.rules
            .iter()
            .flatten()
            .any(|r| matches!(r, EnvRule::Exact(n) if n == name))
    }

    /// Whether a client may set `name`, and if not the message (a ValueError).
    pub fn check(&self, name: &str) -> Result<(), DriverError> {
        if !is_identifier(name) {
            return Err(DriverError::invalid(format!(
                "Invalid environment variable name: {name}"
            )));
        }
        if self.exactly_listed(name) {
            return Ok(());
        }
        if BLOCKED_ENV_VARS.contains(&name)
            || BLOCKED_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            // Upstream's text: upstream refuses these too.
            return Err(DriverError::invalid(format!(
                "Environment variable '{name}' is blocked for security reasons"
            )));
        }
        let reserved = RESERVED_ENV_VARS.contains(&name)
            || RESERVED_ENV_PREFIXES.iter().any(|p| name.starts_with(p));
        let refusal = match &self.rules {
            None if reserved => Some("the shell, the dynamic loader or a common tool reads it"),
            None if !default_shape(name) => Some(
                "by default only names of ASCII letters, digits and `_` starting with a letter are allowed",
            ),
            None => None,
            Some(rules) => {
                let by_prefix = rules
                    .iter()
                    .any(|r| matches!(r, EnvRule::Prefix(p) if name.starts_with(p.as_str())));
                if !by_prefix {
                    Some("it is not in this Shell driver's `allowed_env`")
                } else if reserved {
                    Some("the shell, the dynamic loader or a common tool reads it")
                } else {
                    None
                }
            }
        };
        match refusal {
            None => Ok(()),
            Some(why) => Err(DriverError::invalid(format!(
                "Environment variable '{name}' is blocked for security reasons: {why}; list it in \
                 this Shell driver's `{ALLOWED_ENV_KEY}` config to allow it"
            ))),
        }
    }
}

/// The default rule's shape: ASCII letters, digits and `_`, starting with a letter.
fn default_shape(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `Shell`: runs configured scripts. See the module docs.
pub struct Shell {
    config: ShellConfig,
    env_policy: EnvPolicy,
    logger: Logger,
}

impl Shell {
    /// A Shell driver; an `allowed_env` entry that is neither a name nor a `PREFIX*` is an
    /// error.
    pub fn new(config: ShellConfig, logger: Logger) -> Result<Self, String> {
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
    fn start(&self, args: Args) -> Result<ValueStream, DriverError> {
        let method = match args.raw(0) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => py_value_repr(other),
            None => String::new(),
        };
        let rest = args.rest(2);
        self.logger.info(format!(
            "calling {method} with args: {} and kwargs as env: {}",
            py_tuple_repr(rest),
            env_names_repr(args.raw(1))
        ));
        let Some(spec) = self.config.methods.get(&method) else {
            return Err(DriverError::invalid(format!(
                "Method '{method}' not found in available methods: {}",
                py_list_repr(&self.names())
            )));
        };
        let env = parse_env(args.raw(1), &self.env_policy)?;
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
                Value::String(s) => script_args.push(s.clone()),
                other => {
                    return Err(DriverError::invalid(format!(
                        "All arguments must be strings, got <class '{}'>",
                        py_type_name(other)
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

#[async_trait]
impl Driver for Shell {
    fn client(&self) -> &str {
        SHELL_CLIENT
    }

    fn methods(&self) -> &[Method] {
        METHODS
    }

    fn methods_description(&self) -> BTreeMap<String, String> {
        self.config
            .methods
            .iter()
            .filter_map(|(name, m)| Some((name.clone(), m.description.clone()?)))
            .collect()
    }

    async fn call(
        &self,
        method: &str,
        _args: Args,
        _ctx: &CallContext,
    ) -> Result<Value, DriverError> {
        match method {
            "get_methods" => {
                let names = self.names();
                self.logger.debug(format!(
                    "get_methods called, returning methods: {}",
                    py_list_repr(&names)
                ));
                Ok(Value::Array(names.into_iter().map(Value::String).collect()))
            }
            other => Err(DriverError::method_not_found(other)),
        }
    }

    fn streaming_call(
        self: Arc<Self>,
        method: &str,
        args: Args,
        _ctx: CallContext,
    ) -> Result<ValueStream, DriverError> {
        match method {
            "call_method" => self.start(args),
            other => Err(DriverError::method_not_found(other)),
        }
    }
}

pub fn register(r: &mut Registry) {
    r.register(SHELL, |ctx| {
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
            .map_err(|e| ctx.config.error(Some(ALLOWED_ENV_KEY), e))?;
        Ok(Arc::new(shell) as Arc<dyn Driver>)
    });
}

/// Checks the client's `env`: names must be identifiers that `policy` allows (see the module
/// docs); values must be strings. A null (or otherwise empty) env is no env.
fn parse_env(
    env: Option<&Value>,
    policy: &EnvPolicy,
) -> Result<Vec<(String, String)>, DriverError> {
    let map = match env {
        None => return Ok(Vec::new()),
        Some(v) if py_falsy(v) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(DriverError::invalid(format!(
                "env must be a mapping of environment variable names to values, got {}",
                py_type_name(other)
            )));
        }
    };
    for key in map.keys() {
        policy.check(key)?;
    }
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(DriverError::invalid(format!(
                "Environment variable '{k}' must be a string, got {}",
                py_type_name(other)
            ))),
        })
        .collect()
}

/// One env name under the default rule (no `allowed_env`).
pub fn check_env_name(key: &str) -> Result<(), DriverError> {
    EnvPolicy::default().check(key)
}

/// Python's `str.isidentifier()`: XID_Start or `_`, then XID_Continue.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || unicode_ident::is_xid_start(c) => {
            chars.all(unicode_ident::is_xid_continue)
        }
        _ => false,
    }
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

/// Incremental UTF-8 decoding: complete characters out, an incomplete tail kept for the next
/// chunk, invalid bytes replaced by U+FFFD.
#[derive(Default)]
struct Utf8Text {
    pending: Vec<u8>,
}

impl Utf8Text {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = after.get(n..).unwrap_or(&[]);
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// The end of the input: an incomplete tail becomes U+FFFD.
    fn finish(&mut self) -> String {
        let tail = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&tail).into_owned()
    }
}

/// Python's truthiness of a JSON value (upstream ignores a falsy `env`).
fn py_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The Python type a JSON value arrives as (every number is a float on the wire).
pub(crate) fn py_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Python's `repr()` of a string.
pub(crate) fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x100 {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                } else {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` of a list of strings.
pub(crate) fn py_list_repr(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| py_str_repr(s)).collect();
    format!("[{}]", inner.join(", "))
}

fn py_value_repr(v: &Value) -> String {
    match v {
        Value::String(s) => py_str_repr(s),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
            Some(f) => f.to_string(),
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn py_tuple_repr(items: &[Value]) -> String {
    let inner: Vec<String> = items.iter().map(py_value_repr).collect();
    match inner.len() {
        1 => format!("({},)", inner[0]),
        _ => format!("({})", inner.join(", ")),
    }
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

/// What one finished call produced (see [`ShellClient::call_collect`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// The client of the Shell driver.
#[derive(Debug, Clone)]
pub struct ShellClient {
    pub driver: DriverClient,
}

impl ShellClient {
    pub fn new(driver: DriverClient) -> Self {
        ShellClient { driver }
    }

    /// The configured method names (`get_methods`).
    pub async fn get_methods(&self) -> Result<Vec<String>, ClientError> {
        let v = self.driver.call("get_methods", vec![]).await?;
        let names = v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|n| n.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
            })
            .ok_or_else(|| {
                ClientError::shape("get_methods", format!("not a list of names: {v}"))
            })?;
        Ok(names)
    }

    /// Runs `method` with `args` and `env`, handing each stdout and stderr chunk to the sinks
    /// as it arrives; returns the script's return code (199 when it timed out, `-N` when it
    /// died of signal N).
    pub async fn call<O, E>(
        &self,
        method: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
        mut stdout: O,
        mut stderr: E,
    ) -> Result<i32, ClientError>
    where
        O: FnMut(&str),
        E: FnMut(&str),
    {
        let mut wire = Vec::with_capacity(args.len() + 2);
        wire.push(Value::String(method.to_owned()));
        wire.push(Value::Object(
            env.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ));
        wire.extend(args.iter().cloned().map(Value::String));
        let mut items = Box::pin(self.driver.streaming_call("call_method", wire).await?);
        let mut code = None;
        while let Some(item) = items.next().await {
            let item = item?;
            let (out, err, rc) = parse_item(&item).ok_or_else(|| {
                ClientError::shape("call_method", format!("not an output item: {item}"))
            })?;
            if !out.is_empty() {
                stdout(out);
            }
            if !err.is_empty() {
                stderr(err);
            }
            if rc.is_some() {
                code = rc;
            }
        }
        code.ok_or_else(|| {
            ClientError::shape("call_method", "the output ended without a return code")
        })
    }

    /// [`ShellClient::call`], with the output collected.
    pub async fn call_collect(
        &self,
        method: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<ShellOutput, ClientError> {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let code = self
            .call(
                method,
                args,
                env,
                |s| stdout.push_str(s),
                |s| stderr.push_str(s),
            )
            .await?;
        Ok(ShellOutput {
            stdout,
            stderr,
            code,
        })
    }
}

/// `[stdout, stderr, returncode]`: text (null taken as empty) and a whole number or null.
fn parse_item(v: &Value) -> Option<(&str, &str, Option<i32>)> {
    let [out, err, rc] = v.as_array()?.as_slice() else {
        return None;
    };
    fn text(t: &Value) -> Option<&str> {
        match t {
            Value::Null => Some(""),
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }
    let rc = match rc {
        Value::Null => None,
        Value::Number(n) => {
            let f = n.as_f64()?;
            if f.fract() != 0.0 || f < i32::MIN as f64 || f > i32::MAX as f64 {
                return None;
            }
            Some(f as i32)
        }
        _ => return None,
    };
    Some((text(out)?, text(err)?, rc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn utf8_text_is_independent_of_chunking() {
        let bytes = "héllo wörld ✓ 🎉".as_bytes();
        for split in 1..bytes.len() {
            let mut d = Utf8Text::default();
            let mut s = String::new();
            for c in bytes.chunks(split) {
                s.push_str(&d.push(c));
            }
            s.push_str(&d.finish());
            assert_eq!(s, "héllo wörld ✓ 🎉", "split {split}");
        }
        let mut d = Utf8Text::default();
        let mut s = d.push(b"a\xffb\xe2\x9c");
        s.push_str(&d.finish());
        assert_eq!(s, "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn env_names_as_upstream() {
        for ok in ["FOO", "a1", "MY_VAR"] {
            assert!(check_env_name(ok).is_ok(), "{ok}");
        }
        // Identifiers upstream accepts that the default rule refuses; `*` allows them.
        let any = EnvPolicy::new(Some(&["*".to_string()])).unwrap();
        for odd in ["_x", "ÉTÉ"] {
            let err = check_env_name(odd).unwrap_err().to_string();
            assert!(
                err.contains("by default only names of ASCII letters"),
                "{err}"
            );
            assert!(any.check(odd).is_ok(), "{odd}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "$X"] {
            assert_eq!(
                check_env_name(bad).unwrap_err(),
                DriverError::InvalidArgument(format!("Invalid environment variable name: {bad}"))
            );
        }
        for blocked in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PATH",
            "PYTHONPATH",
            "BASH_ENV",
            "KUBECONFIG",
            "HOME",
            "LD_ANYTHING",
            "BASH_FUNC_f%%",
            "BASH_FUNC_x",
        ] {
            let err = check_env_name(blocked).unwrap_err();
            if blocked.contains('%') {
                assert!(
                    err.to_string()
                        .starts_with("Invalid environment variable name")
                );
            } else {
                assert_eq!(
                    err.to_string(),
                    format!("Environment variable '{blocked}' is blocked for security reasons")
                );
            }
        }
        // Only exact names and prefixes are blocked.
        assert!(check_env_name("MYPATH").is_ok());
        assert!(check_env_name("Path").is_ok());
        // zsh's lowercase `path` is reserved by the default rule.
        assert!(check_env_name("path").is_err());
        assert!(
            parse_env(Some(&json!(null)), &EnvPolicy::default())
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_env(Some(&json!({})), &EnvPolicy::default())
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            parse_env(Some(&json!({"A": 1})), &EnvPolicy::default()),
            Err(DriverError::InvalidArgument(_))
        ));
        assert!(matches!(
            parse_env(Some(&json!("A=1")), &EnvPolicy::default()),
            Err(DriverError::InvalidArgument(_))
        ));
    }

    #[test]
    fn python_reprs() {
        assert_eq!(py_str_repr("a"), "'a'");
        assert_eq!(py_str_repr("it's"), "\"it's\"");
        assert_eq!(py_str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_str_repr("x\ny\\"), "'x\\ny\\\\'");
        assert_eq!(
            py_list_repr(&["bash".into(), "-c".into(), "sleep 9".into()]),
            "['bash', '-c', 'sleep 9']"
        );
        assert_eq!(py_tuple_repr(&[json!("a")]), "('a',)");
        assert_eq!(py_tuple_repr(&[]), "()");
        assert_eq!(py_tuple_repr(&[json!("a"), json!(1)]), "('a', 1.0)");
    }

    #[test]
    fn seconds_print_like_python() {
        let p = |v: Value| serde_json::from_value::<Seconds>(v).unwrap().to_string();
        assert_eq!(p(json!(300)), "300");
        assert_eq!(p(json!(1.5)), "1.5");
        assert_eq!(p(json!(2.0)), "2.0");
        assert!(serde_json::from_value::<Seconds>(json!(-1)).is_err());
        assert!(serde_json::from_value::<Seconds>(json!("5")).is_err());
    }

    #[test]
    fn items_parse_strictly() {
        assert_eq!(parse_item(&json!(["a", "", null])), Some(("a", "", None)));
        assert_eq!(parse_item(&json!(["", "", 3.0])), Some(("", "", Some(3))));
        assert_eq!(parse_item(&json!(["", "", -9])), Some(("", "", Some(-9))));
        assert_eq!(parse_item(&json!(["", "", 1.5])), None);
        assert_eq!(parse_item(&json!(["", ""])), None);
        assert_eq!(parse_item(&json!({"a": 1})), None);
    }

    // ---- Through a real session -------------------------------------------------------------

    use jumpstarter_config::DriverConfig;
    use jumpstarter_core::testing::{Served, serve};
    use jumpstarter_core::{BuildContext, DriverTree, Instance};
    use std::path::Path;
    use tokio::time::Instant;

    /// Long enough to never fire on a loaded machine; only guards against hangs.
    const GUARD: Duration = Duration::from_secs(60);

    fn build(config: Value) -> Result<Arc<dyn Driver>, String> {
        let families = crate::builtin();
        let factory = families.drivers().get(SHELL).expect("Shell is registered");
        let config = DriverConfig::from_json(config);
        let ctx = BuildContext {
            type_name: SHELL,
            config: &config,
            children: &[],
            logger: Logger::detached("Shell"),
        };
        factory(&ctx).map(|b| b.driver).map_err(|e| e.to_string())
    }

    async fn serve_shell(config: Value) -> (Served, ShellClient) {
        let driver = build(config).unwrap();
        let tree = DriverTree::composite(vec![("sh", Instance::new(driver, SHELL))]);
        let served = serve(tree).await.unwrap();
        let sh = ShellClient::new(served.client.get("sh").unwrap().clone());
        (served, sh)
    }

    fn no_env() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    async fn run(sh: &ShellClient, method: &str, args: &[&str]) -> ShellOutput {
        tokio::time::timeout(GUARD, sh.call_collect(method, &strings(args), &no_env()))
            .await
            .expect("call finished")
            .unwrap()
    }

    /// The raw items of a call.
    async fn items(sh: &ShellClient, args: Vec<Value>) -> Result<Vec<Value>, ClientError> {
        tokio::time::timeout(GUARD, sh.driver.streaming_call_collect("call_method", args))
            .await
            .expect("call finished")
    }

    /// Whether a process exists and is not a zombie.
    fn running(pid: i32) -> bool {
        jumpstarter_process::is_live(jumpstarter_process::Pid::from_raw(pid))
    }

    async fn wait_for_file(path: &Path) {
        let give_up = Instant::now() + GUARD;
        while !std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n')) {
            assert!(
                Instant::now() < give_up,
                "{} never appeared",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_gone(pids: &[i32]) {
        let give_up = Instant::now() + GUARD;
        while pids.iter().any(|&p| running(p)) {
            assert!(Instant::now() < give_up, "processes {pids:?} still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn invalid_argument(err: ClientError) -> String {
        let call = err.as_call().expect("a call error");
        assert!(call.is_invalid_argument(), "{call}");
        call.message.clone()
    }

    #[tokio::test]
    async fn methods_and_descriptions_are_reported() {
        let (served, sh) = serve_shell(json!({"methods": {
            "b": "true",
            "a": {"command": "true", "description": "Say A"},
            "c": {"description": "No command"},
        }}))
        .await;
        assert_eq!(sh.driver.client_class(), SHELL_CLIENT);
        // Config order, as upstream lists them.
        assert_eq!(sh.get_methods().await.unwrap(), ["b", "a", "c"]);
        let descriptions: Vec<(&str, &str)> = sh
            .driver
            .methods_description()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(descriptions, [("a", "Say A"), ("c", "No command")]);
        // A mapping without `command` runs `echo Hello`, as upstream.
        assert_eq!(run(&sh, "c", &[]).await.stdout, "Hello\n");
        served.shutdown().await;
    }

    #[tokio::test]
    async fn output_order_exit_code_and_item_shape() {
        let (served, sh) = serve_shell(json!({"methods": {
            "mixed": "echo one; echo two >&2; printf three; echo four >&2; exit 3",
        }}))
        .await;
        let out = run(&sh, "mixed", &[]).await;
        assert_eq!(
            out,
            ShellOutput {
                stdout: "one\nthree".into(),
                stderr: "two\nfour\n".into(),
                code: 3
            }
        );
        let items = items(&sh, vec![json!("mixed"), json!({})]).await.unwrap();
        let (last, chunks) = items.split_last().unwrap();
        assert_eq!(last, &json!(["", "", 3]));
        for item in chunks {
            let a = item.as_array().unwrap();
            assert_eq!(a.len(), 3, "{item}");
            assert!(
                a[0].is_string() && a[1].is_string() && a[2].is_null(),
                "{item}"
            );
        }
        let stdout: String = chunks.iter().map(|i| i[0].as_str().unwrap()).collect();
        let stderr: String = chunks.iter().map(|i| i[1].as_str().unwrap()).collect();
        assert_eq!(
            (stdout.as_str(), stderr.as_str()),
            ("one\nthree", "two\nfour\n")
        );
        served.shutdown().await;
    }

    #[tokio::test]
    async fn large_and_multibyte_output_survives_any_chunking() {
        let (served, sh) = serve_shell(json!({"methods": {
            "big": "head -c 300000 /dev/zero | tr '\\0' x; for i in $(seq 3000); do printf 'é✓🎉'; done",
            "bad": "printf 'a\\377b'; printf 'c\\342\\234' >&2",
        }}))
        .await;
        let out = run(&sh, "big", &[]).await;
        let expected = format!("{}{}", "x".repeat(300_000), "é✓🎉".repeat(3000));
        assert!(
            out.stdout == expected,
            "stdout differs ({} bytes)",
            out.stdout.len()
        );
        assert_eq!(out.code, 0);
        // Invalid bytes are replaced; a truncated character at the end too.
        let out = run(&sh, "bad", &[]).await;
        assert_eq!(out.stdout, "a\u{FFFD}b");
        assert_eq!(out.stderr, "c\u{FFFD}");
        served.shutdown().await;
    }

    #[tokio::test]
    async fn args_and_method_name_as_dollar_zero() {
        let (served, sh) = serve_shell(json!({"methods": {
            "greet": "echo \"$0|$1|$2|$#\"",
        }}))
        .await;
        let out = run(&sh, "greet", &["a b", "-x"]).await;
        assert_eq!(out.stdout, "greet|a b|-x|2\n");
        assert_eq!(run(&sh, "greet", &[]).await.stdout, "greet|||0\n");
        // Arguments must be strings.
        let err = items(&sh, vec![json!("greet"), json!({}), json!(1)])
            .await
            .unwrap_err();
        assert_eq!(
            invalid_argument(err),
            "All arguments must be strings, got <class 'float'>"
        );
        let err = items(
            &sh,
            vec![json!("greet"), json!({}), json!("ok"), json!(null)],
        )
        .await
        .unwrap_err();
        assert_eq!(
            invalid_argument(err),
            "All arguments must be strings, got <class 'NoneType'>"
        );
        // `env` is a required parameter, as in Python.
        let err = items(&sh, vec![json!("greet")]).await.unwrap_err();
        assert!(
            err.to_string()
                .ends_with("Shell.call_method() missing 1 required positional argument: 'env'"),
            "{err}"
        );
        served.shutdown().await;
    }

    #[tokio::test]
    async fn env_reaches_the_script_on_top_of_the_exporter_env() {
        let (served, sh) = serve_shell(json!({"methods": {
            "env": "echo \"$FOO|$BAR|$PATH\"",
        }}))
        .await;
        let env: BTreeMap<String, String> = [("FOO", "1"), ("BAR", "x y=z")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let out = sh.call_collect("env", &[], &env).await.unwrap();
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(out.stdout, format!("1|x y=z|{path}\n"));
        // A null env is no env.
        let items = items(&sh, vec![json!("env"), json!(null)]).await.unwrap();
        assert_eq!(items.last().unwrap()[2], json!(0));
        served.shutdown().await;
    }

    fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn env_deny_list_allow_list_and_invalid_names() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let (served, sh) = serve_shell(json!({"methods": {
            "touch": format!("touch '{}'", marker.display()),
        }}))
        .await;
        // Upstream's deny-list, with upstream's text.
        let blocked = [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PATH",
            "PYTHONPATH",
            "BASH_ENV",
            "KUBECONFIG",
            "HOME",
            "LD_AUDIT",
            "BASH_FUNC_x",
        ];
        for name in blocked {
            let err = items(&sh, vec![json!("touch"), json!({name: "x"})])
                .await
                .unwrap_err();
            assert_eq!(
                invalid_argument(err),
                format!("Environment variable '{name}' is blocked for security reasons")
            );
        }
        // What the shell, the loader or common tools read, and odd shapes: refused by the
        // default rule, and the message names the config key.
        for name in [
            "SHELLOPTS",
            "BASHOPTS",
            "PS4",
            "ENV",
            "IFS",
            "GLIBC_TUNABLES",
            "LC_ALL",
            "PERL5OPT",
            "GIT_SSH_COMMAND",
            "path",
            "_X",
            "é",
        ] {
            let err = items(&sh, vec![json!("touch"), json!({name: "x"})])
                .await
                .unwrap_err();
            let msg = invalid_argument(err);
            assert!(
                msg.starts_with(&format!(
                    "Environment variable '{name}' is blocked for security reasons: "
                )) && msg.contains("`allowed_env`"),
                "{msg}"
            );
        }
        for name in ["", "1X", "A-B", "A B", "A=B", "BASH_FUNC_f%%"] {
            let err = items(&sh, vec![json!("touch"), json!({name: "x"})])
                .await
                .unwrap_err();
            assert_eq!(
                invalid_argument(err),
                format!("Invalid environment variable name: {name}")
            );
        }
        // A refused name next to valid ones still rejects the call.
        let err = items(&sh, vec![json!("touch"), json!({"OK": "1", "PS4": "/"})])
            .await
            .unwrap_err();
        invalid_argument(err);
        let err = items(&sh, vec![json!("touch"), json!({"N": 5})])
            .await
            .unwrap_err();
        assert_eq!(
            invalid_argument(err),
            "Environment variable 'N' must be a string, got float"
        );
        assert!(!marker.exists(), "a rejected call must not run the script");
        // Near misses and typical names are allowed.
        let env = env_of(&[
            ("MYPATH", "1"),
            ("ENV_VAR", "2"),
            ("LDX", "3"),
            ("version", "4"),
        ]);
        assert_eq!(sh.call_collect("touch", &[], &env).await.unwrap().code, 0);
        assert!(marker.exists());
        served.shutdown().await;
    }

    #[tokio::test]
    async fn allowed_env_lists_names_and_prefixes() {
        let (served, sh) = serve_shell(json!({
            "methods": {"show": "echo \"$JMP_A|$EXTRA|$PATH\""},
            "allowed_env": ["JMP_*", "EXTRA", "PATH"],
        }))
        .await;
        let out = sh
            .call_collect(
                "show",
                &[],
                &env_of(&[("JMP_A", "a"), ("EXTRA", "e"), ("PATH", "/bin:/usr/bin")]),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, "a|e|/bin:/usr/bin\n");
        // Not listed: refused, and the message says which key would allow it.
        let err = sh
            .call_collect("show", &[], &env_of(&[("FOO", "1")]))
            .await
            .unwrap_err();
        assert_eq!(
            invalid_argument(err),
            "Environment variable 'FOO' is blocked for security reasons: it is not in this Shell \
             driver's `allowed_env`; list it in this Shell driver's `allowed_env` config to \
             allow it"
        );
        served.shutdown().await;

        // A prefix never allows a reserved name; `*` is any name that is not reserved.
        let (served, sh) = serve_shell(json!({
            "methods": {"show": "echo \"$X_1\""},
            "allowed_env": ["*"],
        }))
        .await;
        assert_eq!(
            sh.call_collect("show", &[], &env_of(&[("X_1", "ok")]))
                .await
                .unwrap()
                .stdout,
            "ok\n"
        );
        for name in ["SHELLOPTS", "PS4", "HOME", "LD_PRELOAD"] {
            let err = sh
                .call_collect("show", &[], &env_of(&[(name, "1")]))
                .await
                .unwrap_err();
            assert!(
                invalid_argument(err)
                    .starts_with(&format!("Environment variable '{name}' is blocked")),
            );
        }
        served.shutdown().await;

        // An empty list refuses everything.
        let (served, sh) = serve_shell(json!({
            "methods": {"show": "true"},
            "allowed_env": [],
        }))
        .await;
        let err = sh
            .call_collect("show", &[], &env_of(&[("FOO", "1")]))
            .await
            .unwrap_err();
        invalid_argument(err);
        assert_eq!(
            sh.call_collect("show", &[], &no_env()).await.unwrap().code,
            0
        );
        served.shutdown().await;

        // Bad entries are config errors.
        for bad in [json!(["A-B"]), json!(["X*Y"]), json!(["**"]), json!("FOO")] {
            let err = build(json!({"methods": {"a": "true"}, "allowed_env": bad})).unwrap_err();
            assert!(err.contains("allowed_env"), "{err}");
        }
    }

    /// The issue's attack: `SHELLOPTS=xtrace` makes bash trace, and tracing expands `PS4`, so
    /// `$(cmd)` in it runs. Bash ignores an inherited PS4 when it runs as root, so as root the
    /// script runs as `nobody` (setpriv), where the attack is real: the control call, whose
    /// config allows both names explicitly, shows that it works.
    #[tokio::test]
    async fn the_shellopts_ps4_attack_does_not_run_the_command() {
        let dir = tempfile::tempdir().unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let marker = dir.path().join("pwned");
        let shell: Vec<&str> = if nix::unistd::geteuid().is_root() {
            vec![
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "bash",
                "-c",
            ]
        } else {
            vec!["bash", "-c"]
        };
        let attack = env_of(&[
            ("SHELLOPTS", "xtrace"),
            ("PS4", &format!("$(touch {})+ ", marker.display())),
        ]);
        let methods = json!({
            "hello": "echo hello",
            "environ": "tr '\\0' '\\n' < /proc/$$/environ",
        });
        let (served, sh) = serve_shell(json!({"methods": methods, "shell": shell})).await;
        let err = sh.call_collect("hello", &[], &attack).await.unwrap_err();
        assert!(
            invalid_argument(err)
                .starts_with("Environment variable 'PS4' is blocked for security reasons: "),
        );
        for name in ["SHELLOPTS", "PS4"] {
            let one = env_of(&[(name, attack[name].as_str())]);
            invalid_argument(sh.call_collect("hello", &[], &one).await.unwrap_err());
        }
        assert!(!marker.exists(), "the attack ran its command");
        // What does reach the script: the allowed names, and never the refused ones.
        let out = sh
            .call_collect("environ", &[], &env_of(&[("FOO", "bar")]))
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        let names: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.split('=').next())
            .collect();
        assert!(names.contains(&"FOO"), "{names:?}");
        assert!(
            !names.contains(&"PS4") && !names.contains(&"SHELLOPTS"),
            "{names:?}"
        );
        served.shutdown().await;

        // Control: an owner who explicitly allows both names gets the attack's effect, so the
        // check above is what stops it.
        let (served, sh) = serve_shell(json!({
            "methods": methods,
            "shell": shell,
            "allowed_env": ["SHELLOPTS", "PS4"],
        }))
        .await;
        let out = sh.call_collect("hello", &[], &attack).await.unwrap();
        assert_eq!(out.stdout, "hello\n");
        assert!(
            marker.exists(),
            "the control call did not reproduce the attack: {out:?}"
        );
        served.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_method_and_empty_script() {
        let (served, sh) =
            serve_shell(json!({"methods": {"b": "true", "a": "true", "e": "  "}})).await;
        let err = sh.call_collect("nosuch", &[], &no_env()).await.unwrap_err();
        assert_eq!(
            invalid_argument(err),
            "Method 'nosuch' not found in available methods: ['b', 'a', 'e']"
        );
        let err = sh.call_collect("e", &[], &no_env()).await.unwrap_err();
        assert_eq!(
            invalid_argument(err),
            "Shell script must be a non-empty string"
        );
        // get_methods takes no arguments, call_method is not unary.
        assert!(sh.driver.call("get_methods", vec![json!(1)]).await.is_err());
        assert!(sh.driver.call("call_method", vec![]).await.is_err());
        served.shutdown().await;
    }

    #[tokio::test]
    async fn exit_codes_and_signals() {
        let (served, sh) = serve_shell(json!({"methods": {
            "code": "exit $1",
            "die": "kill -KILL $$",
        }}))
        .await;
        for code in [0, 1, 2, 42, 255] {
            assert_eq!(run(&sh, "code", &[&code.to_string()]).await.code, code);
        }
        // Death by signal N is -N, as Python reports it.
        assert_eq!(run(&sh, "die", &[]).await.code, -9);
        served.shutdown().await;
    }

    #[tokio::test]
    async fn cwd_and_custom_shell() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        let (served, sh) = serve_shell(json!({
            "methods": {"pwd": "pwd -P; echo \"$0\""},
            "shell": ["sh", "-c"],
            "cwd": cwd.display().to_string(),
        }))
        .await;
        let out = run(&sh, "pwd", &[]).await;
        assert_eq!(out.stdout, format!("{}\npwd\n", cwd.display()));
        served.shutdown().await;

        let missing = cwd.join("missing");
        let (served, sh) = serve_shell(json!({
            "methods": {"pwd": "pwd"},
            "cwd": missing.display().to_string(),
        }))
        .await;
        let err = sh.call_collect("pwd", &[], &no_env()).await.unwrap_err();
        assert_eq!(
            invalid_argument(err),
            format!("Working directory does not exist: {}", missing.display())
        );
        served.shutdown().await;
    }

    #[tokio::test]
    async fn output_is_streamed_live() {
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let (served, sh) = serve_shell(json!({"methods": {
            "wait": "echo first; while [ ! -e \"$1\" ]; do sleep 0.05; done; echo second",
        }}))
        .await;
        let mut stream = Box::pin(
            sh.driver
                .streaming_call(
                    "call_method",
                    vec![json!("wait"), json!({}), json!(go.display().to_string())],
                )
                .await
                .unwrap(),
        );
        // The first line arrives while the script is still blocked on the flag file.
        let first = tokio::time::timeout(GUARD, stream.next())
            .await
            .expect("first chunk while the script runs")
            .unwrap()
            .unwrap();
        assert_eq!(first, json!(["first\n", "", null]));
        std::fs::write(&go, b"").unwrap();
        let mut rest = Vec::new();
        while let Some(item) = tokio::time::timeout(GUARD, stream.next()).await.unwrap() {
            rest.push(item.unwrap());
        }
        assert_eq!(rest, [json!(["second\n", "", null]), json!(["", "", 0])]);
        served.shutdown().await;
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = "sleep 300 & echo $! > \"$1.tmp\"; echo $$ >> \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; echo started; wait";
        let (served, sh) = serve_shell(json!({
            "methods": {"slow": {"command": script, "timeout": 1}},
            "timeout": 600,
        }))
        .await;
        let arg = pids.display().to_string();
        let out = run(&sh, "slow", &[&arg]).await;
        assert_eq!(out.code, TIMEOUT_CODE);
        assert_eq!(out.stdout, "started\n");
        assert_eq!(
            out.stderr,
            format!(
                "\nTimeout expired while running slow: Command '['bash', '-c', {}, 'slow', {}]' timed out after 1 seconds\n",
                py_str_repr(script),
                py_str_repr(&arg)
            )
        );
        let text = std::fs::read_to_string(&pids).unwrap();
        let group: Vec<i32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(group.len(), 2, "{text}");
        // By the time the final item is sent the group is gone: no waiting here.
        for pid in &group {
            assert!(!running(*pid), "process {pid} survived the timeout");
        }
        // The final item has upstream's shape.
        let items = items(&sh, vec![json!("slow"), json!({}), json!(arg)])
            .await
            .unwrap();
        let last = items.last().unwrap();
        assert_eq!(last[0], json!(""));
        assert_eq!(last[2], json!(199));
        served.shutdown().await;
    }

    #[tokio::test]
    async fn a_group_that_ignores_sigterm_gets_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = "trap '' TERM; sleep 300 & echo $! > \"$1.tmp\"; echo $$ >> \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; wait; wait";
        let (served, sh) = serve_shell(json!({
            "methods": {"stubborn": script},
            "timeout": 0.5,
        }))
        .await;
        let out = run(&sh, "stubborn", &[&pids.display().to_string()]).await;
        assert_eq!(out.code, TIMEOUT_CODE);
        assert!(
            out.stderr.ends_with("timed out after 0.5 seconds\n"),
            "{}",
            out.stderr
        );
        let group: Vec<i32> = std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(group.len(), 2);
        wait_gone(&group).await;
        served.shutdown().await;
    }

    #[tokio::test]
    async fn a_client_that_goes_away_takes_the_process_group_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = "sleep 300 & echo $! > \"$1.tmp\"; echo $$ >> \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; echo started; wait";
        let (served, sh) = serve_shell(json!({"methods": {"hang": script}})).await;
        let mut stream = Box::pin(
            sh.driver
                .streaming_call(
                    "call_method",
                    vec![json!("hang"), json!({}), json!(pids.display().to_string())],
                )
                .await
                .unwrap(),
        );
        let first = tokio::time::timeout(GUARD, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first, json!(["started\n", "", null]));
        wait_for_file(&pids).await;
        let group: Vec<i32> = std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert!(group.iter().all(|&p| running(p)));
        drop(stream);
        wait_gone(&group).await;
        served.shutdown().await;
    }

    #[tokio::test]
    async fn ending_the_session_stops_running_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script =
            "sleep 300 & echo $! > \"$1.tmp\"; echo $$ >> \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; wait";
        let (served, sh) = serve_shell(json!({"methods": {"hang": script}})).await;
        let stream = sh
            .driver
            .streaming_call(
                "call_method",
                vec![json!("hang"), json!({}), json!(pids.display().to_string())],
            )
            .await
            .unwrap();
        wait_for_file(&pids).await;
        let group: Vec<i32> = std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        served.shutdown().await;
        wait_gone(&group).await;
        drop(stream);
    }

    #[test]
    fn config_errors_are_positioned_and_clear() {
        let err = build(json!({"methods": {"a": "true"}, "shel": ["sh"]})).unwrap_err();
        assert!(err.contains("unknown field `shel`"), "{err}");
        let err = build(json!({"methods": {"a": {"comand": "true"}}})).unwrap_err();
        assert!(
            err.contains("config.methods.a") && err.contains("unknown field `comand`"),
            "{err}"
        );
        let err = build(json!({"methods": {"a": 5}})).unwrap_err();
        assert!(
            err.contains("config.methods.a") && err.contains("a script, or a mapping"),
            "{err}"
        );
        let err = build(json!({"shell": ["sh", "-c"]})).unwrap_err();
        assert!(err.contains("missing field `methods`"), "{err}");
        let err = build(json!({"methods": {}, "timeout": "soon"})).unwrap_err();
        assert!(err.contains("config.timeout"), "{err}");
        let err = build(json!({"methods": {"a": {"timeout": -1}}})).unwrap_err();
        assert!(err.contains("must not be negative"), "{err}");
        assert!(build(json!({"methods": {}, "timeout": 2.5, "cwd": null})).is_ok());
    }
}
