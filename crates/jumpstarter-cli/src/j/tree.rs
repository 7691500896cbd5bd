//! The `j` command tree, built from the session's driver tree by looking each node's client
//! class up in the registered families ([`jumpstarter_family::Families`]).
//!
//! * A composite is a group of its children.
//! * A node whose class has a command set gets that set's commands, and its children as
//!   further groups (a child whose name is one of the set's commands is left out).
//! * A node not allowed by `JMP_DRIVERS_ALLOW` is listed with the reason.
//! * A hosted node whose driver host failed is listed as unavailable, with the host's reason;
//!   any command under it says so and exits 1.
//! * Any other class gets the generic commands (calls by method name).

use std::collections::HashMap;
use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use clap::{Arg, ArgMatches, Command};
use jumpstarter_core::{Client, DriverClient};
use jumpstarter_family::usage;
use jumpstarter_family::{
    CliError, CliResult, Commands, Families, HELP_TEMPLATE, Node, Prepared, group,
};
use jumpstarter_protocol::wire::{COMPOSITE_CLIENT, UNAVAILABLE_CLIENT, UNAVAILABLE_DESCRIPTION};

use jumpstarter_family::generic;

use super::allow::Allow;

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/// How `j` presents a node.
enum Kind {
    Composite,
    Family(Arc<dyn Commands>),
    /// A client class without a command set: generic calls by method name.
    Generic,
    /// Not allowed by `JMP_DRIVERS_ALLOW`: listed, with the reason.
    Denied(String),
    /// The exporter's stand-in for a hosted subtree whose host failed: the host's reason.
    Unavailable(String),
}

/// What building and dispatching need besides the node.
struct Ctx<'a> {
    families: &'a Families,
    allow: &'a Allow,
    /// What each command set prepared, by node uuid.
    prepared: HashMap<String, Prepared>,
    /// The raw arguments (Shell method commands parse their own options, as click does).
    argv: Vec<String>,
}

impl Ctx<'_> {
    fn kind(&self, node: &DriverClient) -> Kind {
        let class = node.client_class();
        if class == COMPOSITE_CLIENT {
            return Kind::Composite;
        }
        if class == UNAVAILABLE_CLIENT
            && let Some(reason) = node
                .description()
                .and_then(|d| d.strip_prefix(UNAVAILABLE_DESCRIPTION))
        {
            return Kind::Unavailable(reason.to_owned());
        }
        if let Err(note) = node.allowed_by(self.allow) {
            return Kind::Denied(note.0);
        }
        match self.families.commands_for(class) {
            Some(c) => Kind::Family(c.clone()),
            None => Kind::Generic,
        }
    }

    fn node<'a>(
        &'a self,
        client: &'a DriverClient,
        path: &'a str,
        names: &'a [String],
    ) -> Node<'a> {
        static NONE: Prepared = None;
        Node {
            client,
            path,
            names,
            argv: &self.argv,
            prepared: self.prepared.get(client.uuid()).unwrap_or(&NONE),
        }
    }
}

fn log_level_arg() -> Arg {
    Arg::new("log-level")
        .long("log-level")
        .value_parser(LEVELS)
        .ignore_case(true)
        .global(false)
        .help("Set the log level")
}

fn command_for(path: &str, node: &DriverClient, names: &[String], cx: &Ctx<'_>) -> Command {
    match cx.kind(node) {
        Kind::Composite => composite(path, node, names, cx),
        Kind::Family(commands) => {
            let mut cmd = commands.command(&cx.node(node, path, names));
            for child in node.children() {
                if cmd.find_subcommand(child.name()).is_some() {
                    continue;
                }
                cmd = cmd.subcommand(child_command(path, child, names, cx));
            }
            cmd
        }
        Kind::Generic => generic::command(path, node),
        Kind::Denied(reason) => Command::new(node.name().to_owned())
            .about(reason)
            .allow_external_subcommands(true),
        Kind::Unavailable(reason) => Command::new(node.name().to_owned())
            .about(format!("{UNAVAILABLE_DESCRIPTION}{reason}"))
            .arg(
                Arg::new("args")
                    .num_args(0..)
                    .allow_hyphen_values(true)
                    .trailing_var_arg(true)
                    .hide(true),
            ),
    }
}

