//! The Opendal interface (drivers notes §2.4) and `OpendalClient`.
//!
//! The methods carry no help text (upstream's carry none), so the declaration uses plain
//! comments, not doc comments: a doc comment's first paragraph would become the method's help.

use std::sync::Arc;

use jumpstarter_core::client::Progress;
use jumpstarter_core::interface::Items;
use jumpstarter_core::{CallContext, ClientError, DriverError, Value};
use tokio::io::{AsyncRead, AsyncWrite};

/// Upstream's `Opendal` driver surface: files opened by path and addressed by a uuid `fd`,
/// transfers through resource handles, and the operator's path operations.
#[jumpstarter_core::interface(client = OpendalClient)]
pub trait OpendalInterface {
    // Opens `path` in mode `rb` or `wb`; returns the fd (a uuid string).
    async fn open(&self, path: String, mode: String) -> Result<String, DriverError>;
    // Sends the rest of the file (from its position) into the handle `dst`.
    async fn file_read(
        &self,
        ctx: &CallContext,
        fd: String,
        #[raw] dst: Value,
    ) -> Result<(), DriverError>;
    // Appends everything the handle `src` yields.
    async fn file_write(
        &self,
        ctx: &CallContext,
        fd: String,
        #[raw] src: Value,
    ) -> Result<(), DriverError>;
    // Python's `seek(pos, whence)`; returns the new position.
    async fn file_seek(
        &self,
        fd: String,
        pos: i64,
        #[default] whence: i64,
    ) -> Result<u64, DriverError>;
    async fn file_tell(&self, fd: String) -> Result<u64, DriverError>;
    async fn file_close(&self, fd: String) -> Result<(), DriverError>;
    async fn file_closed(&self, fd: String) -> Result<bool, DriverError>;
    async fn file_readable(&self, fd: String) -> Result<bool, DriverError>;
    async fn file_seekable(&self, fd: String) -> Result<bool, DriverError>;
    async fn file_writable(&self, fd: String) -> Result<bool, DriverError>;
    // The entry's metadata (upstream's `Metadata` model, as JSON).
    async fn stat(&self, path: String) -> Result<Value, DriverError>;
    // The hex digest of the content; `algo` is `md5` or `sha256`.
    async fn hash(
        &self,
        path: String,
        #[default(String::from("sha256"))] algo: String,
    ) -> Result<String, DriverError>;
    async fn copy(&self, source: String, target: String) -> Result<(), DriverError>;
    async fn rename(&self, source: String, target: String) -> Result<(), DriverError>;
    async fn remove_all(&self, path: String) -> Result<(), DriverError>;
    async fn create_dir(&self, path: String) -> Result<(), DriverError>;
    async fn delete(&self, path: String) -> Result<(), DriverError>;
    async fn exists(&self, path: String) -> Result<bool, DriverError>;
    // The entries under `path`, one path per item.
    #[streaming]
    fn list(self: Arc<Self>, path: String) -> Result<Items<String>, DriverError>;
    // As `list`, recursively.
    #[streaming]
    fn scan(self: Arc<Self>, path: String) -> Result<Items<String>, DriverError>;
    // Presigned requests: `{"url", "method", "headers"}`.
    async fn presign_stat(&self, path: String, expire_second: u64) -> Result<Value, DriverError>;
    async fn presign_read(&self, path: String, expire_second: u64) -> Result<Value, DriverError>;
    async fn presign_write(&self, path: String, expire_second: u64) -> Result<Value, DriverError>;
    // The service's capabilities (upstream's `Capability` model, as JSON).
    async fn capability(&self) -> Result<Value, DriverError>;
    // The paths this session created (normalized, sorted).
    async fn get_created_resources(&self) -> Result<Vec<String>, DriverError>;
    // Counts `path` as created by this session.
    async fn register_path(&self, path: String) -> Result<(), DriverError>;
}

impl OpendalClient {
    /// Writes everything `src` yields to `path` (upstream's `write_bytes` / `write_from_path`):
    /// open wb, `file_write(fd, handle)`, close.
    pub async fn write_from<R>(
        &self,
        path: &str,
        src: R,
        progress: Option<Progress>,
    ) -> Result<(), ClientError>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let fd = self.open(path.to_owned(), "wb".to_owned()).await?;
        let fd_arg = Value::String(fd.clone());
        let written = self
            .driver
            .upload("file_write", move |h| vec![fd_arg, h], src, None, progress)
            .await;
        let closed = self.file_close(fd).await;
        written?;
        closed
    }

    /// Reads `path` into `dst`: open rb, `file_read(fd, handle)`, close.
    pub async fn read_into<W>(
        &self,
        path: &str,
        dst: W,
        progress: Option<Progress>,
    ) -> Result<(), ClientError>
    where
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let fd = self.open(path.to_owned(), "rb".to_owned()).await?;
        let fd_arg = Value::String(fd.clone());
        let read = self
            .driver
            .download("file_read", move |h| vec![fd_arg, h], dst, None, progress)
            .await;
        let closed = self.file_close(fd).await;
        read?;
        closed
    }

    /// Any method, raw.
    pub async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value, ClientError> {
        self.driver.call(method, args).await
    }
}

#[cfg(test)]
mod tests {
    use jumpstarter_core::{Driver, Logger, Method, Param};

    use crate::opendal::{OPENDAL_CLIENT, Opendal, OpendalConfig};

    const fn p(name: &'static str) -> Param {
        Param::required(name)
    }

    /// The table as it was written by hand before the interface declared it: the declaration
    /// must keep the wire (names, kinds, parameters, no help) exactly.
    const METHODS: &[Method] = &[
        Method::unary("open").params(&[p("path"), p("mode")]),
        Method::unary("file_read").params(&[p("fd"), p("dst")]),
        Method::unary("file_write").params(&[p("fd"), p("src")]),
        Method::unary("file_seek").params(&[p("fd"), p("pos"), Param::optional("whence")]),
        Method::unary("file_tell").params(&[p("fd")]),
        Method::unary("file_close").params(&[p("fd")]),
        Method::unary("file_closed").params(&[p("fd")]),
        Method::unary("file_readable").params(&[p("fd")]),
        Method::unary("file_seekable").params(&[p("fd")]),
        Method::unary("file_writable").params(&[p("fd")]),
        Method::unary("stat").params(&[p("path")]),
        Method::unary("hash").params(&[p("path"), Param::optional("algo")]),
        Method::unary("copy").params(&[p("source"), p("target")]),
        Method::unary("rename").params(&[p("source"), p("target")]),
        Method::unary("remove_all").params(&[p("path")]),
        Method::unary("create_dir").params(&[p("path")]),
        Method::unary("delete").params(&[p("path")]),
        Method::unary("exists").params(&[p("path")]),
        Method::streaming("list").params(&[p("path")]),
        Method::streaming("scan").params(&[p("path")]),
        Method::unary("presign_stat").params(&[p("path"), p("expire_second")]),
        Method::unary("presign_read").params(&[p("path"), p("expire_second")]),
        Method::unary("presign_write").params(&[p("path"), p("expire_second")]),
        Method::unary("capability"),
        Method::unary("get_created_resources"),
        Method::unary("register_path").params(&[p("path")]),
    ];

    #[test]
    fn the_declared_table_is_the_wire_table() {
        let cfg: OpendalConfig =
            serde_json::from_value(serde_json::json!({"scheme": "memory"})).unwrap();
        let driver = Opendal::new(cfg, Logger::detached("o")).unwrap();
        assert_eq!(driver.methods(), METHODS);
        assert_eq!(driver.client(), OPENDAL_CLIENT);
    }
}
