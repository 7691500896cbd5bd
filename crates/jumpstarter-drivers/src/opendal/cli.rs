//! `j` commands for Opendal drivers: the command set upstream's `OpendalClient.cli()` defines
//! (0.9.0 loses all of them to a decorator bug; here they exist).

use std::path::PathBuf;

use clap::{Arg, ArgMatches, Command, value_parser};
use futures::StreamExt;
use jumpstarter_core::DriverClient;
use jumpstarter_family::output::print_value;
use jumpstarter_family::{CliError, CliResult, group, help_for};
use serde_json::{Value, json};

use super::OpendalClient;

jumpstarter_family::command_set! {
    /// The commands of `OpendalClient`.
    pub struct OpendalCommands => command, run;
}

fn path_arg(name: &'static str) -> Arg {
    Arg::new(name)
        .value_name(name.to_uppercase())
        .required(true)
}

fn sub(node: &DriverClient, name: &'static str, help: &'static str) -> Command {
    Command::new(name).about(help_for(node, name, help))
}

fn command(path: &str, node: &DriverClient) -> Command {
    let expire = || {
        Arg::new("expire-second")
            .long("expire-second")
            .required(true)
            .value_parser(value_parser!(u64))
    };
    group(path, node, "Opendal Storage")
        .subcommand(sub(node, "write-bytes", "Write standard input to PATH").arg(path_arg("path")))
        .subcommand(sub(node, "read-bytes", "Write PATH to standard output").arg(path_arg("path")))
        .subcommand(
            sub(
                node,
                "write-from-path",
                "Write the local file (or http(s) URL) SRC to DST",
            )
            .arg(path_arg("dst"))
            .arg(path_arg("src")),
        )
        .subcommand(
            sub(node, "read-into-path", "Read SRC into the local file DST")
                .arg(path_arg("src"))
                .arg(path_arg("dst")),
        )
        .subcommand(sub(node, "stat", "Show metadata of PATH").arg(path_arg("path")))
        .subcommand(
            sub(node, "hash", "Hash PATH").arg(path_arg("path")).arg(
                Arg::new("algo")
                    .long("algo")
                    .value_parser(["md5", "sha256"]),
            ),
        )
        .subcommand(
            sub(node, "copy", "Copy SOURCE to TARGET")
                .arg(path_arg("source"))
                .arg(path_arg("target")),
        )
        .subcommand(
            sub(node, "rename", "Rename SOURCE to TARGET")
                .arg(path_arg("source"))
                .arg(path_arg("target")),
        )
        .subcommand(sub(node, "remove-all", "Remove PATH recursively").arg(path_arg("path")))
        .subcommand(sub(node, "create-dir", "Create the directory PATH").arg(path_arg("path")))
        .subcommand(sub(node, "delete", "Delete PATH").arg(path_arg("path")))
        .subcommand(sub(node, "exists", "Exit 0 if PATH exists, 1 otherwise").arg(path_arg("path")))
        .subcommand(sub(node, "list", "List PATH").arg(path_arg("path")))
        .subcommand(sub(node, "scan", "List PATH recursively").arg(path_arg("path")))
        .subcommand(
            sub(node, "presign-stat", "Presign a stat of PATH")
                .arg(path_arg("path"))
                .arg(expire()),
        )
        .subcommand(
            sub(node, "presign-read", "Presign a read of PATH")
                .arg(path_arg("path"))
                .arg(expire()),
        )
        .subcommand(
            sub(node, "presign-write", "Presign a write of PATH")
                .arg(path_arg("path"))
                .arg(expire()),
        )
        .subcommand(sub(
            node,
            "capability",
            "Show what the storage service can do",
        ))
}

fn s(m: &ArgMatches, name: &str) -> String {
    m.get_one::<String>(name).cloned().unwrap_or_default()
}

/// JSON the way pydantic's `model_dump_json(indent=2)` lays it out.
fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

