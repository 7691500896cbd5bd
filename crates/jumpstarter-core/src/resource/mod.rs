//! Resources: byte streams a driver method opens by handle (flash an image, dump a disk).
//!
//! A client opens a `RouterService.Stream` with `kind: resource` on a driver; the session
//! creates a [`pipe`], keeps the session end for the stream bridge, and registers the driver
//! end in that driver instance's [`Resources`] under a fresh uuid. The client passes the handle
//! (`{"kind": "client_stream", "uuid": ..., "x_jmp_content_encoding": ...}`) as an argument to
//! a method of the *same* driver, which opens it through its [`CallContext`]. Handles are single
//! use; a handle given to another driver is not found there.
//!
//! A `presigned_request` handle (`{"kind": "presigned_request", "url", "method", "headers"}`)
//! makes the exporter do the transfer itself over HTTP (GET to read, PUT to write).

pub mod encoding;
mod http;
mod pipe;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use uuid::Uuid;

pub use encoding::Encoding;
pub use pipe::{PipeEnd, PipeReader, PipeWriter, pipe, pipe_with_capacity};

use crate::driver::{DriverError, Value};
use encoding::{BoxRead, BoxWrite};

/// Default limit for a presigned HTTP transfer (upstream's).
pub const PRESIGNED_TIMEOUT: Duration = Duration::from_secs(7200);

/// A resource handle as it appears in a method's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Handle {
    /// Bytes the client streams to or from the exporter.
    ClientStream {
        uuid: String,
        #[serde(default)]
        x_jmp_content_encoding: Option<String>,
    },
    /// An HTTP request the exporter makes itself.
    PresignedRequest {
        #[serde(default)]
        headers: BTreeMap<String, String>,
        url: String,
        method: HttpMethod,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "PUT")]
    Put,
}

impl Handle {
    /// The client-stream uuids among a call's arguments.
    pub fn client_streams_in(args: &[Value]) -> Vec<Uuid> {
        args.iter()
            .filter_map(|a| match serde_json::from_value::<Handle>(a.clone()) {
                Ok(Handle::ClientStream { uuid, .. }) => Uuid::parse_str(&uuid).ok(),
                _ => None,
            })
            .collect()
    }
}

struct Pending {
    end: PipeEnd,
    encoding: Option<Encoding>,
}

/// The client streams registered on one driver instance and not yet opened.
#[derive(Clone, Default)]
pub struct Resources {
    inner: Arc<Mutex<HashMap<Uuid, Pending>>>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("pending", &self.len())
            .finish()
    }
}

impl Resources {
    pub fn new() -> Resources {
        Resources::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Pending>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new client stream: returns its uuid and the session's end of the pipe.
    /// `encoding` is how the bytes on the wire are encoded (None: raw).
    pub fn create(&self, encoding: Option<Encoding>) -> (Uuid, PipeEnd) {
        let (session, driver) = pipe();
        let uuid = Uuid::new_v4();
        self.lock().insert(
            uuid,
            Pending {
                end: driver,
                encoding,
            },
        );
        (uuid, session)
    }

    fn take(&self, uuid: &Uuid) -> Option<Pending> {
        self.lock().remove(uuid)
    }

    /// Drops a handle nobody opened, ending its stream cleanly (the client's download side
    /// sees the end of the data; what it uploaded and nobody read is freed).
    pub fn discard(&self, uuid: &Uuid) {
        if let Some(mut p) = self.take(uuid) {
            p.end.end_writes();
        }
    }

    /// Drops a handle nobody opened because its stream is over (ended or reset): the bytes
    /// it buffered are freed. A handle already opened is not affected.
    pub fn forget(&self, uuid: &Uuid) {
        drop(self.take(uuid));
    }

    /// Drops every handle not yet opened (the session ends): their streams end and what
    /// they buffered is freed. Returns how many there were.
    pub fn clear(&self) -> usize {
        let pending: Vec<Pending> = self.lock().drain().map(|(_, p)| p).collect();
        pending.len()
    }

    /// Handles registered and not yet opened.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a driver method gets besides its arguments.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    resources: Resources,
}

impl CallContext {
    pub fn new(resources: Resources) -> CallContext {
        CallContext { resources }
    }

