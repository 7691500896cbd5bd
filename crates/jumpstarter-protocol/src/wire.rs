//! Facts about the wire that are not in the `.proto` files: label keys and class strings in
//! `GetReport`, the HTTP/2 settings of session connections, and the marker of a hook warning
//! in a status message. Every crate that writes or reads one of these uses the constant here.

/// `DriverInstanceReport.labels` key holding the client class path of a driver: upstream's
/// exporter reports it for every node, and upstream's client imports that class to drive it.
pub const CLIENT_LABEL: &str = "jumpstarter.dev/client";

/// `DriverInstanceReport.labels` key holding a node's name under its parent; upstream leaves it
/// off the root, and its client builds the attribute tree (`root.power`...) from it.
pub const NAME_LABEL: &str = "jumpstarter.dev/name";

/// Client class upstream's Composite driver reports: a node that only groups its children.
pub const COMPOSITE_CLIENT: &str = "jumpstarter_driver_composite.client.CompositeClient";

/// Upstream's generic client class (`jumpstarter.client.DriverClient`), which any upstream
/// client can load without a driver package; reported for a hosted subtree whose host is not
/// available, so calls reach the exporter and fail there with the host's error.
pub const UNAVAILABLE_CLIENT: &str = "jumpstarter.client.DriverClient";

/// How the description of that stand-in starts; the host's reason follows (`j` shows it).
pub const UNAVAILABLE_DESCRIPTION: &str = "unavailable: ";

/// Initial HTTP/2 stream flow-control window advertised on session connections (4 MiB).
/// Upstream's grpcio sizes its windows by probing instead of fixing them; a fixed window this
/// large lets one stream move bulk data at memory speed, and peers honour any advertised value.
pub const STREAM_WINDOW: u32 = 4 << 20;

/// Initial HTTP/2 connection flow-control window advertised on session connections (8 MiB):
/// room for two streams at full [`STREAM_WINDOW`]; like it, a value any HTTP/2 peer accepts.
pub const CONNECTION_WINDOW: u32 = 8 << 20;

/// Largest HTTP/2 frame accepted on session connections (`SETTINGS_MAX_FRAME_SIZE`, 1 MiB;
/// HTTP/2 allows 16 KiB to 16 MiB). A receive-side limit: upstream's peers still send frames
/// of the size they choose up to it, so no message changes on the wire.
pub const MAX_FRAME_SIZE: u32 = 1 << 20;

/// Prefix of an `ExporterStatus` message that carries a hook warning (an `onFailure: warn`
/// hook that failed), as upstream's exporter writes it: the lease goes on, and the client
/// strips the prefix and shows the rest as a warning.
pub const HOOK_WARNING_PREFIX: &str = "[HOOK_WARNING] ";
