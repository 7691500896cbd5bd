//! The gRPC face of a session. Error codes and texts follow upstream (protocol notes §4.4).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use jumpstarter_protocol::frames::Frame;
use jumpstarter_protocol::v1::{
    DriverCallRequest, DriverCallResponse, EndSessionRequest, EndSessionResponse,
    GetReportResponse, GetStatusRequest, GetStatusResponse, LogStreamResponse, ResetRequest,
    ResetResponse, StreamRequest, StreamResponse, StreamingDriverCallRequest,
    StreamingDriverCallResponse, exporter_service_server::ExporterService,
    router_service_server::RouterService,
};
use jumpstarter_protocol::value::{from_proto_owned, into_proto};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::Session;
use crate::driver::{Args, DriverError, MethodKind, lookup};
use crate::limits::{Limits, global as limits};
use crate::resource::{CallContext, Encoding, Handle, PipeEnd, Resources};
use crate::stream::{
    BridgeGauge, MAX_FRAME, PumpError, READ_CHUNK, pump_from_frames, pump_to_frames,
};
use crate::tree::Instance;

type BoxResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct ExporterSvc {
    pub(super) session: Session,
}

pub struct RouterSvc {
    pub(super) session: Session,
}

impl Session {
    fn check_ready(&self) -> Result<(), Status> {
        let s = self.status();
        if s.accepts_calls() {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "Exporter not ready for driver calls (status: {})",
                s.status.as_str_name()
            )))
        }
    }

    /// Resource handles registered in this session and not yet opened.
    fn open_handles(&self) -> usize {
        self.tree()
            .instances()
            .iter()
            .map(|i| i.resources.len())
            .sum()
    }

    /// Drops every handle not yet opened: their streams end and their buffers are freed.
    fn drop_handles(&self) {
        let n: usize = self
            .tree()
            .instances()
            .iter()
            .map(|i| i.resources.clear())
            .sum();
        if n > 0 {
            tracing::debug!("{n} unused resource handles dropped at the end of the session");
        }
    }

    fn instance(&self, uuid: &str) -> Result<Arc<Instance>, Status> {
        let parsed = Uuid::parse_str(uuid).map_err(|_| {
            Status::unknown(format!("badly formed hexadecimal UUID string: '{uuid}'"))
        })?;
        self.tree().get(&parsed).cloned().ok_or_else(|| {
            Status::unknown(format!("no driver with UUID('{parsed}') in this session"))
        })
    }
}

fn driver_status(e: DriverError) -> Status {
    e.to_status()
}

#[tonic::async_trait]
impl ExporterService for ExporterSvc {
    async fn get_report(&self, _: Request<()>) -> Result<Response<GetReportResponse>, Status> {
        Ok(Response::new(self.session.full_report()))
    }

    async fn driver_call(
        &self,
        request: Request<DriverCallRequest>,
    ) -> Result<Response<DriverCallResponse>, Status> {
        let req = request.into_inner();
        self.session.check_ready()?;
        let inst = self.session.instance(&req.uuid)?;
        if let Some(host) = inst.host.as_ref() {
            return host.driver_call(req).await.map(Response::new);
        }
        let method =
            lookup(&*inst.driver, &req.method, MethodKind::Unary).map_err(driver_status)?;
        method
            .check_arity(inst.class_name(), req.args.len())
            .map_err(driver_status)?;
        let args = Args::new(req.args.into_iter().map(from_proto_owned).collect());
        tracing::debug!(driver = %inst.type_name, method = %req.method, "DriverCall");
        let handles = Handle::client_streams_in(&args.0);
        let ctx = CallContext::new(inst.resources.clone());
        let result = inst.driver.call(&req.method, args, &ctx).await;
        // Handles passed to this call are spent, opened or not.
        for h in &handles {
            inst.resources.discard(h);
        }
        let result = result.map_err(driver_status)?;
        Ok(Response::new(DriverCallResponse {
            uuid: Uuid::new_v4().hyphenated().to_string(),
            result: Some(into_proto(result)),
        }))
    }

    type StreamingDriverCallStream = BoxResponseStream<StreamingDriverCallResponse>;