    /// Opens a resource handle (a method argument). Each client-stream handle opens once.
    pub async fn open_resource(&self, handle: &Value) -> Result<Resource, DriverError> {
        let parsed: Handle = serde_json::from_value(handle.clone()).map_err(|e| {
            DriverError::invalid(format!(
                "expected a resource handle (an object with kind client_stream or presigned_request), got {handle}: {e}"
            ))
        })?;
        match parsed {
            Handle::ClientStream { uuid, .. } => {
                let id = Uuid::parse_str(&uuid).map_err(|_| {
                    DriverError::invalid(format!("resource handle uuid `{uuid}` is not a uuid"))
                })?;
                let pending = self.resources.take(&id).ok_or_else(|| {
                    DriverError::Other(format!(
                        "resource {id} not found on this driver: a handle opens once, on the driver it was created for"
                    ))
                })?;
                Ok(Resource::from_pipe(pending.end, pending.encoding))
            }
            Handle::PresignedRequest {
                headers,
                url,
                method,
            } => match method {
                HttpMethod::Get => http::get(&url, &headers, PRESIGNED_TIMEOUT).await,
                HttpMethod::Put => http::put(&url, &headers, PRESIGNED_TIMEOUT),
            },
        }
    }
}

type Finish = Pin<Box<dyn Future<Output = Result<(), DriverError>> + Send>>;

/// An opened resource: read it (the client's upload, decoded) or write it (the download,
/// encoded). Call [`Resource::close`] after writing: only a close marks the end of the data.
pub struct Resource {
    reader: Reader,
    writer: BoxWrite,
    finish: Option<Finish>,
    what: String,
    /// Reads go through a decoder: its failures mean bad data, not a broken transport.
    decoded: bool,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("what", &self.what)
            .finish()
    }
}

/// Where an opened resource's bytes come from: a raw upload is read chunk by chunk as the
/// session received it (no copies); anything else through a reader.
enum Reader {
    Pipe(PipeReader),
    Boxed(BoxRead),
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Pipe(p) => Pin::new(p).poll_read(cx, buf),
            Reader::Boxed(r) => r.as_mut().poll_read(cx, buf),
        }
    }
}

impl Resource {
    fn from_pipe(end: PipeEnd, encoding: Option<Encoding>) -> Resource {
        let (rd, wr) = end.into_split();
        let what = match encoding {
            Some(e) => format!("the {e} upload"),
            None => "the upload".to_owned(),
        };
        let (reader, writer): (Reader, BoxWrite) = match encoding {
            None => (Reader::Pipe(rd), Box::pin(wr)),
            Some(e) => (
                Reader::Boxed(encoding::decoder(e, rd)),
                Box::pin(encoding::LazyEncoder::new(e, wr)),
            ),
        };
        Resource {
            reader,
            writer,
            finish: None,
            what,
            decoded: encoding.is_some(),
        }
    }

    pub(crate) fn new(
        reader: BoxRead,
        writer: BoxWrite,
        finish: Option<Finish>,
        what: String,
    ) -> Resource {
        Resource {
            reader: Reader::Boxed(reader),
            writer,
            finish,
            what,
            decoded: false,
        }
    }

    /// Ends what was written (flushes the encoder) and waits until the other side has it
    /// (for a presigned PUT: the server's answer).
    pub async fn close(mut self) -> Result<(), DriverError> {
        self.writer
            .shutdown()
            .await
            .map_err(|e| DriverError::Other(format!("cannot finish {}: {e}", self.what)))?;
        match self.finish.take() {
            Some(f) => f.await,
            None => Ok(()),
        }
    }

