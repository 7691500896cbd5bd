//! The status a session reports through `GetStatus`.

use jumpstarter_protocol::v1::{ExporterStatus, GetStatusResponse};

/// Current status, its message, a version that grows with every update (repeats included),
/// and the status before the last update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusState {
    pub status: ExporterStatus,
    pub message: String,
    pub version: u64,
    pub previous: Option<ExporterStatus>,
}

impl Default for StatusState {
    fn default() -> Self {
        StatusState {
            status: ExporterStatus::Available,
            message: String::new(),
            version: 0,
            previous: None,
        }
    }
}

impl StatusState {
    pub fn update(&mut self, status: ExporterStatus, message: String) {
        self.previous = Some(self.status);
        self.status = status;
        self.message = message;
        self.version += 1;
    }

    /// Whether driver calls are allowed: while the lease is ready and while hooks run.
    pub fn accepts_calls(&self) -> bool {
        matches!(
            self.status,
            ExporterStatus::LeaseReady
                | ExporterStatus::BeforeLeaseHook
                | ExporterStatus::AfterLeaseHook
        )
    }

    pub fn to_response(&self) -> GetStatusResponse {
        GetStatusResponse {
            status: self.status as i32,
            message: Some(self.message.clone()),
            status_version: self.version,
            previous_status: self.previous.map(|p| p as i32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn updates_count_repeats_and_remember_previous() {
        let mut s = StatusState::default();
        assert_eq!(s.to_response().previous_status, None);
        s.update(
            ExporterStatus::BeforeLeaseHook,
            "Running beforeLease hook".into(),
        );
        s.update(ExporterStatus::LeaseReady, "Ready for commands".into());
        s.update(ExporterStatus::LeaseReady, "Ready for commands".into());
        assert_eq!(s.version, 3);
        assert_eq!(s.previous, Some(ExporterStatus::LeaseReady));
    }

    #[test]
    fn encoding_matches_the_wire_example() {
        // 08 04 12 12 "Ready for commands" 18 03 20 03
        let mut s = StatusState::default();
        s.update(ExporterStatus::Available, String::new());
        s.update(ExporterStatus::BeforeLeaseHook, String::new());
        s.update(ExporterStatus::LeaseReady, "Ready for commands".into());
        let bytes = s.to_response().encode_to_vec();
        let mut want = vec![0x08, 0x04, 0x12, 0x12];
        want.extend_from_slice(b"Ready for commands");
        want.extend_from_slice(&[0x18, 0x03, 0x20, 0x03]);
        assert_eq!(bytes, want);
    }
}
