//! The hook half of a lease: run `beforeLease` / `afterLease` and walk the session status the
//! way upstream reports it (protocol notes §6.1):
//!
//! ```text
//! AVAILABLE -> BEFORE_LEASE_HOOK "Running beforeLease hook" -> LEASE_READY "Ready for commands"
//!           -> AFTER_LEASE_HOOK "Running afterLease hooks"  -> AVAILABLE "Available for new lease"
//! ```
//!
//! Without a hook the hook state is skipped. A failing hook does what its `onFailure` says:
//! `warn` continues with a `[HOOK_WARNING] ` message, `endLease` reports
//! BEFORE/AFTER_LEASE_HOOK_FAILED, `exit` reports that too and the caller stops the exporter
//! (reporting OFFLINE once clients had a moment to see the failure: upstream's clients wait for
//! the FAILED status and would miss it if OFFLINE followed at once). Used by direct mode now, and by controller mode per lease later.

use jumpstarter_config::{Hook, HookFailure};
use jumpstarter_core::Session;
use jumpstarter_core::logs::Level;
use jumpstarter_protocol::v1::ExporterStatus;
use jumpstarter_protocol::wire::HOOK_WARNING_PREFIX;
use tokio_util::sync::CancellationToken;

use crate::hooks::{self, HookEnv, HookError, HookKind};

/// How a hook phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookPhase {
    /// No hook, or the hook succeeded.
    Done,
    /// The hook failed with `onFailure: warn`; the lease goes on.
    Warned(HookError),
    /// The hook failed with `onFailure: endLease`.
    EndLease(HookError),
    /// The hook failed with `onFailure: exit`: the exporter must stop.
    Exit(HookError),
    /// The exporter is stopping and killed the hook.
    Interrupted,
}

fn apply_failure(kind: HookKind, hook: &Hook, session: &Session, err: HookError) -> HookPhase {
    let out = session
        .logs()
        .logger(kind.logger_name(), kind.source(), Level::Debug);
    let name = kind.name();
    match hook.on_failure {
        HookFailure::Warn => {
            out.warning(format!("{err} (on_failure=warn, continuing)"));
            HookPhase::Warned(err)
        }
        HookFailure::EndLease => {
            out.error(format!("{err} (on_failure=endLease)"));
            session.set_status(
                failed_status(kind),
                format!("{name} hook failed (on_failure=endLease): {err}"),
            );
            HookPhase::EndLease(err)
        }
        HookFailure::Exit => {
            out.error(format!("{err} (on_failure=exit)"));
            // The caller reports OFFLINE once clients had time to see the failure.
            session.set_status(
                failed_status(kind),
                format!("{name} hook failed (on_failure=exit, shutting down): {err}"),
            );
            HookPhase::Exit(err)
        }
    }
}

fn failed_status(kind: HookKind) -> ExporterStatus {
    match kind {
        HookKind::BeforeLease => ExporterStatus::BeforeLeaseHookFailed,
        HookKind::AfterLease => ExporterStatus::AfterLeaseHookFailed,
    }
}

/// Runs the `beforeLease` hook (if any) and moves the session to LEASE_READY or the failure
/// status. `cancel` interrupts the hook (the status is then left as it is).
pub async fn before_lease(
    session: &Session,
    hook: Option<&Hook>,
    env: &HookEnv,
    cancel: &CancellationToken,
) -> HookPhase {
    let system = session.logs().system_logger();
    let Some(hook) = hook else {
        session.set_status(ExporterStatus::LeaseReady, "Ready for commands");
        return HookPhase::Done;
    };
    session.set_status(ExporterStatus::BeforeLeaseHook, "Running beforeLease hook");
    system.info(format!(
        "Executing beforeLease hook for lease {}",
        env.lease_name
    ));
    let run = hooks::run(hook, HookKind::BeforeLease, env, session.logs(), cancel).await;
    if let Some(motd) = &run.motd {
        session.append_motd(motd);
    }
    match run.result {
        Ok(()) => {
            session.set_status(ExporterStatus::LeaseReady, "Ready for commands");
            system.info("beforeLease hook completed successfully");
            HookPhase::Done
        }
        Err(HookError::Interrupted) => {
            system.warning("beforeLease hook interrupted: the exporter is stopping");
            HookPhase::Interrupted
        }
        Err(err) => {
            let phase = apply_failure(HookKind::BeforeLease, hook, session, err.clone());
            if let HookPhase::Warned(_) = phase {
                session.set_status(
                    ExporterStatus::LeaseReady,
                    format!("{HOOK_WARNING_PREFIX}beforeLease hook warning: {err}"),
                );
            }
            phase
        }
    }
}

/// Runs the `afterLease` hook (if any) and moves the session to AVAILABLE or the failure
/// status. `cancel` interrupts the hook.
pub async fn after_lease(
    session: &Session,
    hook: Option<&Hook>,
    env: &HookEnv,
    cancel: &CancellationToken,
) -> HookPhase {
    let system = session.logs().system_logger();
    let Some(hook) = hook else {
        session.set_status(ExporterStatus::Available, "Available for new lease");
        return HookPhase::Done;
    };
    session.set_status(ExporterStatus::AfterLeaseHook, "Running afterLease hooks");
    system.info(format!(
        "Executing afterLease hook for lease {}",
        env.lease_name
    ));
    let run = hooks::run(hook, HookKind::AfterLease, env, session.logs(), cancel).await;
    match run.result {
        Ok(()) => {
            session.set_status(ExporterStatus::Available, "Available for new lease");
            system.info("afterLease hook completed successfully");
            HookPhase::Done
        }
        Err(HookError::Interrupted) => {
            session.set_status(
                ExporterStatus::AfterLeaseHookFailed,
                format!("afterLease hook failed: {}", HookError::Interrupted),
            );
            HookPhase::Interrupted
        }
        Err(err) => {
            let phase = apply_failure(HookKind::AfterLease, hook, session, err.clone());
            if let HookPhase::Warned(_) = phase {
                session.set_status(
                    ExporterStatus::Available,
                    format!("{HOOK_WARNING_PREFIX}afterLease hook warning: {err}"),
                );
            }
            phase
        }
    }
}
