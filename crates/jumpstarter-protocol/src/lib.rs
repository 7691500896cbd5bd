//! The Jumpstarter wire protocol, and nothing else.
//!
//! * [`v1`] and [`client_v1`]: code generated at build time from our own `.proto` files in
//!   `proto/` (packages `jumpstarter.v1` and `jumpstarter.client.v1`). Field names, numbers and
//!   types match upstream Jumpstarter 0.9.0, so messages are byte-identical on the wire. No
//!   other crate in the workspace generates protocol code.
//! * [`value`]: the `google.protobuf.Value` <-> JSON codec with upstream's semantics.
//! * [`frames`]: small constructors for `RouterService.Stream` frames.
//! * [`wire`]: wire facts outside the `.proto` files (report labels and class strings, HTTP/2
//!   settings of session connections, the hook-warning status prefix).

/// Generated code, nested the way prost expects the packages to be.
#[allow(clippy::all, missing_docs)]
pub mod jumpstarter {
    pub mod v1 {
        tonic::include_proto!("jumpstarter.v1");
    }
    pub mod client {
        pub mod v1 {
            tonic::include_proto!("jumpstarter.client.v1");
        }
    }
}

pub use jumpstarter::client::v1 as client_v1;
pub use jumpstarter::v1;

pub mod frames;
pub mod value;
pub mod wire;

/// The encoded `FileDescriptorSet` of every `.proto` file in this crate (well-known imports
/// included). Used by the schema interop test to compare against upstream's descriptors.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// gRPC metadata keys used by Jumpstarter.
pub mod metadata {
    /// Request metadata selecting the target of a `RouterService.Stream` inside a session.
    pub const REQUEST: &str = "request";
    /// Response metadata carrying the resource handle of a resource stream.
    pub const RESOURCE: &str = "resource";
    /// Response metadata: the content encoding the exporter accepts for a resource stream.
    pub const ACCEPT_ENCODING: &str = "x_jmp_accept_encoding";
    /// Direct-mode passphrase.
    pub const PASSPHRASE: &str = "x-jumpstarter-passphrase";
}
