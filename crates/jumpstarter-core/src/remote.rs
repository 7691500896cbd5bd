//! Drivers served by another process: a *driver host* (see `docs/driver-hosts.md`).
//!
//! A host serves `ExporterService` + `RouterService` for a subtree of the export on a private
//! socket. The exporter grafts the host's report into its own tree, keeping the host's uuids,
//! so every call and stream for those uuids can be relayed unchanged: `DriverCall`,
//! `StreamingDriverCall`, and `RouterService.Stream` for driver streams and resources (the
//! `request` metadata goes through as sent, the `resource` / `x_jmp_accept_encoding` answer
//! comes back as the host sent it). Clients cannot tell a hosted driver from a native one.
//!
//! When the host is gone (it never started, exited, or stopped answering), every relayed call
//! fails with UNAVAILABLE and a message naming the subtree and the reason; the rest of the
//! session is untouched.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use jumpstarter_protocol::v1::{
    DriverCallRequest, DriverCallResponse, DriverInstanceReport, StreamRequest, StreamResponse,
    StreamingDriverCallRequest, StreamingDriverCallResponse,
    exporter_service_client::ExporterServiceClient,
};
use jumpstarter_protocol::wire::{CLIENT_LABEL, NAME_LABEL};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::driver::Driver;
use crate::resource::Resources;
use crate::transport::H2Channel;
use crate::tree::{Child, Instance};

type BoxResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

// The client label of a hosted subtree whose host is not available: upstream's generic client
// class (any Python client can load it; calls fail with the host's error).
use jumpstarter_protocol::wire::{UNAVAILABLE_CLIENT, UNAVAILABLE_DESCRIPTION};

/// How long a failed relay waits for the host's supervisor to say why the host went away.
const FAILURE_GRACE: Duration = Duration::from_secs(2);

/// The exporter's end of one driver host: the connection, the host's health, and a way to
/// stop it. Shared by every node of the hosted subtree.
pub struct HostLink {
    name: String,
    channel: Option<H2Channel>,
    failure: watch::Receiver<Option<String>>,
    stop: CancellationToken,
    stopped: watch::Receiver<bool>,
}

impl std::fmt::Debug for HostLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostLink")
            .field("name", &self.name)
            .field("failure", &*self.failure.borrow())
            .finish_non_exhaustive()
    }
}

/// The supervisor's end of a [`HostLink`]: reports failures, learns when to stop, says when
/// the host is gone.
#[derive(Debug)]
pub struct HostControl {
    pub failure: watch::Sender<Option<String>>,
    pub stop: CancellationToken,
    pub stopped: watch::Sender<bool>,
}

impl HostControl {
    /// Records why the host is unusable (the first reason wins).
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.failure.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

impl HostLink {
    /// A link to a running host reachable over `channel`; the supervisor keeps the control.
    pub fn new(name: impl Into<String>, channel: H2Channel) -> (Arc<HostLink>, HostControl) {
        let (failure_tx, failure) = watch::channel(None);
        let (stopped_tx, stopped) = watch::channel(false);
        let stop = CancellationToken::new();
        let link = HostLink {
            name: name.into(),
            channel: Some(channel),
            failure,
            stop: stop.clone(),
            stopped,
        };
        let control = HostControl {
            failure: failure_tx,
            stop,
            stopped: stopped_tx,
        };
        (Arc::new(link), control)
    }

    /// A link to a host that could not be started: every call fails with `reason`.
    pub fn failed(name: impl Into<String>, reason: impl Into<String>) -> Arc<HostLink> {
        let (_, failure) = watch::channel(Some(reason.into()));
        let (_, stopped) = watch::channel(true);
        Arc::new(HostLink {
            name: name.into(),
            channel: None,
            failure,
            stop: CancellationToken::new(),
            stopped,
        })
    }

    /// The configured path of the hosted subtree.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the host is unusable, if it is.
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Asks the supervisor to stop the host and waits (up to `grace`) until it is gone.
    pub async fn stop(&self, grace: Duration) {
        self.stop.cancel();
        let mut stopped = self.stopped.clone();
        let _ = tokio::time::timeout(grace, stopped.wait_for(|s| *s)).await;
    }

    fn unavailable(&self, reason: &str) -> Status {
        Status::unavailable(format!(
            "driver host for `{}` is unavailable: {reason}",
            self.name
        ))
    }

