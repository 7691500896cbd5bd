//! The one place where Jumpstarter runs and stops child processes: the Shell driver's scripts,
//! lifecycle hooks, driver hosts and `jmp shell`'s command.
//!
//! * [`GroupChild::spawn`]: a tokio command started in a process group of its own (or, for a
//!   command that needs our terminal, in ours), optionally carrying a [`Tag`];
//! * [`Family`]: what belongs to one run (its process group and every process carrying its
//!   tag, also those that left the group), and stopping it: SIGTERM, then SIGKILL after a
//!   grace period the caller passes in (`JMP_KILL_GRACE` is read by the callers, so this crate
//!   needs no configuration of its own);
//! * [`exit`]: exit statuses as the codes each caller reports (Python's `-N`, a shell's
//!   `128+N`, 126/127 for a command that cannot start).
//!
//! Why this is written here rather than taken from a crate: spawning into a new group is one
//! call of std's `CommandExt::process_group`, and the crates that wrap it (process groups for
//! std or tokio children) stop at signalling the group. What the callers need beyond that is
//! specific: telling live processes from zombies (an orphan stays a zombie until init reaps
//! it), finding descendants that left the group through an environment tag in
//! `/proc/<pid>/environ`, and escalating from SIGTERM to SIGKILL while reaping a tokio child
//! that other code is also waiting on. That is a few hundred lines on `nix` (and its `libc`).
//!
//! Scans of `/proc` read one file per process and so block: the async functions run them on
//! tokio's blocking threads ([`tokio::task::spawn_blocking`]); only the synchronous
//! `*_blocking` functions and the drop guards scan in place.

pub mod exit;
mod family;
mod group_child;
mod procfs;

pub use family::{Family, KILL_WAIT, Tag};
pub use group_child::{Group, GroupChild, SpawnError};
pub use procfs::is_live;

pub use nix::sys::signal::Signal;
pub use nix::unistd::Pid;