    async fn streaming_driver_call(
        &self,
        request: Request<StreamingDriverCallRequest>,
    ) -> Result<Response<Self::StreamingDriverCallStream>, Status> {
        let req = request.into_inner();
        self.session.check_ready()?;
        let inst = self.session.instance(&req.uuid)?;
        if let Some(host) = inst.host.as_ref() {
            let cancel = self.session.inner.cancel.clone();
            return host
                .streaming_driver_call(req, cancel)
                .await
                .map(Response::new);
        }
        let method =
            lookup(&*inst.driver, &req.method, MethodKind::Streaming).map_err(driver_status)?;
        method
            .check_arity(inst.class_name(), req.args.len())
            .map_err(driver_status)?;
        let args = Args::new(req.args.into_iter().map(from_proto_owned).collect());
        tracing::debug!(driver = %inst.type_name, method = %req.method, "StreamingDriverCall");
        let ctx = CallContext::new(inst.resources.clone());
        let items = inst
            .driver
            .clone()
            .streaming_call(&req.method, args, ctx)
            .map_err(driver_status)?;
        let cancel = self.session.inner.cancel.clone();
        // The first error ends the stream: items already sent stay delivered.
        let stream = items
            .scan(false, |failed, item| {
                if *failed {
                    return futures::future::ready(None);
                }
                *failed = item.is_err();
                futures::future::ready(Some(item))
            })
            .map(|item| match item {
                Ok(v) => Ok(StreamingDriverCallResponse {
                    uuid: Uuid::new_v4().hyphenated().to_string(),
                    result: Some(into_proto(v)),
                }),
                Err(e) => Err(e.to_status()),
            })
            .take_until(async move { cancel.cancelled().await });
        Ok(Response::new(Box::pin(stream)))
    }

    type LogStreamStream = BoxResponseStream<LogStreamResponse>;

    async fn log_stream(&self, _: Request<()>) -> Result<Response<Self::LogStreamStream>, Status> {
        let (backlog, rx) = self.session.logs().subscribe();
        let live = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|r| {
            // A reader that falls more than the channel behind skips the records it missed.
            futures::future::ready(r.ok())
        });
        let cancel = self.session.inner.cancel.clone();
        let stream = futures::stream::iter(backlog)
            .chain(live)
            .map(|r| {
                Ok(LogStreamResponse {
                    uuid: String::new(),
                    severity: r.level.as_str().to_owned(),
                    message: r.message,
                    source: Some(r.source as i32),
                })
            })
            .take_until(async move { cancel.cancelled().await });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn reset(&self, _: Request<ResetRequest>) -> Result<Response<ResetResponse>, Status> {
        let failures = self.session.tree().reset().await;
        if failures.is_empty() {
            Ok(Response::new(ResetResponse {}))
        } else {
            let text: Vec<String> = failures.iter().map(|(d, e)| format!("{d}: {e}")).collect();
            Err(Status::unknown(format!(
                "reset failed: {}",
                text.join("; ")
            )))
        }
    }

    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        Ok(Response::new(self.session.status().to_response()))
    }

    async fn end_session(
        &self,
        _: Request<EndSessionRequest>,
    ) -> Result<Response<EndSessionResponse>, Status> {
        // The client is done: nothing it opened and did not use outlives the session.
        self.session.drop_handles();
        match self.session.end_session_handler() {
            Some(handler) => Ok(Response::new(handler().await)),
            None => Ok(Response::new(EndSessionResponse {
                success: false,
                message: Some("No active lease context".into()),
            })),
        }
    }
}

/// The `request` metadata of a stream inside a session.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum StreamTarget {
    Driver {
        uuid: String,
        method: String,
    },
    Resource {
        uuid: String,
        #[serde(default)]
        x_jmp_content_encoding: Option<String>,
    },
}

fn parse_target(request: &Request<Streaming<StreamRequest>>) -> Result<StreamTarget, Status> {
    let raw = request
        .metadata()
        .get(jumpstarter_protocol::metadata::REQUEST)
        .ok_or_else(|| Status::unknown("stream request metadata `request` is missing"))?;
    let text = raw
        .to_str()
        .map_err(|_| Status::unknown("stream request metadata `request` is not ASCII text"))?;
    serde_json::from_str(text)
        .map_err(|e| Status::unknown(format!("invalid stream request metadata `request`: {e}")))
}

#[tonic::async_trait]
impl RouterService for RouterSvc {
    type StreamStream = BoxResponseStream<StreamResponse>;

    async fn stream(
        &self,
        request: Request<Streaming<StreamRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let target = parse_target(&request)?;
        self.session.check_ready()?;
        let (StreamTarget::Driver { uuid, .. } | StreamTarget::Resource { uuid, .. }) = &target;
        let inst = self.session.instance(uuid)?;
        if let Some(host) = inst.host.as_ref() {
            let (metadata, _, inbound) = request.into_parts();
            let cancel = self.session.inner.cancel.clone();
            return host.stream(&metadata, inbound, cancel).await;
        }
        match target {
            StreamTarget::Driver { uuid, method } => {
                self.driver_stream(request, &uuid, &method).await
            }
            StreamTarget::Resource {
                uuid,
                x_jmp_content_encoding,
            } => self.resource_stream(request, &uuid, x_jmp_content_encoding),
        }
    }
}