fn child_command(path: &str, child: &DriverClient, names: &[String], cx: &Ctx<'_>) -> Command {
    let mut names = names.to_vec();
    names.push(child.name().to_owned());
    command_for(&format!("{path} {}", child.name()), child, &names, cx)
}

fn composite(path: &str, node: &DriverClient, names: &[String], cx: &Ctx<'_>) -> Command {
    let mut cmd = group(path, node, "Generic composite device").arg(log_level_arg());
    for child in node.children() {
        cmd = cmd.subcommand(child_command(path, child, names, cx));
    }
    cmd
}

/// Runs every command set's `prepare` for the nodes that have one (concurrently; once per
/// instance).
async fn prepare(root: &DriverClient, cx: &Ctx<'_>) -> HashMap<String, Prepared> {
    fn collect<'a>(
        node: &'a DriverClient,
        cx: &Ctx<'_>,
        out: &mut Vec<(&'a DriverClient, Arc<dyn Commands>)>,
    ) {
        if let Kind::Family(c) = cx.kind(node)
            && !out.iter().any(|(n, _)| n.uuid() == node.uuid())
        {
            out.push((node, c));
        }
        for child in node.children() {
            collect(child, cx, out);
        }
    }
    let mut nodes = Vec::new();
    collect(root, cx, &mut nodes);
    let prepared = futures::future::join_all(
        nodes
            .iter()
            .map(|(node, c)| async move { (node.uuid().to_owned(), c.prepare(node).await) }),
    )
    .await;
    prepared.into_iter().filter(|(_, p)| p.is_some()).collect()
}

/// Parses `args` against the tree and runs the chosen command.
pub async fn run(client: &Client, families: &Families, allow: &Allow, args: Vec<OsString>) -> i32 {
    let root = client.root();
    let raw: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut cx = Ctx {
        families,
        allow,
        prepared: HashMap::new(),
        argv: raw,
    };
    cx.prepared = prepare(root, &cx).await;
    let cmd = clickify(composite("j", root, &[], &cx), "j");
    let argv = std::iter::once(OsString::from("j")).chain(args);
    let matches = match cmd.clone().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            let r = usage::render_in(&e, &cmd, &cx.argv);
            if r.to_stdout {
                jumpstarter_core::out!("{}", r.text);
            } else {
                eprint!("{}", r.text);
            }
            return r.code;
        }
    };
    match dispatch(root.clone(), matches, &cx, Vec::new(), "j".into()).await {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}

/// What click does to every command of a tree: the list of a group's commands shows one line
/// per command (the first sentence of its help, shortened to fit; the whole text stays in the
/// command's own `--help`), and a command without sub-commands gets click's usage line.
fn clickify(mut cmd: Command, path: &str) -> Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let limit = usage::HELP_WIDTH.saturating_sub(6 + longest);
    for name in names {
        let sub_path = format!("{path} {name}");
        cmd = cmd.mut_subcommand(&name, |sub| {
            let sub = clickify(sub, &sub_path);
            let Some(about) = sub.get_about().map(|a| a.to_string()) else {
                return sub;
            };
            let short = usage::short_help(&about, limit);
            if short == about {
                sub
            } else {
                // The whole text in the command's own help (before_help rather than
                // long_about, which would switch clap to its long layout).
                sub.about(short)
                    .before_help(about)
                    .help_template(FULL_HELP_TEMPLATE)
            }
        });
    }
    if !cmd.has_subcommands() {
        let usage = usage::click_usage(&cmd, path);
        cmd = cmd.override_usage(usage);
        if cmd.get_before_help().is_none() {
            cmd = cmd.help_template(HELP_TEMPLATE);
        }
    }
    cmd
}

