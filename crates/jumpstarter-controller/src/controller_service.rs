//! `jumpstarter.v1.ControllerService`: exporter registration, status, Listen/Dial, release,
//! and the legacy lease calls (controller.md §5.2), plus the authentication of every
//! controller call (§2.4).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use jumpstarter_protocol::v1;
use jumpstarter_protocol::v1::controller_service_server::ControllerService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{self, INTERNAL_PREFIX};
use crate::convert;
use crate::model::{ClientRecord, Device, ExporterRecord, LeaseRecord, now_secs, set_condition};
use crate::scheduler::{Binding, ListenQueue, Shared, lock};
use crate::selector::{Expression, LabelSelector};
use crate::store::StoreError;
use crate::text::clip;

/// How long Dial waits for an `Available` exporter to become ready.
pub const DIAL_WAIT: Duration = Duration::from_secs(30);

/// Storage failures reach callers as UNKNOWN with the storage message (Go's "raw" errors).
pub fn raw(e: StoreError) -> Status {
    Status::unknown(e.to_string())
}

/// Authenticates a call as a client or an exporter (§2.4).
pub async fn authenticate(
    shared: &Shared,
    md: &MetadataMap,
    want: auth::Kind,
) -> Result<Caller, Status> {
    let claimed = auth::claimed(md)?;
    let verified = shared.keys.verify_internal(&claimed.token)?;
    let username = verified.username;
    let name = if username.starts_with(INTERNAL_PREFIX) {
        claimed.name.clone().ok_or_else(|| {
            Status::invalid_argument("resource name required for pre-existing authentication")
        })?
    } else {
        return Err(Status::unknown("failed to authenticate token"));
    };
    let ns = claimed.namespace.clone();
    match (want, claimed.kind.as_str()) {
        (auth::Kind::Client, "Client") => {
            let c = shared
                .store
                .client(&ns, &name)
                .await
                .map_err(raw)?
                .ok_or_else(|| {
                    Status::unknown(format!(
                        "client {ns}/{name}: clients.jumpstarter.dev \"{name}\" not found",
                        ns = clip(&ns),
                        name = clip(&name)
                    ))
                })?;
            let own = username == format!("{INTERNAL_PREFIX}{}", auth::client_subject(&c));
            if own && verified.generation != c.token_generation {
                return Err(revoked());
            }
            let allowed = own || c.username.as_deref() == Some(username.as_str());
            if !allowed {
                return Err(Status::permission_denied(format!(
                    "permission denied for client {ns}/{name}",
                    ns = clip(&ns),
                    name = clip(&name)
                )));
            }
            Ok(Caller::Client(c))
        }
        (auth::Kind::Exporter, "Exporter") => {
            let e = shared
                .store
                .exporter(&ns, &name)
                .await
                .map_err(raw)?
                .ok_or_else(|| {
                    Status::unknown(format!(
                        "exporter {ns}/{name}: exporters.jumpstarter.dev \"{name}\" not found",
                        ns = clip(&ns),
                        name = clip(&name)
                    ))
                })?;
            let own = username == format!("{INTERNAL_PREFIX}{}", auth::exporter_subject(&e));
            if own && verified.generation != e.token_generation {
                return Err(revoked());
            }
            let allowed = own || e.username.as_deref() == Some(username.as_str());
            if !allowed {
                return Err(Status::permission_denied(format!(
                    "permission denied for exporter {ns}/{name}",
                    ns = clip(&ns),
                    name = clip(&name)
                )));
            }
            Ok(Caller::Exporter(e))
        }
        _ => Err(Status::invalid_argument("object kind mismatch")),
    }
}

/// A token of the right subject whose credential generation is not the record's: it was
/// replaced by a rotation.
fn revoked() -> Status {
    Status::unauthenticated(
        "token revoked: it was replaced by a newer token (RotateToken); use the new token",
    )
}

/// An authenticated caller.
pub enum Caller {
    Client(ClientRecord),
    Exporter(ExporterRecord),
}

pub async fn client(shared: &Shared, md: &MetadataMap) -> Result<ClientRecord, Status> {
    match authenticate(shared, md, auth::Kind::Client).await? {
        Caller::Client(c) => Ok(c),
        Caller::Exporter(_) => Err(Status::invalid_argument("object kind mismatch")),
    }
}

pub async fn exporter(shared: &Shared, md: &MetadataMap) -> Result<ExporterRecord, Status> {
    match authenticate(shared, md, auth::Kind::Exporter).await? {
        Caller::Exporter(e) => Ok(e),
        Caller::Client(_) => Err(Status::invalid_argument("object kind mismatch")),
    }
}