impl RouterSvc {
    fn spawn_bridge(
        &self,
        io: crate::driver::BoxStream,
        inbound: Streaming<StreamRequest>,
    ) -> mpsc::Receiver<Result<StreamResponse, Status>> {
        let (tx, rx) = mpsc::channel(response_depth(READ_CHUNK));
        let cancel = self.session.inner.cancel.clone();
        tokio::spawn(async move {
            let _gauge = BridgeGauge::new();
            tokio::select! {
                _ = bridge(io, inbound, tx) => {}
                _ = cancel.cancelled() => {}
            }
        });
        rx
    }

    /// Like [`RouterSvc::spawn_bridge`] for a resource's pipe: the payloads move between the
    /// gRPC messages and the driver without being copied.
    /// When the bridge ends (the stream is over, reset, or the session closes) a handle
    /// that was not opened is dropped with what it buffered.
    fn spawn_resource_bridge(
        &self,
        end: PipeEnd,
        inbound: Streaming<StreamRequest>,
        unused: UnusedHandle,
    ) -> mpsc::Receiver<Result<StreamResponse, Status>> {
        let (tx, rx) = mpsc::channel(response_depth(MAX_FRAME));
        let cancel = self.session.inner.cancel.clone();
        tokio::spawn(async move {
            let _gauge = BridgeGauge::new();
            let _unused = unused;
            tokio::select! {
                _ = resource_bridge(end, inbound, tx) => {}
                _ = cancel.cancelled() => {}
            }
        });
        rx
    }

    async fn driver_stream(
        &self,
        request: Request<Streaming<StreamRequest>>,
        uuid: &str,
        method: &str,
    ) -> Result<Response<BoxResponseStream<StreamResponse>>, Status> {
        let inst = self.session.instance(uuid)?;
        lookup(&*inst.driver, method, MethodKind::Stream).map_err(driver_status)?;
        tracing::debug!(driver = %inst.type_name, method = %method, "Stream");
        // Open the driver stream before answering, so the response headers mean "connected".
        let io = inst
            .driver
            .open_stream(method)
            .await
            .map_err(driver_status)?;
        let rx = self.spawn_bridge(io, request.into_inner());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// A resource stream: register a pipe on the driver and answer with its handle.
    fn resource_stream(
        &self,
        request: Request<Streaming<StreamRequest>>,
        uuid: &str,
        requested: Option<String>,
    ) -> Result<Response<BoxResponseStream<StreamResponse>>, Status> {
        let inst = self.session.instance(uuid)?;
        let encoding = match requested.as_deref() {
            None => None,
            Some(name) => Some(
                Encoding::ALL
                    .into_iter()
                    .find(|e| e.as_str() == name)
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "unsupported content encoding '{name}' (supported: gzip, xz, bz2, zstd)"
                        ))
                    })?,
            ),
        };
        // The data's encoding is the handle's, always (as upstream). `JMP_DISABLE_COMPRESSION=1`
        // only changes what we advertise: an empty accept key, as upstream sends then. Both
        // kinds of client keep the file bytes unchanged when the key is present (even empty);
        // omitting it would make upstream's client decode uploads itself, which 0.9.0 cannot
        // do (its codec wrapper tries to flush into the read-only file).
        let (rid, session_end) = {
            // One at a time, so concurrent streams cannot overshoot the bound together.
            let _one = CREATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let max = limits().max_resource_handles;
            if self.session.open_handles() >= max {
                return Err(Status::resource_exhausted(Limits::exceeded(
                    "max_resource_handles",
                    max,
                )));
            }
            inst.resources.create(encoding)
        };
        let unused = UnusedHandle {
            resources: inst.resources.clone(),
            uuid: rid,
        };
        let handle = serde_json::json!({
            "kind": "client_stream",
            "uuid": rid.hyphenated().to_string(),
            "x_jmp_content_encoding": requested,
        });
        tracing::debug!(driver = %inst.type_name, resource = %rid, encoding = ?requested, "resource stream");
        let rx = self.spawn_resource_bridge(session_end, request.into_inner(), unused);
        let mut response: Response<BoxResponseStream<StreamResponse>> =
            Response::new(Box::pin(ReceiverStream::new(rx)));
        let md = response.metadata_mut();
        md.insert(
            jumpstarter_protocol::metadata::RESOURCE,
            handle
                .to_string()
                .parse()
                .map_err(|_| Status::internal("resource handle is not valid metadata"))?,
        );
        let advertised = encoding
            .filter(|_| self.session.compression_enabled())
            .map_or("", Encoding::as_str);
        md.insert(
            jumpstarter_protocol::metadata::ACCEPT_ENCODING,
            advertised
                .parse()
                .map_err(|_| Status::internal("encoding is not valid metadata"))?,
        );
        Ok(response)
    }
}

