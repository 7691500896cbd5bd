//! The storage interfaces (drivers notes §2.4) and their typed clients.
//!
//! The transfer methods take a resource handle the driver opens itself (`#[raw]`: a bad
//! handle is reported by the resource layer, as before). The typed clients' hand-written
//! methods (`write`, `read`, `flash`, `dump`) make the handle from a local file or URL; the
//! generated ones that take a handle are `*_handle`.

use std::path::Path;

use jumpstarter_core::{CallContext, ClientError, DriverError, Value};
use serde_json::json;

use super::transfer::{Source, Transfer, receive_into, send_source};

/// Upstream's `StorageMuxInterface` (and `StorageMuxFlasherInterface`, the same methods).
#[jumpstarter_core::interface(client = StorageMuxClient)]
pub trait StorageMux {
    /// Connect storage to host
    async fn host(&self) -> Result<(), DriverError>;
    /// Connect storage to dut
    async fn dut(&self) -> Result<(), DriverError>;
    /// Disconnect storage
    async fn off(&self) -> Result<(), DriverError>;
    /// Write an image to the storage
    #[client = "write_handle"]
    async fn write(&self, ctx: &CallContext, #[raw] src: Value) -> Result<(), DriverError>;
    /// Read the storage
    #[client = "read_handle"]
    async fn read(&self, ctx: &CallContext, #[raw] dst: Value) -> Result<(), DriverError>;
}

/// Upstream's `FlasherInterface`: each `partition` (null: the default one) is flashed from
/// and dumped into a resource handle.
#[jumpstarter_core::interface(client = FlasherClient)]
pub trait Flasher {
    /// Flash an image
    #[client = "flash_handle"]
    async fn flash(
        &self,
        ctx: &CallContext,
        #[raw] source: Value,
        partition: Option<String>,
    ) -> Result<(), DriverError>;
    /// Dump an image
    #[client = "dump_handle"]
    async fn dump(
        &self,
        ctx: &CallContext,
        #[raw] target: Value,
        partition: Option<String>,
    ) -> Result<(), DriverError>;
}

impl StorageMuxClient {
    /// Writes a local file (or URL) to the medium (upstream's `write_local_file`).
    pub async fn write(&self, source: &Source, opts: &Transfer) -> Result<(), ClientError> {
        send_source(&self.driver, "write", vec![], source, opts)
            .await
            .map(drop)
    }

    /// Reads the medium into a local file.
    pub async fn read(&self, path: &Path, opts: &Transfer) -> Result<(), ClientError> {
        receive_into(&self.driver, "read", vec![], path, opts)
            .await
            .map(drop)
    }

    /// host → write → dut; dut also when the write fails.
    pub async fn flash(&self, source: &Source, opts: &Transfer) -> Result<(), ClientError> {
        self.host().await?;
        let written = self.write(source, opts).await;
        let dut = self.dut().await;
        written?;
        dut
    }

    /// host → read → dut.
    pub async fn dump(&self, path: &Path, opts: &Transfer) -> Result<(), ClientError> {
        self.host().await?;
        let read = self.read(path, opts).await;
        let dut = self.dut().await;
        read?;
        dut
    }
}

impl FlasherClient {
    /// Flashes a local file (or URL) to `target` (the default partition when `None`).
    pub async fn flash(
        &self,
        source: &Source,
        target: Option<&str>,
        opts: &Transfer,
    ) -> Result<Value, ClientError> {
        send_source(&self.driver, "flash", vec![json!(target)], source, opts).await
    }

    /// Dumps `target` (the default partition when `None`) into a local file, atomically.
    pub async fn dump(
        &self,
        path: &Path,
        target: Option<&str>,
        opts: &Transfer,
    ) -> Result<Value, ClientError> {
        receive_into(&self.driver, "dump", vec![json!(target)], path, opts).await
    }
}

#[cfg(test)]
mod tests {
    use jumpstarter_core::{Driver, Logger, Method, Param};

    use crate::storage::*;

    /// The tables as they were written by hand before the interfaces declared them: the
    /// declarations must keep the wire (names, kinds, parameters, help) exactly.
    const MUX_METHODS: &[Method] = &[
        Method::unary("host").help("Connect storage to host"),
        Method::unary("dut").help("Connect storage to dut"),
        Method::unary("off").help("Disconnect storage"),
        Method::unary("write")
            .params(&[Param::required("src")])
            .help("Write an image to the storage"),
        Method::unary("read")
            .params(&[Param::required("dst")])
            .help("Read the storage"),
    ];

    const FLASHER_METHODS: &[Method] = &[
        Method::unary("flash")
            .params(&[Param::required("source"), Param::optional("partition")])
            .help("Flash an image"),
        Method::unary("dump")
            .params(&[Param::required("target"), Param::optional("partition")])
            .help("Dump an image"),
    ];

    #[test]
    fn the_declared_tables_are_the_wire_tables() {
        for client in [STORAGE_MUX_CLIENT, STORAGE_MUX_FLASHER_CLIENT] {
            let mux = MockStorageMux::new(client, Logger::detached("m")).unwrap();
            assert_eq!(mux.methods(), MUX_METHODS);
            assert_eq!(mux.client(), client, "each instance keeps its client class");
        }
        let flasher = MockFlasher::new(Logger::detached("f")).unwrap();
        assert_eq!(flasher.methods(), FLASHER_METHODS);
        assert_eq!(flasher.client(), FLASHER_CLIENT);
    }
}