/// [`HELP_TEMPLATE`] with the whole help text where the (shortened) about would be.
const FULL_HELP_TEMPLATE: &str = "{usage-heading} {usage}\n\n{before-help}{all-args}{after-help}";

type BoxFut<'a> = Pin<Box<dyn Future<Output = CliResult> + 'a>>;

/// `names` are the export keys from the root to `node` (`["group", "psu2"]`), `path` the
/// command path (`j group psu2`).
fn dispatch<'a>(
    node: DriverClient,
    m: ArgMatches,
    cx: &'a Ctx<'a>,
    mut names: Vec<String>,
    path: String,
) -> BoxFut<'a> {
    Box::pin(async move {
        let kind = cx.kind(&node);
        // A child group chosen under a composite, or under a node with its own commands.
        if let Some((name, sub)) = m.subcommand()
            && let Some(child) = node.child(name).cloned()
        {
            let own = match &kind {
                Kind::Composite => false,
                Kind::Family(c) => c
                    .command(&cx.node(&node, &path, &names))
                    .find_subcommand(name)
                    .is_some(),
                _ => true,
            };
            if !own {
                names.push(name.to_owned());
                let path = format!("{path} {name}");
                return dispatch(child, sub.clone(), cx, names, path).await;
            }
        }
        match kind {
            Kind::Composite => match m.subcommand() {
                Some((name, _)) => Err(CliError::runtime(format!("No such command '{name}'."))),
                None => Err(CliError::runtime("missing command")),
            },
            Kind::Family(c) => c.run(&cx.node(&node, &path, &names), &m).await,
            Kind::Generic => generic::run(&node, &m).await,
            Kind::Denied(reason) => Err(CliError::runtime(format!("{}: {reason}", node.name()))),
            Kind::Unavailable(reason) => Err(CliError::runtime(format!(
                "driver `{}` is unavailable: {reason}",
                names.join(".")
            ))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jumpstarter_core::testing::serve;
    use jumpstarter_core::{DriverTree, Instance, Logger};
    use jumpstarter_drivers::power::{MOCK_POWER, MockPower};

    /// A node whose class has a command set and that has children offers both: its own
    /// commands, and its children as groups (a child named like one of its commands is left
    /// out, the command wins).
    #[tokio::test]
    async fn a_node_has_its_commands_and_its_children() {
        let outer = Arc::new(MockPower::new(Logger::detached("outer")));
        let inner = Arc::new(MockPower::new(Logger::detached("inner")));
        let clash = Arc::new(MockPower::new(Logger::detached("clash")));
        let tree = DriverTree::composite(vec![(
            "power",
            Instance::new(outer.clone(), MOCK_POWER)
                .child("sub", Instance::new(inner.clone(), MOCK_POWER))
                .child("on", Instance::new(clash.clone(), MOCK_POWER)),
        )]);
        let served = serve(tree).await.unwrap();
        let families = jumpstarter_drivers::builtin();
        let allow = Allow::from_env(&jumpstarter_config::Env::from_pairs([(
            "JMP_DRIVERS_UNSAFE",
            "1",
        )]));
        let cx = Ctx {
            families: &families,
            allow: &allow,
            prepared: HashMap::new(),
            argv: Vec::new(),
        };
        let root = served.client.root();
        let cmd = composite("j", root, &[], &cx);
        let power = cmd.find_subcommand("power").unwrap();
        let names: Vec<&str> = power.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(names, ["on", "off", "cycle", "read", "sub"]);
        assert!(
            power
                .find_subcommand("sub")
                .unwrap()
                .find_subcommand("on")
                .is_some()
        );

        let run = |args: &[&str]| {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            run(&served.client, &families, &allow, args)
        };
        assert_eq!(run(&["power", "sub", "on"]).await, 0);
        assert!(inner.is_on() && !outer.is_on());
        assert_eq!(run(&["power", "on"]).await, 0);
        assert!(outer.is_on() && !clash.is_on());
        served.shutdown().await;
    }
}