    /// The next chunk of the upload (up to [`COPY_CHUNK`] bytes), or None at its end. Errors
    /// are classified as in [`Resource::copy_to`]. Call [`Resource::close`] after the end.
    pub async fn read_chunk(&mut self) -> Result<Option<bytes::Bytes>, DriverError> {
        if let Reader::Pipe(p) = &mut self.reader {
            return p
                .recv_chunk()
                .await
                .map_err(|e| read_error(&self.what, e, self.decoded));
        }
        let mut buf = bytes::BytesMut::with_capacity(COPY_CHUNK);
        let n = self
            .reader
            .read_buf(&mut buf)
            .await
            .map_err(|e| read_error(&self.what, e, self.decoded))?;
        Ok((n > 0).then(|| buf.freeze()))
    }

    /// Copies everything readable from the resource into `dst` (an upload into a file or
    /// device) and closes the resource. Corrupt or truncated encoded data and a client that
    /// goes away are errors.
    pub async fn copy_to<W>(mut self, dst: &mut W) -> Result<u64, DriverError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        if let Reader::Pipe(_) = self.reader {
            let mut total = 0u64;
            while let Some(chunk) = self.read_chunk().await? {
                dst.write_all(&chunk)
                    .await
                    .map_err(|e| DriverError::io("cannot write to the target", e))?;
                total += chunk.len() as u64;
            }
            self.close().await?;
            return Ok(total);
        }
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut total = 0u64;
        loop {
            let n = self
                .reader
                .read(&mut buf)
                .await
                .map_err(|e| read_error(&self.what, e, self.decoded))?;
            if n == 0 {
                self.close().await?;
                return Ok(total);
            }
            dst.write_all(&buf[..n])
                .await
                .map_err(|e| DriverError::io("cannot write to the target", e))?;
            total += n as u64;
        }
    }

    /// Copies `src` into the resource (a dump from a file or device) and closes it.
    pub async fn copy_from<R>(mut self, src: &mut R) -> Result<u64, DriverError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut total = 0u64;
        loop {
            let n = src
                .read(&mut buf)
                .await
                .map_err(|e| DriverError::io("cannot read the source", e))?;
            if n == 0 {
                break;
            }
            self.writer.write_all(&buf[..n]).await.map_err(|e| {
                DriverError::Other(format!(
                    "cannot send {}: {e}",
                    self.what.replace("upload", "download")
                ))
            })?;
            total += n as u64;
        }
        self.close().await?;
        Ok(total)
    }
}

/// Copy buffer size for resource transfers.
pub const COPY_CHUNK: usize = 1 << 20;

fn read_error(what: &str, e: io::Error, decoded: bool) -> DriverError {
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => DriverError::Other(format!(
            "{what} ended before its end (the client went away?): {e}"
        )),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput => {
            DriverError::InvalidArgument(format!("corrupt or truncated data in {what}: {e}"))
        }
        _ if decoded => {
            DriverError::InvalidArgument(format!("corrupt or truncated data in {what}: {e}"))
        }
        _ => DriverError::io(format!("cannot read {what}"), e),
    }
}

impl AsyncRead for Resource {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resource {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writer.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.as_mut().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn handles_parse_like_upstream() {
        let h: Handle = serde_json::from_value(
            json!({"kind": "client_stream", "uuid": "u", "x_jmp_content_encoding": null}),
        )
        .unwrap();
        assert_eq!(
            h,
            Handle::ClientStream {
                uuid: "u".into(),
                x_jmp_content_encoding: None
            }
        );
        let h: Handle = serde_json::from_value(json!({"kind": "presigned_request", "headers": {}, "url": "http://x/y", "method": "PUT"})).unwrap();
        assert!(matches!(
            h,
            Handle::PresignedRequest {
                method: HttpMethod::Put,
                ..
            }
        ));
        assert!(serde_json::from_value::<Handle>(json!("a string")).is_err());
        assert!(serde_json::from_value::<Handle>(json!({"uuid": "no kind"})).is_err());
    }

