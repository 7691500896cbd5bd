//! Talking to a controller: the caller's identity on every call, the client's lease API
//! (ClientService), Dial with upstream's retry rules, and router streams as byte streams.
//!
//! * [`Identity`]: bearer token plus `jumpstarter-kind/namespace/name` metadata.
//! * [`router_stream`]: one `RouterService.Stream` as an `AsyncRead + AsyncWrite` (DATA frames,
//!   GOAWAY as end of stream), used by both the exporter (served into its session) and the
//!   client (an HTTP/2 connection to the exporter's session runs over it).
//! * [`LeaseClient`] for CreateLease, GetLease, ListLeases, DeleteLease, ListExporters,
//!   waiting for a lease to become ready, and [`LeaseClient::connect`]: Dial + router stream
//!   + HTTP/2, giving a [`Client`] of the leased exporter.
//!
//! Building the TLS config and reading client configs is the caller's business.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use jumpstarter_protocol::client_v1::client_service_client::ClientServiceClient;
use jumpstarter_protocol::client_v1::{
    CreateLeaseRequest, DeleteLeaseRequest, Exporter, GetLeaseRequest, Lease, ListExportersRequest,
    ListLeasesRequest, UpdateLeaseRequest,
};
use jumpstarter_protocol::frames::Frame;
use jumpstarter_protocol::v1::controller_service_client::ControllerServiceClient;
use jumpstarter_protocol::v1::router_service_client::RouterServiceClient;
use jumpstarter_protocol::v1::{DialRequest, StreamRequest, StreamResponse};
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Code, Request, Status};

use crate::client::{Client, ClientError};
use crate::stream::FrameIo;
use crate::transport::{Dial, DialError, H2Channel, Target};

/// Who is calling the controller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub token: String,
    /// `Client` or `Exporter`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl Identity {
    /// A request carrying the identity metadata.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        let md = r.metadata_mut();
        if let Ok(v) = format!("Bearer {}", self.token).parse() {
            md.insert("authorization", v);
        }
        md.insert(
            "jumpstarter-kind",
            tonic::metadata::MetadataValue::from_static(self.kind),
        );
        if let Ok(v) = self.namespace.parse() {
            md.insert("jumpstarter-namespace", v);
        }
        if let Ok(v) = self.name.parse() {
            md.insert("jumpstarter-name", v);
        }
        r
    }
}

type FrameStream = Pin<Box<dyn futures::Stream<Item = Result<Frame, Status>> + Send>>;

/// One router stream as a byte stream (and as a server-side connection).
///
/// The router holds a stream until its partner joins; [`RouterStream::paired`] waits for
/// that (the partner's first bytes) with a deadline, and [`RouterStream::ending_with`] ties
/// the stream to a signal (the end of its lease), after which reads and writes fail, so
/// whatever serves the stream lets it go.
pub struct RouterStream {
    io: FrameIo<FrameStream, StreamRequest>,
    /// Bytes read by [`RouterStream::paired`] that the reader has not had yet.
    unread: bytes::Bytes,
    end: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

/// Why a router stream did not pair.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("no partner joined the router stream within {0:?}")]
    Timeout(Duration),
    #[error("the router stream ended before a partner joined")]
    Ended,
    #[error("the router stream failed before a partner joined: {0}")]
    Io(#[source] std::io::Error),
}

impl RouterStream {
    fn new(io: FrameIo<FrameStream, StreamRequest>) -> RouterStream {
        RouterStream {
            io,
            unread: bytes::Bytes::new(),
            end: None,
        }
    }

    /// Waits at most `timeout` for the first bytes from the other side (the router relays
    /// nothing before both sides are there); they stay to be read. A stream that is not
    /// joined in time, ends or fails first is an error, and dropping it closes it.
    pub async fn paired(mut self, timeout: Duration) -> Result<RouterStream, PairError> {
        use tokio::io::AsyncReadExt;
        let mut first = vec![0u8; 16 * 1024];
        let n = tokio::time::timeout(timeout, self.io.read(&mut first))
            .await
            .map_err(|_| PairError::Timeout(timeout))?
            .map_err(PairError::Io)?;
        if n == 0 {
            return Err(PairError::Ended);
        }
        first.truncate(n);
        self.unread = first.into();
        Ok(self)
    }

    /// From when `end` is cancelled on, every read and write fails (ConnectionAborted).
    pub fn ending_with(mut self, end: CancellationToken) -> RouterStream {
        self.end = Some(Box::pin(end.cancelled_owned()));
        self
    }

    fn ended(&mut self, cx: &mut Context<'_>) -> bool {
        self.end
            .as_mut()
            .is_some_and(|end| end.as_mut().poll(cx).is_ready())
    }
}

fn aborted() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the router stream's lease has ended",
    )
}