/// Serialises resource handle creation (the check against `max_resource_handles` and the
/// registration happen together).
static CREATE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Frames queued towards the client per stream: at most `limits.stream_buffer` bytes of
/// `frame`-sized frames (between 1 and 16).
fn response_depth(frame: usize) -> usize {
    (limits().stream_buffer / frame.max(1)).clamp(1, 16)
}

/// Drops a resource handle that was never opened when its stream is over.
struct UnusedHandle {
    resources: Resources,
    uuid: Uuid,
}

impl Drop for UnusedHandle {
    fn drop(&mut self) {
        self.resources.forget(&self.uuid);
    }
}

/// The status a stream ends with when its incoming frames fail: a frame over the message
/// size limit is RESOURCE_EXHAUSTED naming the limit (as a gRPC server written in Python
/// answers); a reset or a lost connection keeps its status (nobody is left to read it).
fn inbound_error(e: Status) -> Status {
    if e.code() == tonic::Code::OutOfRange {
        Status::resource_exhausted(format!(
            "frame rejected, over the gRPC message size limit: {}",
            e.message()
        ))
    } else {
        e
    }
}

/// Serves one driver stream: client frames into the driver, driver bytes out as frames.
/// The RPC ends (OK) once both directions are finished; a client reset ends it at once.
/// The two directions of a resource stream, with the rules of [`bridge`]: a client that
/// resets drops the pipe without an end marker (the driver sees a broken upload, never a
/// short one); a driver that stops reading still gets its download delivered.
async fn resource_bridge(
    end: PipeEnd,
    mut inbound: Streaming<StreamRequest>,
    tx: mpsc::Sender<Result<StreamResponse, Status>>,
) {
    let (mut rd, mut wr) = end.into_split();
    let upload = async {
        while let Some(item) = inbound.next().await {
            match item.map(StreamRequest::frame) {
                Err(e) => {
                    let _ = tx.send(Err(inbound_error(e))).await;
                    return false;
                }
                Ok(Frame::Data(b)) => {
                    if let Err(e) = wr.send(b).await {
                        tracing::debug!("resource upload not read by the driver: {e}");
                        return true;
                    }
                }
                Ok(Frame::GoAway) => break,
                Ok(Frame::Ignored) => {}
            }
        }
        let _ = wr.shutdown().await;
        true
    };
    // Both halves end with `true` when the other may go on, `false` when the stream is over.
    let download = async {
        loop {
            let chunk = tokio::select! {
                c = rd.recv_chunk() => c,
                _ = tx.closed() => return false,
            };
            match chunk {
                Ok(Some(mut chunk)) => {
                    while !chunk.is_empty() {
                        let part = chunk.split_to(chunk.len().min(MAX_FRAME));
                        if tx.send(Ok(StreamResponse::data(part))).await.is_err() {
                            return false;
                        }
                    }
                }
                Ok(None) => return tx.send(Ok(StreamResponse::goaway())).await.is_ok(),
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::unknown(format!("stream read failed: {e}"))))
                        .await;
                    return false;
                }
            }
        }
    };
    tokio::pin!(upload, download);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            go_on = &mut upload, if !up_done => {
                if !go_on {
                    return;
                }
                up_done = true;
            }
            go_on = &mut download, if !down_done => {
                if !go_on {
                    return;
                }
                down_done = true;
            }
        }
    }
}

async fn bridge(
    io: crate::driver::BoxStream,
    inbound: Streaming<StreamRequest>,
    tx: mpsc::Sender<Result<StreamResponse, Status>>,
) {
    let (rd, wr) = tokio::io::split(io);
    let frames = inbound.map(|r| r.map(StreamRequest::frame));
    let upstream = pump_from_frames(frames, wr);
    let downstream = pump_to_frames(
        rd,
        &tx,
        |b| Ok(StreamResponse::data(b)),
        Ok(StreamResponse::goaway()),
    );
    tokio::pin!(upstream, downstream);
    let mut up_done = false;
    let mut down_done = false;
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut upstream, if !up_done => {
                up_done = true;
                match r {
                    Ok(()) => {}
                    // A bad frame, a reset or a lost connection: the stream ends with an error
                    // status (which nobody reads after a reset), never with OK.
                    Err(PumpError::Frames(e)) => {
                        let _ = tx.send(Err(inbound_error(e))).await;
                        return;
                    }
                    // The driver side refused writes: keep delivering what it sends.
                    Err(PumpError::Io(e)) => tracing::debug!("stream write to driver failed: {e}"),
                }
            }
            r = &mut downstream, if !down_done => {
                down_done = true;
                match r {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        let _ = tx.send(Err(Status::unknown(format!("stream read failed: {e}")))).await;
                        return;
                    }
                }
            }
        }
    }
}