async fn run(node: &DriverClient, m: &ArgMatches) -> CliResult {
    let c = OpendalClient::new(node.clone());
    let (name, sub) = m.subcommand().expect("clap requires a sub-command");
    match name {
        "write-bytes" => {
            c.write_from(&s(sub, "path"), tokio::io::stdin(), None)
                .await?
        }
        "read-bytes" => {
            c.read_into(&s(sub, "path"), jumpstarter_core::out::async_stdout(), None)
                .await?
        }
        "write-from-path" => {
            let (dst, src) = (s(sub, "dst"), s(sub, "src"));
            if src.starts_with("http://") || src.starts_with("https://") {
                // The exporter fetches the URL itself.
                let fd = c.open(dst, "wb".into()).await?;
                let handle = json!({"kind": "presigned_request", "headers": {}, "url": src, "method": "GET"});
                let written = c.file_write(fd.clone(), handle).await;
                let closed = c.file_close(fd).await;
                written?;
                closed?;
            } else {
                let file = tokio::fs::File::open(&src)
                    .await
                    .map_err(|e| CliError::runtime(format!("{src}: {e}")))?;
                c.write_from(&dst, file, None).await?;
            }
        }
        "read-into-path" => {
            let dst = PathBuf::from(s(sub, "dst"));
            let file = tokio::fs::File::create(&dst)
                .await
                .map_err(|e| CliError::runtime(format!("{}: {e}", dst.display())))?;
            if let Err(e) = c.read_into(&s(sub, "src"), file, None).await {
                let _ = std::fs::remove_file(&dst);
                return Err(e.into());
            }
        }
        "stat" => {
            let mut v = c.stat(s(sub, "path")).await?;
            // The command prints with pydantic's serialization aliases (is_file/is_dir).
            if let Some(mode) = v.get_mut("mode").and_then(Value::as_object_mut) {
                let file = mode.remove("entry_is_file").unwrap_or(Value::Null);
                let dir = mode.remove("entry_is_dir").unwrap_or(Value::Null);
                mode.insert("is_file".into(), file);
                mode.insert("is_dir".into(), dir);
            }
            jumpstarter_core::outln!("{}", pretty(&v));
        }
        "hash" => {
            let algo = sub.get_one::<String>("algo").cloned();
            print_value(&Value::String(c.hash(s(sub, "path"), algo).await?));
        }
        "copy" => c.copy(s(sub, "source"), s(sub, "target")).await?,
        "rename" => c.rename(s(sub, "source"), s(sub, "target")).await?,
        "remove-all" => c.remove_all(s(sub, "path")).await?,
        "create-dir" => c.create_dir(s(sub, "path")).await?,
        "delete" => c.delete(s(sub, "path")).await?,
        "exists" => {
            let path = s(sub, "path");
            if !c.exists(path.clone()).await? {
                return Err(CliError::runtime(format!("path {path} does not exist")));
            }
        }
        "list" | "scan" => {
            let path = s(sub, "path");
            let mut items = if name == "list" {
                c.list(path).await?
            } else {
                c.scan(path).await?
            };
            // Collected first, as before: nothing is printed when the listing fails midway.
            let mut entries = Vec::new();
            while let Some(e) = items.next().await {
                entries.push(e?);
            }
            for e in entries {
                print_value(&Value::String(e));
            }
        }
        "presign-stat" | "presign-read" | "presign-write" => {
            let expire = sub.get_one::<u64>("expire-second").copied().unwrap_or(0);
            let path = s(sub, "path");
            let v = match name {
                "presign-stat" => c.presign_stat(path, expire).await?,
                "presign-read" => c.presign_read(path, expire).await?,
                _ => c.presign_write(path, expire).await?,
            };
            jumpstarter_core::outln!("{}", pretty(&v));
        }
        "capability" => jumpstarter_core::outln!("{}", pretty(&c.capability().await?)),
        _ => unreachable!("clap only accepts the commands above"),
    }
    Ok(0)
}
