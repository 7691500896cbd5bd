//! Interop tests against the pinned upstream Jumpstarter 0.9.0 live in `tests/`; this crate
//! has no library code. Run them with `cargo test -p jumpstarter-interop` after
//! `scripts/setup-interop-venv.sh` and a build of our binaries (`cargo build --bins`).