    fn channel(&self) -> Result<H2Channel, Status> {
        if let Some(f) = self.failure() {
            return Err(self.unavailable(&f));
        }
        match &self.channel {
            Some(c) if !c.is_closed() => Ok(c.clone()),
            _ => Err(self.unavailable("the connection to the host is closed")),
        }
    }

    /// Turns a relay error into what the client sees. Statuses the host sent pass unchanged;
    /// a broken connection becomes UNAVAILABLE with the reason the supervisor found.
    async fn relay_error(&self, status: Status) -> Status {
        let closed = || self.channel.as_ref().is_none_or(H2Channel::is_closed);
        let transport = std::error::Error::source(&status).is_some();
        if !transport && self.failure().is_none() && !closed() {
            return status;
        }
        // A transport error may come a moment before the supervisor sees the host exit (or
        // the connection is marked closed): give it that moment.
        let deadline = tokio::time::Instant::now() + FAILURE_GRACE;
        loop {
            if let Some(f) = self.failure() {
                return self.unavailable(&f);
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if closed() {
            self.unavailable(&format!(
                "the connection to the host failed: {}",
                status.message()
            ))
        } else {
            // The host is alive and the connection open: a stream-level error, as is.
            status
        }
    }

    fn exporter(&self) -> Result<ExporterServiceClient<H2Channel>, Status> {
        let ch = self.channel()?;
        let origin = ch.origin();
        Ok(ExporterServiceClient::with_origin(ch, origin)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// The host's report (what the exporter grafts).
    pub async fn report(&self) -> Result<Vec<DriverInstanceReport>, Status> {
        let mut client = self.exporter()?;
        match client.get_report(()).await {
            Ok(r) => Ok(r.into_inner().reports),
            Err(s) => Err(self.relay_error(s).await),
        }
    }

    /// Relays a `DriverCall`.
    pub async fn driver_call(&self, req: DriverCallRequest) -> Result<DriverCallResponse, Status> {
        let mut client = self.exporter()?;
        tokio::select! {
            r = client.driver_call(req) => match r {
                Ok(r) => Ok(r.into_inner()),
                Err(s) => Err(self.relay_error(s).await),
            },
            reason = self.gone() => Err(self.unavailable(&reason)),
        }
    }

    /// Resolves when the supervisor reports a failure (a hung host is killed: calls in flight
    /// end at once instead of waiting for a connection error).
    async fn gone(&self) -> String {
        let mut failure = self.failure.clone();
        let found = failure
            .wait_for(Option::is_some)
            .await
            .map(|f| f.clone().unwrap_or_default());
        match found {
            Ok(f) => f,
            Err(_) => std::future::pending().await,
        }
    }

    /// Relays a `StreamingDriverCall`.
    pub async fn streaming_driver_call(
        self: &Arc<Self>,
        req: StreamingDriverCallRequest,
        cancel: CancellationToken,
    ) -> Result<BoxResponseStream<StreamingDriverCallResponse>, Status> {
        let mut client = self.exporter()?;
        let items = tokio::select! {
            r = client.streaming_driver_call(req) => match r {
                Ok(r) => r.into_inner(),
                Err(s) => return Err(self.relay_error(s).await),
            },
            reason = self.gone() => return Err(self.unavailable(&reason)),
        };
        let (tx, rx) = mpsc::channel(16);
        let link = self.clone();
        tokio::spawn(async move {
            let pump = async {
                let mut items = items;
                loop {
                    let item = tokio::select! {
                        i = items.next() => i,
                        reason = link.gone() => Some(Err(link.unavailable(&reason))),
                    };
                    let Some(item) = item else { return };
                    let item = match item {
                        Ok(v) => Ok(v),
                        Err(s) => Err(link.relay_error(s).await),
                    };
                    let end = item.is_err();
                    if tx.send(item).await.is_err() || end {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = pump => {}
                _ = cancel.cancelled() => {}
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// Relays a `RouterService.Stream` (a driver stream or a resource): the client's metadata
    /// and frames go to the host, the host's response metadata and frames come back. A client
    /// that resets its stream resets the host's too (an abandoned upload never looks finished).
    pub async fn stream(
        self: &Arc<Self>,
        metadata: &MetadataMap,
        inbound: Streaming<StreamRequest>,
        cancel: CancellationToken,
    ) -> Result<Response<BoxResponseStream<StreamResponse>>, Status> {
        let ch = self.channel()?;
        let origin = ch.origin();
        let mut grpc = tonic::client::Grpc::with_origin(ch, origin)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut request = Request::new(inbound);
        if let Some(v) = metadata.get(jumpstarter_protocol::metadata::REQUEST) {
            request
                .metadata_mut()
                .insert(jumpstarter_protocol::metadata::REQUEST, v.clone());
        }
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| Status::from_error(Box::new(e)))?;
            grpc.streaming(
                request,
                http::uri::PathAndQuery::from_static(ROUTER_STREAM),
                RelayCodec,
            )
            .await
        };
        let response = tokio::select! {
            r = call => match r {
                Ok(r) => r,
                Err(s) => return Err(self.relay_error(s).await),
            },
            reason = self.gone() => return Err(self.unavailable(&reason)),
        };
        let (host_md, frames, _) = response.into_parts();
        let (tx, rx) = mpsc::channel::<Result<StreamResponse, Status>>(16);
        let link = self.clone();
        tokio::spawn(async move {
            let pump = async {
                let mut frames = frames;
                loop {
                    let item = tokio::select! {
                        i = frames.next() => i,
                        reason = link.gone() => Some(Err(link.unavailable(&reason))),
                    };
                    let Some(item) = item else { return };
                    let item = match item {
                        Ok(v) => Ok(v),
                        Err(s) => Err(link.relay_error(s).await),
                    };
                    let end = item.is_err();
                    if tx.send(item).await.is_err() || end {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = pump => {}
                _ = cancel.cancelled() => {}
            }
        });
        let mut out: Response<BoxResponseStream<StreamResponse>> =
            Response::new(Box::pin(ReceiverStream::new(rx)));
        for kv in host_md.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv {
                let name = k.as_str();
                if name.starts_with("grpc-") || matches!(name, "content-type" | "date" | "te") {
                    continue;
                }
                out.metadata_mut().insert(k.clone(), v.clone());
            }
        }
        Ok(out)
    }
}

const ROUTER_STREAM: &str = "/jumpstarter.v1.RouterService/Stream";

/// The codec of a relayed `RouterService.Stream`: the client's frames are sent as they come,
/// and an error from the client's side (a reset) fails the request body, which resets the
/// host's stream instead of ending it.
struct RelayCodec;

struct RelayEncoder;

impl tonic::codec::Encoder for RelayEncoder {
    type Item = Result<StreamRequest, Status>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Self::Item,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use prost::Message;
        let item = item?;
        item.encode(buf)
            .map_err(|e| Status::internal(format!("cannot encode a stream frame: {e}")))
    }
}

impl tonic::codec::Codec for RelayCodec {
    type Encode = Result<StreamRequest, Status>;
    type Decode = StreamResponse;
    type Encoder = RelayEncoder;
    type Decoder = tonic_prost::ProstDecoder<StreamResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        RelayEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// A node of a hosted subtree, as the exporter's tree holds it. It has no method table: the
/// session relays everything addressed to its uuid to the host.
pub struct RemoteDriver {
    link: Arc<HostLink>,
    client: String,
    labels: BTreeMap<String, String>,
    /// The subtree's root stops the host when the session ends.
    owner: bool,
}

impl RemoteDriver {
    pub fn link(&self) -> &Arc<HostLink> {
        &self.link
    }
}

#[async_trait]
impl Driver for RemoteDriver {
    fn client(&self) -> &str {
        &self.client
    }

    fn labels(&self) -> BTreeMap<String, String> {
        self.labels.clone()
    }

    async fn close(&self) {
        if self.owner {
            self.link.stop(Duration::from_secs(10)).await;
        }
    }
}

/// Why a host's report cannot be grafted.
#[derive(Debug, thiserror::Error)]
#[error("the driver host's report {0}")]
pub struct GraftError(String);

/// Builds the instances of a hosted subtree from the host's report.
///
/// The host serves a composite root with exactly one child, named `name` (the configured
/// name of the hosted node). That child becomes the returned instance; the host's root is
/// dropped. Uuids, labels and descriptions are the host's; a uuid reported twice (a `ref:`
/// inside the subtree) is the same instance, as in a native tree.
pub fn graft(
    link: Arc<HostLink>,
    reports: &[DriverInstanceReport],
    name: &str,
    type_name: &str,
) -> Result<Arc<Instance>, GraftError> {
    let root = reports
        .first()
        .ok_or_else(|| GraftError("is empty".into()))?;
    if root.parent_uuid.is_some() {
        return Err(GraftError("does not start with its root".into()));
    }
    let mut built: BTreeMap<String, Arc<Instance>> = BTreeMap::new();
    let mut pos = 1;
    let mut top = None;
    while pos < reports.len() {
        let e = &reports[pos];
        if e.parent_uuid.as_deref() != Some(root.uuid.as_str()) {
            return Err(GraftError(format!("lists `{}` out of pre-order", e.uuid)));
        }
        let (inst, next, _) = node(&link, reports, pos, &mut built, top.is_none(), type_name)?;
        if top.is_some() {
            return Err(GraftError("has more than one node under its root".into()));
        }
        let reported = e.labels.get(NAME_LABEL).map(String::as_str);
        if reported != Some(name) {
            return Err(GraftError(format!(
                "names its node {reported:?}, not `{name}`"
            )));
        }
        top = Some(inst);
        pos = next;
    }
    top.ok_or_else(|| GraftError("has no node under its root".into()))
}

fn node(
    link: &Arc<HostLink>,
    reports: &[DriverInstanceReport],
    pos: usize,
    built: &mut BTreeMap<String, Arc<Instance>>,
    owner: bool,
    type_name: &str,
) -> Result<(Arc<Instance>, usize, bool), GraftError> {
    let e = &reports[pos];
    let mut next = pos + 1;
    let mut children = Vec::new();
    while next < reports.len() && reports[next].parent_uuid.as_deref() == Some(e.uuid.as_str()) {
        let child_name = reports[next]
            .labels
            .get(NAME_LABEL)
            .cloned()
            .ok_or_else(|| GraftError(format!("has a child of `{}` without a name", e.uuid)))?;
        let (child, after, fresh) = node(link, reports, next, built, false, "")?;
        children.push((
            child_name,
            if fresh {
                Child::Own(child)
            } else {
                // The same instance under a second name: a `ref:` alias.
                Child::Ref(child)
            },
        ));
        next = after;
    }
    if let Some(seen) = built.get(&e.uuid) {
        // The same instance again (a `ref:` inside the subtree): its subtree was consumed above.
        return Ok((seen.clone(), next, false));
    }
    let uuid = Uuid::parse_str(&e.uuid)
        .map_err(|_| GraftError(format!("has a malformed uuid `{}`", e.uuid)))?;
    let mut labels: BTreeMap<String, String> = e
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.remove(NAME_LABEL);
    let client = labels.remove(CLIENT_LABEL).unwrap_or_default();
    let inst = Arc::new(Instance {
        uuid,
        driver: Arc::new(RemoteDriver {
            link: link.clone(),
            client: client.clone(),
            labels,
            owner,
        }),
        type_name: if type_name.is_empty() {
            client
        } else {
            type_name.to_owned()
        },
        description: e.description.clone(),
        methods_description: e
            .methods_description
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        labels: BTreeMap::new(),
        children,
        resources: Resources::new(),
        host: Some(link.clone()),
    });
    built.insert(e.uuid.clone(), inst.clone());
    Ok((inst, next, true))
}

/// The stand-in for a hosted subtree whose host is unavailable: one node under the configured
/// name whose calls fail with UNAVAILABLE and the host's error (also its description, so
/// `j --help` shows it).
pub fn unavailable(link: Arc<HostLink>, type_name: &str) -> Arc<Instance> {
    let reason = link.failure().unwrap_or_default();
    Arc::new(Instance {
        uuid: Uuid::new_v4(),
        host: Some(link.clone()),
        driver: Arc::new(RemoteDriver {
            link,
            client: UNAVAILABLE_CLIENT.to_owned(),
            labels: BTreeMap::new(),
            owner: true,
        }),
        type_name: type_name.to_owned(),
        description: Some(format!("{UNAVAILABLE_DESCRIPTION}{reason}")),
        methods_description: BTreeMap::new(),
        labels: BTreeMap::new(),
        children: Vec::new(),
        resources: Resources::new(),
    })
}