fn lease_not_found(name: &str) -> Status {
    Status::unknown(format!(
        "leases.jumpstarter.dev \"{name}\" not found",
        name = clip(name)
    ))
}

pub struct ControllerSvc {
    pub shared: Arc<Shared>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl ControllerSvc {
    async fn set_release(&self, ns: &str, name: &str) -> Result<(), Status> {
        self.shared
            .store
            .update_lease(ns, name, |l| {
                if l.ended || l.release {
                    return Ok::<_, ()>(false);
                }
                l.release = true;
                l.generation += 1;
                Ok(true)
            })
            .await
            .map_err(raw)?
            .ok();
        self.shared.wake();
        Ok(())
    }
}

#[tonic::async_trait]
impl ControllerService for ControllerSvc {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let e = exporter(&self.shared, request.metadata()).await?;
        let req = request.into_inner();
        let devices: Vec<Device> = req
            .reports
            .iter()
            .map(|r| Device {
                uuid: r.uuid.clone(),
                parent_uuid: r.parent_uuid.clone(),
                labels: r.labels.clone().into_iter().collect(),
            })
            .collect();
        let e = self
            .shared
            .store
            .update_exporter(&e.namespace, &e.name, |e| {
                e.labels.retain(|k, _| !k.starts_with("jumpstarter.dev/"));
                for (k, v) in &req.labels {
                    if k.starts_with("jumpstarter.dev/") {
                        e.labels.insert(k.clone(), v.clone());
                    }
                }
                e.devices = if devices.is_empty() {
                    None
                } else {
                    Some(devices)
                };
                true
            })
            .await
            .map_err(|e| Status::internal(format!("unable to update exporter: {e}")))?;
        tracing::info!(exporter = %e.name, namespace = %e.namespace, "exporter registered");
        self.shared.wake();
        Ok(Response::new(v1::RegisterResponse { uuid: e.uid }))
    }

    async fn unregister(
        &self,
        request: Request<v1::UnregisterRequest>,
    ) -> Result<Response<v1::UnregisterResponse>, Status> {
        let e = exporter(&self.shared, request.metadata()).await?;
        self.shared
            .store
            .update_exporter(&e.namespace, &e.name, |e| {
                e.devices = None;
                true
            })
            .await
            .map_err(|e| Status::internal(format!("unable to update exporter status: {e}")))?;
        self.shared.wake();
        Ok(Response::new(v1::UnregisterResponse {}))
    }

    async fn report_status(
        &self,
        request: Request<v1::ReportStatusRequest>,
    ) -> Result<Response<v1::ReportStatusResponse>, Status> {
        let e = exporter(&self.shared, request.metadata()).await?;
        let req = request.into_inner();
        let status = convert::status_from_proto(req.status);
        let message = req.message.clone().unwrap_or_default();
        let now = now_secs();
        self.shared
            .store
            .update_exporter(&e.namespace, &e.name, |e| {
                e.status = status.into();
                e.status_message = message;
                e.last_seen = Some(now);
                true
            })
            .await
            .map_err(|e| Status::internal(format!("unable to update exporter status: {e}")))?;
        tracing::debug!(exporter = %e.name, status, "status reported");
        if req.release_lease == Some(true) {
            match self
                .shared
                .store
                .active_lease_of(&e.namespace, &e.name)
                .await
            {
                Ok(Some(l)) => {
                    if let Err(err) = self.set_release(&e.namespace, &l.name).await {
                        tracing::warn!("release through ReportStatus failed: {err}");
                    }
                }
                Ok(None) => {}
                Err(err) => tracing::warn!("release through ReportStatus failed: {err}"),
            }
        }
        self.shared.status_changed();
        Ok(Response::new(v1::ReportStatusResponse {}))
    }

    type ListenStream = BoxStream<v1::ListenResponse>;

