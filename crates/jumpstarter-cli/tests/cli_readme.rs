//! The README's "Using it" examples, run as written: every `j` command shown at the prompt of
//! `jmp shell --exporter-config examples/exporters/demo.yaml` runs against that very file
//! (the console through a real terminal), so the README cannot drift from what works.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jumpstarter_drivers::serial::testing::PtyDevice;
use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(60);
const PROMPT: &str = " ⚡local ➤ ";

fn demo() -> PathBuf {
    workspace_root().join("examples/exporters/demo.yaml")
}

/// The commands typed at the local shell's prompt in README's "Using it" section, comments
/// removed, in order.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let start = readme
        .find("## Using it")
        .expect("README has a \"Using it\" section");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter_map(|l| l.split_once(PROMPT).map(|(_, cmd)| cmd))
        .map(|cmd| cmd.split(" # ").next().unwrap_or(cmd).trim().to_owned())
        .collect()
}

fn shell(dir: &Path, script: &str) -> std::process::Output {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(dir)
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--exporter-config")
        .arg(demo())
        .args(["--", "sh", "-c", script]);
    run_timeout(&mut cmd, T)
}

#[test]
fn every_readme_command_at_the_local_prompt_runs_on_demo_yaml() {
    let dir = tempfile::tempdir().unwrap();
    // The images the README flashes: a raw one and its zstd file.
    let image: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("disk.img"), &image).unwrap();
    let st = Command::new("zstd")
        .args(["-q", "-f", "disk.img", "-o", "disk.img.zst"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    // One shell session, as in the README: the mock medium keeps what was flashed.
    let mut script = String::from("set -e\n");
    let mut ran = 0;
    for cmd in readme_commands() {
        if cmd.contains("start-console") {
            continue; // needs a terminal: the next test
        }
        // The README shows two lines of `j power read`.
        let line = if cmd == "j power read" {
            format!("{cmd} > read.txt")
        } else {
            cmd.clone()
        };
        script.push_str(&format!("echo '$ {cmd}'\n{line}\n"));
        ran += 1;
    }
    assert!(ran >= 4, "only {ran} commands found in README: {script}");
    let out = shell(dir.path(), &script);
    assert!(
        out.status.success(),
        "a README command failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let read = std::fs::read_to_string(dir.path().join("read.txt")).unwrap();
    assert!(
        read.lines().count() >= 2 && read.contains("voltage="),
        "{read}"
    );
    // The dump the README makes holds what was flashed last (the raw image).
    let out = Command::new("gzip")
        .args(["-dc", "back.img.gz"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.len() >= image.len(), "{}", out.stdout.len());
    assert!(out.stdout[..image.len()] == image[..], "the dump differs");
}

#[test]
fn the_readme_console_runs_in_a_terminal_and_leaves_on_three_ctrl_b() {
    let cmd = readme_commands()
        .into_iter()
        .find(|c| c.contains("start-console"))
        .expect("README shows the console");
    let dir = tempfile::tempdir().unwrap();
    let term = PtyDevice::terminal().unwrap();
    let mut jmp_cmd = Command::new(jmp());
    clean(&mut jmp_cmd)
        .current_dir(dir.path())
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--exporter-config")
        .arg(demo())
        .args(["--", "sh", "-c", &cmd])
        .stdin(term.open_slave().unwrap())
        .stdout(term.open_slave().unwrap())
        .stderr(term.open_slave().unwrap());
    let mut child = jmp_cmd.spawn().unwrap();
    assert!(
        term.wait_for(b"exit with CTRL+B x 3 times", T),
        "{:?}",
        String::from_utf8_lossy(&term.received())
    );
    term.clear();
    // loop:// sends back what is typed.
    term.write(b"hello from the readme").unwrap();
    assert!(
        term.wait_for(b"hello from the readme", T),
        "{:?}",
        String::from_utf8_lossy(&term.received())
    );
    term.write(b"\x02\x02\x02").unwrap();
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the console did not leave");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