impl AsyncRead for RouterStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.ended(cx) {
            return Poll::Ready(Err(aborted()));
        }
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            let chunk = self.unread.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for RouterStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.ended(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.ended(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for RouterStream {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// Why a controller operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Endpoint(#[from] jumpstarter_config::EndpointError),
    #[error("cannot reach {target}: {source}")]
    Dial {
        target: String,
        #[source]
        source: DialError,
    },
    #[error("grpc controller responded: {}", .0.message())]
    Status(#[from] Status),
    #[error("the router token is not valid metadata")]
    Token,
    #[error("lease {name} cannot be satisfied: {message}")]
    Unsatisfiable { name: String, message: String },
    #[error("lease {name} ended before it was ready: {message}")]
    Ended { name: String, message: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

async fn channel(target: &Target, dial: &Dial) -> Result<H2Channel, ControllerError> {
    H2Channel::dial(target, dial)
        .await
        .map_err(|source| ControllerError::Dial {
            target: target.to_string(),
            source,
        })
}

/// Opens `RouterService.Stream` at `endpoint` with `token`.
pub async fn router_stream(
    endpoint: &str,
    token: &str,
    dial: &Dial,
) -> Result<RouterStream, ControllerError> {
    let ch = channel(&Target::endpoint(endpoint)?, dial).await?;
    let origin = ch.origin();
    let mut router = RouterServiceClient::with_origin(ch, origin);
    let (tx, rx) = mpsc::channel::<StreamRequest>(16);
    let mut req = Request::new(ReceiverStream::new(rx));
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| ControllerError::Token)?;
    req.metadata_mut().insert("authorization", bearer);
    let incoming = router.stream(req).await?.into_inner();
    let frames: FrameStream = Box::pin(incoming.map(|r| r.map(StreamResponse::frame)));
    Ok(RouterStream::new(FrameIo::new(
        frames,
        tx,
        StreamRequest::data,
        StreamRequest::goaway,
    )))
}

/// How long Dial is retried while the exporter is not ready or not listening (upstream's
/// `dial_timeout`).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The client side of a controller.
#[derive(Clone)]
pub struct LeaseClient {
    target: Target,
    dial: Dial,
    who: Identity,
    channel: Arc<std::sync::Mutex<H2Channel>>,
}

fn is_ready(l: &Lease) -> bool {
    condition(l, "Ready").is_some_and(|c| c.status.as_deref() == Some("True"))
}

fn condition<'a>(l: &'a Lease, t: &str) -> Option<&'a jumpstarter_protocol::v1::Condition> {
    l.conditions.iter().find(|c| c.r#type.as_deref() == Some(t))
}

impl LeaseClient {
    pub async fn connect(
        endpoint: &str,
        dial: Dial,
        who: Identity,
    ) -> Result<LeaseClient, ControllerError> {
        let target = Target::endpoint(endpoint)?;
        let channel = channel(&target, &dial).await?;
        Ok(LeaseClient {
            target,
            dial,
            who,
            channel: Arc::new(std::sync::Mutex::new(channel)),
        })
    }

    fn parent(&self) -> String {
        format!("namespaces/{}", self.who.namespace)
    }

    /// `namespaces/{ns}/leases/{name}` for a bare lease name.
    pub fn lease_path(&self, name: &str) -> String {
        if name.starts_with("namespaces/") {
            name.to_string()
        } else {
            format!("namespaces/{}/leases/{name}", self.who.namespace)
        }
    }

    /// The connection to the controller, dialled again when it closed (the controller closes
    /// connections idle for `JMP_IDLE_TIMEOUT`, and a shell can sit idle for hours).
    async fn channel(&self) -> Result<H2Channel, ControllerError> {
        let current = self
            .channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !current.is_closed() {
            return Ok(current);
        }
        let fresh = channel(&self.target, &self.dial).await?;
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    async fn clients(&self) -> Result<ClientServiceClient<H2Channel>, ControllerError> {
        let ch = self.channel().await?;
        let origin = ch.origin();
        Ok(ClientServiceClient::with_origin(ch, origin))
    }

    async fn controller(&self) -> Result<ControllerServiceClient<H2Channel>, ControllerError> {
        let ch = self.channel().await?;
        let origin = ch.origin();
        Ok(ControllerServiceClient::with_origin(ch, origin))
    }

    pub async fn create_lease(&self, lease: Lease, id: &str) -> Result<Lease, ControllerError> {
        let req = CreateLeaseRequest {
            parent: self.parent(),
            lease_id: id.to_string(),
            lease: Some(lease),
        };
        Ok(self
            .clients()
            .await?
            .create_lease(self.who.request(req))
            .await?
            .into_inner())
    }

    pub async fn get_lease(&self, name: &str) -> Result<Lease, ControllerError> {
        let req = GetLeaseRequest {
            name: self.lease_path(name),
        };
        Ok(self
            .clients()
            .await?
            .get_lease(self.who.request(req))
            .await?
            .into_inner())
    }

    /// Every lease matching `filter` (all pages).
    pub async fn list_leases(
        &self,
        filter: &str,
        only_active: bool,
    ) -> Result<Vec<Lease>, ControllerError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let req = ListLeasesRequest {
                parent: self.parent(),
                page_size: 100,
                page_token: token,
                filter: filter.to_string(),
                only_active: Some(only_active),
                tag_filter: String::new(),
            };
            let page = self
                .clients()
                .await?
                .list_leases(self.who.request(req))
                .await?
                .into_inner();
            out.extend(page.leases);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// Every exporter matching `filter` (all pages).
    pub async fn list_exporters(&self, filter: &str) -> Result<Vec<Exporter>, ControllerError> {
        self.list_exporters_hidden(filter, false).await
    }

    /// Every exporter matching `filter` (all pages), with hidden labels if asked.
    pub async fn list_exporters_hidden(
        &self,
        filter: &str,
        show_hidden_labels: bool,
    ) -> Result<Vec<Exporter>, ControllerError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let req = ListExportersRequest {
                parent: self.parent(),
                page_size: 100,
                page_token: token,
                filter: filter.to_string(),
                show_hidden_labels,
            };
            let page = self
                .clients()
                .await?
                .list_exporters(self.who.request(req))
                .await?
                .into_inner();
            out.extend(page.exporters);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// Changes the fields of a lease named in `paths` (`duration`, `begin_time`, `client`).
    pub async fn update_lease(
        &self,
        mut lease: Lease,
        paths: Vec<String>,
    ) -> Result<Lease, ControllerError> {
        lease.name = self.lease_path(&lease.name);
        let req = UpdateLeaseRequest {
            lease: Some(lease),
            update_mask: Some(prost_types::FieldMask { paths }),
        };
        Ok(self
            .clients()
            .await?
            .update_lease(self.who.request(req))
            .await?
            .into_inner())
    }

    /// Every lease matching `filter` and `tag_filter` (all pages).
    pub async fn list_leases_tagged(
        &self,
        filter: &str,
        only_active: bool,
        tag_filter: &str,
    ) -> Result<Vec<Lease>, ControllerError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let req = ListLeasesRequest {
                parent: self.parent(),
                page_size: 100,
                page_token: token,
                filter: filter.to_string(),
                only_active: Some(only_active),
                tag_filter: tag_filter.to_string(),
            };
            let page = self
                .clients()
                .await?
                .list_leases(self.who.request(req))
                .await?
                .into_inner();
            out.extend(page.leases);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// The namespace of the caller.
    pub fn namespace(&self) -> &str {
        &self.who.namespace
    }

    /// Releases a lease (DeleteLease).
    pub async fn delete_lease(&self, name: &str) -> Result<(), ControllerError> {
        let req = DeleteLeaseRequest {
            name: self.lease_path(name),
        };
        self.clients()
            .await?
            .delete_lease(self.who.request(req))
            .await?;
        Ok(())
    }

    /// Polls a lease (soon at first, then every `every`) until it is ready (an exporter
    /// assigned); fails when it cannot be satisfied, is invalid, or ended first.
    pub async fn wait_ready(&self, name: &str, every: Duration) -> Result<Lease, ControllerError> {
        // Asks again soon at first (an exporter usually frees up within milliseconds, e.g.
        // right after the previous lease on it ended), then every `every`.
        let mut pause = every.min(Duration::from_millis(5));
        loop {
            let l = self.get_lease(name).await?;
            if is_ready(&l) {
                return Ok(l);
            }
            for t in ["Unsatisfiable", "Invalid"] {
                if let Some(c) = condition(&l, t)
                    && c.status.as_deref() == Some("True")
                {
                    return Err(ControllerError::Unsatisfiable {
                        name: name.into(),
                        message: c.message.clone().unwrap_or_default(),
                    });
                }
            }
            if l.effective_end_time.is_some() {
                let message = condition(&l, "Ready")
                    .and_then(|c| c.message.clone())
                    .unwrap_or_default();
                return Err(ControllerError::Ended {
                    name: name.into(),
                    message,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(every);
        }
    }

    /// Dials the exporter of a lease: Dial (retried like upstream while the exporter is not
    /// ready or not listening), a router stream, and an HTTP/2 connection over it.
    pub async fn dial(&self, lease: &str) -> Result<H2Channel, ControllerError> {
        let bare = lease.rsplit('/').next().unwrap_or(lease).to_string();
        let deadline = tokio::time::Instant::now() + DIAL_TIMEOUT;
        let mut pause = Duration::from_millis(300);
        let answer = loop {
            let r = self
                .controller()
                .await?
                .dial(self.who.request(DialRequest {
                    lease_name: bare.clone(),
                }))
                .await;
            match r {
                Ok(a) => break a.into_inner(),
                Err(e)
                    if (e.code() == Code::Unavailable
                        || (e.code() == Code::FailedPrecondition
                            && e.message().contains("not ready")))
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let io = router_stream(&answer.router_endpoint, &answer.router_token, &self.dial).await?;
        H2Channel::handshake(io)
            .await
            .map_err(|e| ControllerError::Dial {
                target: answer.router_endpoint.clone(),
                source: DialError::Http2(e),
            })
    }

    /// A session client of the lease's exporter.
    pub async fn connect_exporter(&self, lease: &str) -> Result<Client, ControllerError> {
        let channel = self.dial(lease).await?;
        Ok(Client::from_channel(channel).await?)
    }

    pub fn target(&self) -> &Target {
        &self.target
    }
}
