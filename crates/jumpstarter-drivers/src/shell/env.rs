//! Which environment a client may set (see the family docs), and the check of a call's `env`.

use jumpstarter_core::{DriverError, Value};

use super::ALLOWED_ENV_KEY;
use crate::py::{py_falsy, py_type_name};

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

/// An `allowed_env` entry that is neither a variable name nor a `PREFIX*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {:?} is neither a variable name nor a prefix ending in `*`", ALLOWED_ENV_KEY, .entry)]
pub struct EnvEntryError {
    pub entry: String,
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
    pub fn new(allowed: Option<&[String]>) -> Result<EnvPolicy, EnvEntryError> {
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
                    return Err(EnvEntryError {
                        entry: entry.clone(),
                    });
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

/// Checks the client's `env`: names must be identifiers that `policy` allows (see the module
/// docs); values must be strings. A null (or otherwise empty) env is no env.
pub(crate) fn parse_env(
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