    async fn listen(
        &self,
        request: Request<v1::ListenRequest>,
    ) -> Result<Response<Self::ListenStream>, Status> {
        let e = exporter(&self.shared, request.metadata()).await?;
        let name = request.into_inner().lease_name;
        if name.is_empty() {
            return Err(Status::unknown("empty lease name"));
        }
        let l = self
            .shared
            .store
            .lease(&e.namespace, &name)
            .await
            .map_err(raw)?
            .ok_or_else(|| lease_not_found(&name))?;
        if l.st_exporter.as_deref() != Some(e.name.as_str()) {
            return Err(Status::unknown("permission denied"));
        }
        let (tx, mut rx) = mpsc::channel::<v1::ListenResponse>(8);
        let generation = self
            .shared
            .listen_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = (e.namespace.clone(), name.clone());
        // A new Listen supersedes the old one: dropping its sender lets it drain and end.
        lock(&self.shared.listeners).insert(key.clone(), ListenQueue { generation, tx });
        let (out_tx, out_rx) = mpsc::channel(8);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(m) => if out_tx.send(Ok(m)).await.is_err() { break },
                        None => break,
                    },
                    _ = out_tx.closed() => break,
                }
            }
            let mut map = lock(&shared.listeners);
            if map.get(&key).is_some_and(|q| q.generation == generation) {
                map.remove(&key);
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    type StatusStream = BoxStream<v1::StatusResponse>;

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<Self::StatusStream>, Status> {
        let e = exporter(&self.shared, request.metadata()).await?;
        let (ns, name) = (e.namespace.clone(), e.name.clone());
        let now = now_secs();
        self.shared
            .store
            .update_exporter(&ns, &name, |e| {
                e.last_seen = Some(now);
                if e.status == "Offline" {
                    e.status.clear();
                    e.status_message.clear();
                }
                true
            })
            .await
            .map_err(raw)?;
        self.shared.status_changed();
        let mut cell = self.shared.binding(&ns, &name).await.map_err(raw)?;
        let (tx, rx) = mpsc::channel(4);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut last: Option<Binding> = None;
            let mut tick = tokio::time::interval(shared.heartbeat);
            tick.tick().await;
            loop {
                let current = cell.borrow_and_update().clone();
                if last.as_ref() != Some(&current) {
                    // A direct switch from lease A to lease B is reported as "not leased"
                    // first: exporters only start a lease on a false -> true edge. A
                    // transfer (same lease, new client) is passed on as it is.
                    if let Some(prev) = &last
                        && prev.leased
                        && current.leased
                        && prev.lease_name != current.lease_name
                        && tx
                            .send(Ok(status_response(&Binding::default())))
                            .await
                            .is_err()
                    {
                        break;
                    }
                    if tx.send(Ok(status_response(&current))).await.is_err() {
                        break;
                    }
                    last = Some(current);
                }
                tokio::select! {
                    changed = cell.changed() => if changed.is_err() { break },
                    _ = tick.tick() => {
                        let now = now_secs();
                        let r = shared.store.update_exporter(&ns, &name, |e| {
                            e.last_seen = Some(now);
                            true
                        }).await;
                        if let Err(e) = r {
                            tracing::warn!(exporter = %name, "heartbeat not stored: {e}");
                        }
                        if let Err(e) = shared.refresh_binding(&ns, &name).await {
                            tracing::warn!(exporter = %name, "binding refresh failed: {e}");
                        }
                    }
                    _ = tx.closed() => break,
                }
            }
            tracing::debug!(exporter = %name, "status stream ended");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn dial(
        &self,
        request: Request<v1::DialRequest>,
    ) -> Result<Response<v1::DialResponse>, Status> {
        let c = client(&self.shared, request.metadata()).await?;
        let name = request.into_inner().lease_name;
        if name.is_empty() {
            return Err(Status::unknown("empty lease name"));
        }
        let l = self
            .shared
            .store
            .lease(&c.namespace, &name)
            .await
            .map_err(raw)?
            .ok_or_else(|| lease_not_found(&name))?;
        if l.client != c.name {
            return Err(Status::unknown("permission denied"));
        }
        let Some(exporter_name) = l.st_exporter.clone() else {
            return Err(Status::unknown("lease not active"));
        };
        if l.ended {
            // Improvement over Go (§13.7): an ended lease fails at once instead of after a
            // 30 s wait; UNKNOWN is terminal for clients as before.
            return Err(Status::unknown("lease not active"));
        }
        let deadline = tokio::time::Instant::now() + DIAL_WAIT;
        let mut version = self.shared.status_version.subscribe();
        loop {
            version.borrow_and_update();
            let e = self
                .shared
                .store
                .exporter(&c.namespace, &exporter_name)
                .await
                .map_err(raw)?
                .ok_or_else(|| {
                    Status::unknown(format!(
                        "exporters.jumpstarter.dev \"{exporter_name}\" not found",
                        exporter_name = clip(&exporter_name)
                    ))
                })?;
            match e.status.as_str() {
                "LeaseReady" | "BeforeLeaseHook" | "AfterLeaseHook" | "Unspecified" | "" => break,
                "Available" => {
                    let timeout = tokio::time::timeout_at(deadline, version.changed()).await;
                    if !matches!(timeout, Ok(Ok(()))) {
                        return Err(Status::failed_precondition(
                            "exporter is not ready (status: Available)",
                        ));
                    }
                }
                "Offline" => return Err(Status::failed_precondition("exporter is offline")),
                "BeforeLeaseHookFailed" => {
                    return Err(Status::failed_precondition(
                        "exporter beforeLease hook failed",
                    ));
                }
                "AfterLeaseHookFailed" => {
                    return Err(Status::failed_precondition(
                        "exporter afterLease hook failed",
                    ));
                }
                other => {
                    return Err(Status::failed_precondition(format!(
                        "exporter not ready (status: {other})",
                        other = clip(other)
                    )));
                }
            }
        }
        let lease_key = (c.namespace.clone(), name.clone());
        let (token, stream) = self
            .shared
            .keys
            .mint_router_for(Some((&c.namespace, &name)))
            .map_err(|_| Status::internal("unable to sign token"))?;
        // Each Dial holds a connection on the exporter (and one here) until its streams pair:
        // bound how many may be unpaired at once. A slot is freed by the pairing, by the
        // first stream's pairing timeout, or after twice that if nobody came.
        let limits = &self.shared.limits;
        let window = limits.handshake_timeout.saturating_mul(2);
        if let Err(n) =
            self.shared
                .dials
                .reserve(&lease_key, &stream, limits.max_pending_dials, window)
        {
            return Err(Status::resource_exhausted(format!(
                "{}; wait for pending Dials of lease {} to pair or time out",
                jumpstarter_core::limits::Limits::exceeded("max_pending_dials", n),
                clip(&name)
            )));
        }
        let response = v1::ListenResponse {
            router_endpoint: self.shared.router_endpoint.clone(),
            router_token: token.clone(),
        };
        let pushed = {
            let map = lock(&self.shared.listeners);
            let Some(q) = map.get(&lease_key) else {
                self.shared.dials.settle(&lease_key, &stream);
                return Err(Status::unavailable(format!(
                    "exporter is not listening on lease {name}",
                    name = clip(&name)
                )));
            };
            match q.tx.try_send(response) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => Err(Status::resource_exhausted(
                    format!("listener buffer full on lease {name}", name = clip(&name)),
                )),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(Status::unavailable(format!(
                    "exporter is not listening on lease {name}",
                    name = clip(&name)
                ))),
            }
        };
        if let Err(e) = pushed {
            self.shared.dials.settle(&lease_key, &stream);
            return Err(e);
        }
        Ok(Response::new(v1::DialResponse {
            router_endpoint: self.shared.router_endpoint.clone(),
            router_token: token,
        }))
    }

    async fn audit_stream(
        &self,
        _request: Request<Streaming<v1::AuditStreamRequest>>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("method AuditStream not implemented"))
    }

    async fn get_lease(
        &self,
        request: Request<v1::GetLeaseRequest>,
    ) -> Result<Response<v1::GetLeaseResponse>, Status> {
        let c = client(&self.shared, request.metadata()).await?;
        let name = request.into_inner().name;
        let l = self
            .shared
            .store
            .lease(&c.namespace, &name)
            .await
            .map_err(raw)?
            .ok_or_else(|| lease_not_found(&name))?;
        if l.client != c.name {
            return Err(Status::unknown("GetLease permission denied"));
        }
        let exporter_uuid = match &l.st_exporter {
            Some(e) => Some(
                self.shared
                    .store
                    .exporter(&l.namespace, e)
                    .await
                    .ok()
                    .flatten()
                    .ok_or_else(|| Status::unknown("GetLease fetch exporter uuid failed"))?
                    .uid,
            ),
            None => None,
        };
        Ok(Response::new(v1::GetLeaseResponse {
            duration: l.duration_ns.map(convert::dur),
            selector: Some(v1::LabelSelector {
                match_expressions: l
                    .selector
                    .match_expressions
                    .iter()
                    .map(|e| v1::LabelSelectorRequirement {
                        key: e.key.clone(),
                        operator: e.operator.clone(),
                        values: e.values.clone(),
                    })
                    .collect(),
                match_labels: l.selector.match_labels.clone().into_iter().collect(),
            }),
            begin_time: l.st_begin.map(convert::ts),
            end_time: l.st_end.map(convert::ts),
            exporter_uuid,
            conditions: l.conditions.iter().map(convert::condition).collect(),
        }))
    }

    async fn request_lease(
        &self,
        request: Request<v1::RequestLeaseRequest>,
    ) -> Result<Response<v1::RequestLeaseResponse>, Status> {
        let c = client(&self.shared, request.metadata()).await?;
        let req = request.into_inner();
        let sel = req.selector.unwrap_or_default();
        let selector = LabelSelector {
            match_labels: sel.match_labels.into_iter().collect(),
            match_expressions: sel
                .match_expressions
                .into_iter()
                .map(|e| Expression {
                    key: e.key,
                    operator: e.operator,
                    values: e.values,
                })
                .collect(),
        };
        if selector.is_empty() {
            return Err(Status::unknown(
                "Lease.jumpstarter.dev is invalid: spec: Invalid value: one of selector or \
                 exporterRef.name is required",
            ));
        }
        let name = uuid::Uuid::now_v7().to_string();
        let l = LeaseRecord {
            namespace: c.namespace.clone(),
            name: name.clone(),
            uid: uuid::Uuid::new_v4().to_string(),
            client: c.name.clone(),
            selector,
            exporter_name: None,
            duration_ns: req.duration.as_ref().map(convert::dur_ns),
            begin_time: None,
            end_time: None,
            tags: Default::default(),
            allow_disabled: false,
            release: false,
            labelled: false,
            st_exporter: None,
            st_begin: None,
            st_end: None,
            ended: false,
            conditions: vec![],
            generation: 1,
            created: now_secs(),
        };
        self.shared.store.insert_lease(&l).await.map_err(raw)?;
        self.shared.wake();
        Ok(Response::new(v1::RequestLeaseResponse { name }))
    }

    async fn release_lease(
        &self,
        request: Request<v1::ReleaseLeaseRequest>,
    ) -> Result<Response<v1::ReleaseLeaseResponse>, Status> {
        let md = request.metadata().clone();
        let name = request.into_inner().name;
        let as_exporter =
            md.get("jumpstarter-kind").and_then(|v| v.to_str().ok()) == Some("Exporter");
        if as_exporter {
            let e = exporter(&self.shared, &md).await?;
            let l = self
                .shared
                .store
                .lease(&e.namespace, &name)
                .await
                .map_err(|err| Status::internal(format!("failed to get lease: {err}")))?
                .ok_or_else(|| {
                    Status::not_found(format!("lease {name} not found", name = clip(&name)))
                })?;
            if l.st_exporter.as_deref() != Some(e.name.as_str()) {
                return Err(Status::failed_precondition(format!(
                    "lease {name} is not held by exporter {}",
                    e.name,
                    name = clip(&name)
                )));
            }
            self.set_release(&e.namespace, &name).await.map_err(|err| {
                Status::internal(format!(
                    "failed to mark lease for release: {}",
                    err.message()
                ))
            })?;
        } else {
            let c = client(&self.shared, &md).await?;
            let l = self
                .shared
                .store
                .lease(&c.namespace, &name)
                .await
                .map_err(raw)?
                .ok_or_else(|| lease_not_found(&name))?;
            if l.client != c.name {
                return Err(Status::unknown("ReleaseLease permission denied"));
            }
            self.set_release(&c.namespace, &name).await?;
        }
        Ok(Response::new(v1::ReleaseLeaseResponse {}))
    }

    async fn list_leases(
        &self,
        request: Request<v1::ListLeasesRequest>,
    ) -> Result<Response<v1::ListLeasesResponse>, Status> {
        let c = client(&self.shared, request.metadata()).await?;
        let leases = self
            .shared
            .store
            .leases(Some(&c.namespace))
            .await
            .map_err(raw)?;
        let names = leases
            .into_iter()
            .filter(|l| l.client == c.name && !l.ended)
            .map(|l| l.name)
            .collect();
        Ok(Response::new(v1::ListLeasesResponse { names }))
    }
}

fn status_response(b: &Binding) -> v1::StatusResponse {
    v1::StatusResponse {
        leased: b.leased,
        lease_name: b.lease_name.clone(),
        client_name: b.client_name.clone(),
    }
}

/// Appends a condition, for code outside the scheduler that needs the same rules.
pub fn note(l: &mut LeaseRecord, type_: &str, status: bool, reason: &str, message: &str) {
    let g = l.generation;
    set_condition(
        &mut l.conditions,
        type_,
        status,
        reason,
        message,
        g,
        now_secs(),
    );
}