    #[tokio::test]
    async fn handles_open_once_and_only_on_their_driver() {
        let (mine, other) = (Resources::new(), Resources::new());
        let (id, mut session) = mine.create(None);
        let handle = json!({"kind": "client_stream", "uuid": id.to_string(), "x_jmp_content_encoding": null});
        let err = CallContext::new(other)
            .open_resource(&handle)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DriverError::Other(ref m) if m.contains("not found on this driver")),
            "{err}"
        );
        let ctx = CallContext::new(mine.clone());
        let res = ctx.open_resource(&handle).await.unwrap();
        assert!(ctx.open_resource(&handle).await.is_err(), "second open");
        session.write_all(b"image").await.unwrap();
        session.shutdown().await.unwrap();
        let mut out = Vec::new();
        assert_eq!(res.copy_to(&mut out).await.unwrap(), 5);
        assert_eq!(out, b"image");
        assert!(mine.is_empty());
        let err = ctx.open_resource(&json!("not a handle")).await.unwrap_err();
        assert!(matches!(err, DriverError::InvalidArgument(_)));
    }

    #[tokio::test]
    async fn a_read_only_use_ends_the_other_direction_cleanly() {
        for encoding in [None, Some(Encoding::Gzip)] {
            let res = Resources::new();
            let (id, mut session) = res.create(encoding);
            let handle = json!({"kind": "client_stream", "uuid": id.to_string()});
            let r = CallContext::new(res).open_resource(&handle).await.unwrap();
            session.shutdown().await.unwrap();
            r.copy_to(&mut Vec::new()).await.unwrap();
            // The client's download direction sees a clean end and no bytes at all.
            let mut back = Vec::new();
            session.read_to_end(&mut back).await.unwrap();
            assert!(back.is_empty(), "{encoding:?}: {back:?}");
        }
    }

    #[tokio::test]
    async fn an_upload_cut_short_is_an_error_not_a_short_success() {
        let res = Resources::new();
        let (id, mut session) = res.create(None);
        let handle = json!({"kind": "client_stream", "uuid": id.to_string()});
        let r = CallContext::new(res).open_resource(&handle).await.unwrap();
        session.write_all(b"part").await.unwrap();
        drop(session);
        let mut out = Vec::new();
        let err = r.copy_to(&mut out).await.unwrap_err();
        assert!(err.to_string().contains("ended before its end"), "{err}");
    }

    #[tokio::test]
    async fn encoded_uploads_are_decoded_and_downloads_encoded() {
        let res = Resources::new();
        let (id, mut session) = res.create(Some(Encoding::Zstd));
        let handle = json!({"kind": "client_stream", "uuid": id.to_string(), "x_jmp_content_encoding": "zstd"});
        let ctx = CallContext::new(res);
        let r = ctx.open_resource(&handle);
        let mut compressed = Vec::new();
        {
            let mut w = encoding::encoder(Encoding::Zstd, &mut compressed);
            w.write_all(b"decoded on the exporter").await.unwrap();
            w.shutdown().await.unwrap();
        }
        let writer = tokio::spawn(async move {
            session.write_all(&compressed).await.unwrap();
            session.shutdown().await.unwrap();
            let mut back = Vec::new();
            session.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut r = r.await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"decoded on the exporter");
        r.copy_from(&mut &b"dump"[..]).await.unwrap();
        let back = writer.await.unwrap();
        assert_eq!(Encoding::from_magic(&back), Some(Encoding::Zstd));
    }

    #[tokio::test]
    async fn corrupt_encoded_uploads_are_invalid_arguments() {
        let res = Resources::new();
        let (id, mut session) = res.create(Some(Encoding::Gzip));
        let handle = json!({"kind": "client_stream", "uuid": id.to_string()});
        let feeder = tokio::spawn(async move {
            session
                .write_all(&[0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff])
                .await
                .unwrap();
            session.shutdown().await.unwrap();
        });
        let r = CallContext::new(res).open_resource(&handle).await.unwrap();
        let err = r.copy_to(&mut Vec::new()).await.unwrap_err();
        assert!(matches!(err, DriverError::InvalidArgument(_)), "{err}");
        feeder.await.unwrap();
    }
}
