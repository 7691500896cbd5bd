//! `jumpstarter.client.v1.ClientService` (controller.md §5.3): exporters and leases as the
//! `jmp` CLI and the Python client library see them.

use std::sync::Arc;

use base64::Engine;
use jumpstarter_protocol::client_v1;
use jumpstarter_protocol::client_v1::client_service_server::ClientService;
use tonic::{Request, Response, Status};

use crate::controller_service::{client, raw};
use crate::convert::{self, parse_name, parse_parent};
use crate::model::{ClientRecord, LeaseRecord, TAG_PREFIX, now_secs, reconcile_times};
use crate::scheduler::Shared;
use crate::selector::{LabelError, Selector, to_label_selector, validate_key, validate_value};
use crate::store::StoreError;
use crate::text::clip;

/// Most tags a lease may carry.
pub const MAX_TAGS: usize = 10;

pub struct ClientSvc {
    pub shared: Arc<Shared>,
}

async fn caller_in(
    shared: &Shared,
    md: &tonic::metadata::MetadataMap,
    ns: &str,
) -> Result<ClientRecord, Status> {
    let c = client(shared, md).await?;
    if c.namespace != ns {
        return Err(Status::permission_denied("namespace mismatch"));
    }
    Ok(c)
}

/// Keyset pagination by name: the token is the base64 of the last name returned.
fn paginate<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    page_size: i32,
    token: &str,
) -> Result<(Vec<T>, String), Status> {
    let after = if token.is_empty() {
        None
    } else {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Status::unknown("invalid continue token"))?;
        Some(raw)
    };
    let mut items: Vec<T> = items
        .into_iter()
        .filter(|i| after.as_deref().is_none_or(|a| name(i) > a))
        .collect();
    let mut next = String::new();
    if page_size > 0 && items.len() > page_size as usize {
        items.truncate(page_size as usize);
        if let Some(last) = items.last() {
            next = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name(last));
        }
    }
    Ok((items, next))
}

/// Why the tags of a lease are refused.
#[derive(Debug, thiserror::Error)]
enum TagError {
    #[error("too many tags: {0} (maximum {MAX_TAGS})")]
    TooMany(usize),
    /// The key, quoted and clipped.
    #[error("tag key {0} uses a reserved prefix")]
    Reserved(String),
    /// The key, quoted and clipped.
    #[error("tag key {0} must not contain '/'")]
    Slash(String),
    #[error(transparent)]
    Label(#[from] LabelError),
}

fn validate_tags(tags: &std::collections::HashMap<String, String>) -> Result<(), TagError> {
    if tags.len() > MAX_TAGS {
        return Err(TagError::TooMany(tags.len()));
    }
    for (k, v) in tags {
        if k.starts_with(TAG_PREFIX) || k.starts_with("jumpstarter.dev/") {
            return Err(TagError::Reserved(format!("{:?}", clip(k))));
        }
        if k.contains('/') {
            return Err(TagError::Slash(format!("{:?}", clip(k))));
        }
        validate_key(&format!("{TAG_PREFIX}{k}"))?;
        validate_value(v)?;
    }
    Ok(())
}

fn secs(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().map(|t| t.seconds)
}

#[tonic::async_trait]
impl ClientService for ClientSvc {
    async fn get_exporter(
        &self,
        request: Request<client_v1::GetExporterRequest>,
    ) -> Result<Response<client_v1::Exporter>, Status> {
        let (ns, name) = parse_name(&request.get_ref().name, "exporters")?;
        caller_in(&self.shared, request.metadata(), &ns).await?;
        let e = self
            .shared
            .store
            .exporter(&ns, &name)
            .await
            .map_err(raw)?
            .ok_or_else(|| {
                Status::unknown(format!(
                    "exporters.jumpstarter.dev \"{name}\" not found",
                    name = clip(&name)
                ))
            })?;
        Ok(Response::new(convert::exporter(&e)))
    }

    async fn list_exporters(
        &self,
        request: Request<client_v1::ListExportersRequest>,
    ) -> Result<Response<client_v1::ListExportersResponse>, Status> {
        let ns = parse_parent(&request.get_ref().parent)?;
        caller_in(&self.shared, request.metadata(), &ns).await?;
        let req = request.into_inner();
        let filter = Selector::parse(&req.filter).map_err(|e| Status::unknown(e.0))?;
        let exporters: Vec<_> = self
            .shared
            .store
            .exporters()
            .await
            .map_err(raw)?
            .into_iter()
            .filter(|e| e.namespace == ns && filter.matches(&e.labels))
            .collect();
        let (page, next) = paginate(exporters, |e| &e.name, req.page_size, &req.page_token)?;
        Ok(Response::new(client_v1::ListExportersResponse {
            exporters: page.iter().map(convert::exporter).collect(),
            next_page_token: next,
        }))
    }

    async fn get_lease(
        &self,
        request: Request<client_v1::GetLeaseRequest>,
    ) -> Result<Response<client_v1::Lease>, Status> {
        let (ns, name) = parse_name(&request.get_ref().name, "leases")?;
        caller_in(&self.shared, request.metadata(), &ns).await?;
        let l = self
            .shared
            .store
            .lease(&ns, &name)
            .await
            .map_err(raw)?
            .ok_or_else(|| {
                Status::unknown(format!(
                    "leases.jumpstarter.dev \"{name}\" not found",
                    name = clip(&name)
                ))
            })?;
        Ok(Response::new(convert::lease(&l)))
    }

    async fn list_leases(
        &self,
        request: Request<client_v1::ListLeasesRequest>,
    ) -> Result<Response<client_v1::ListLeasesResponse>, Status> {
        let ns = parse_parent(&request.get_ref().parent)?;
        caller_in(&self.shared, request.metadata(), &ns).await?;
        let req = request.into_inner();
        let filter = Selector::parse(&req.filter).map_err(|e| Status::unknown(e.0))?;
        let mut tag_filter = Selector::parse(&req.tag_filter)
            .map_err(|e| Status::invalid_argument(format!("invalid tag_filter: {}", e.0)))?;
        for r in &mut tag_filter.requirements {
            r.key = format!("{TAG_PREFIX}{}", r.key);
            validate_key(&r.key).map_err(|e| {
                Status::invalid_argument(format!("invalid tag_filter requirement: {e}"))
            })?;
        }
        let only_active = req.only_active.unwrap_or(true);
        let leases: Vec<LeaseRecord> = self
            .shared
            .store
            .leases(Some(&ns))
            .await
            .map_err(raw)?
            .into_iter()
            .filter(|l| {
                let labels = l.labels();
                filter.matches(&labels) && tag_filter.matches(&labels) && (!only_active || !l.ended)
            })
            .collect();
        let (page, next) = paginate(leases, |l| &l.name, req.page_size, &req.page_token)?;
        Ok(Response::new(client_v1::ListLeasesResponse {
            leases: page.iter().map(convert::lease).collect(),
            next_page_token: next,
        }))
    }

    async fn create_lease(
        &self,
        request: Request<client_v1::CreateLeaseRequest>,
    ) -> Result<Response<client_v1::Lease>, Status> {
        let req = request.get_ref();
        let Some(lease) = &req.lease else {
            return Err(Status::invalid_argument("lease is required"));
        };
        let exporter_name = lease.exporter_name.clone().filter(|n| !n.is_empty());
        if lease.selector.is_empty() && exporter_name.is_none() {
            return Err(Status::invalid_argument(
                "one of selector or exporter_name is required",
            ));
        }
        validate_tags(&lease.tags)
            .map_err(|e| Status::invalid_argument(format!("invalid lease tags: {e}")))?;
        let ns = parse_parent(&req.parent)?;
        let c = caller_in(&self.shared, request.metadata(), &ns).await?;
        let req = request.into_inner();
        let lease = req.lease.unwrap_or_default();
        let name = if req.lease_id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            req.lease_id.clone()
        };
        if !convert::valid_object_name(&name) {
            return Err(Status::unknown(format!(
                "Lease.jumpstarter.dev \"{name}\" is invalid: metadata.name: Invalid value: \
                 \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case \
                 alphanumeric characters, '-' or '.', and must start and end with an \
                 alphanumeric character",
                name = clip(&name)
            )));
        }
        let selector = to_label_selector(&lease.selector).map_err(|e| Status::unknown(e.0))?;
        let (begin, end, duration) = reconcile_times(
            secs(&lease.begin_time),
            secs(&lease.end_time),
            lease.duration.as_ref().map(convert::dur_ns),
        )
        .map_err(|e| Status::unknown(e.to_string()))?;
        let l = LeaseRecord {
            namespace: ns.clone(),
            name: name.clone(),
            uid: uuid::Uuid::new_v4().to_string(),
            client: c.name.clone(),
            selector,
            exporter_name,
            duration_ns: Some(duration),
            begin_time: begin,
            end_time: end,
            tags: lease.tags.into_iter().collect(),
            allow_disabled: lease.allow_disabled,
            release: false,
            labelled: true,
            st_exporter: None,
            st_begin: None,
            st_end: None,
            ended: false,
            conditions: vec![],
            generation: 1,
            created: now_secs(),
        };
        self.shared.store.insert_lease(&l).await.map_err(raw)?;
        tracing::info!(lease = %name, client = %c.name, selector = %l.selector, "lease created");
        self.shared.wake();
        Ok(Response::new(convert::lease(&l)))
    }

    async fn update_lease(
        &self,
        request: Request<client_v1::UpdateLeaseRequest>,
    ) -> Result<Response<client_v1::Lease>, Status> {
        let lease = request.get_ref().lease.clone().unwrap_or_default();
        let (ns, name) = parse_name(&lease.name, "leases")?;
        let c = caller_in(&self.shared, request.metadata(), &ns).await?;
        let begin = secs(&lease.begin_time);
        let end = secs(&lease.end_time);
        let duration = lease.duration.as_ref().map(convert::dur_ns);
        let times_given = begin.is_some() || end.is_some() || duration.is_some();
        if times_given {
            reconcile_times(begin, end, duration).map_err(|e| Status::unknown(e.to_string()))?;
        }
        // Transfer target, checked before the transaction.
        let target = match lease.client.as_deref().filter(|s| !s.is_empty()) {
            Some(t) => {
                let (tns, tname) = parse_name(t, "clients")?;
                Some((tns, tname))
            }
            None => None,
        };
        if let Some((tns, tname)) = &target
            && *tns == ns
            && self
                .shared
                .store
                .client(tns, tname)
                .await
                .map_err(raw)?
                .is_none()
        {
            return Err(Status::unknown(format!(
                "target client not found: clients.jumpstarter.dev \"{tname}\" not found",
                tname = clip(tname)
            )));
        }
        let updated = self
            .shared
            .store
            .update_lease(&ns, &name, |l| {
                if l.client != c.name {
                    return Err(Status::unknown("UpdateLease permission denied"));
                }
                if let Some(b) = begin {
                    if l.st_exporter.is_some() && l.begin_time != Some(b) {
                        return Err(Status::unknown(
                            "cannot update BeginTime: lease has already started",
                        ));
                    }
                    l.begin_time = Some(b);
                }
                if let Some(d) = duration {
                    l.duration_ns = Some(d);
                }
                if let Some(e) = end {
                    l.end_time = Some(e);
                }
                if let Some((tns, tname)) = &target {
                    if l.st_exporter.is_none() {
                        return Err(Status::unknown(
                            "cannot transfer lease: lease has not started yet",
                        ));
                    }
                    if l.ended {
                        return Err(Status::unknown(
                            "cannot transfer lease: lease has already ended",
                        ));
                    }
                    if *tns != l.namespace {
                        return Err(Status::unknown(
                            "cannot transfer lease to client in different namespace",
                        ));
                    }
                    l.client = tname.clone();
                }
                if times_given {
                    let (b, e, d) = reconcile_times(l.begin_time, l.end_time, l.duration_ns)
                        .map_err(|e| Status::unknown(e.to_string()))?;
                    l.begin_time = b;
                    l.end_time = e;
                    l.duration_ns = Some(d);
                }
                l.generation += 1;
                Ok(true)
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => Status::unknown(format!(
                    "leases.jumpstarter.dev \"{name}\" not found",
                    name = clip(&name)
                )),
                e => raw(e),
            })??;
        self.shared.wake();
        Ok(Response::new(convert::lease(&updated)))
    }

    async fn delete_lease(
        &self,
        request: Request<client_v1::DeleteLeaseRequest>,
    ) -> Result<Response<()>, Status> {
        let full = request.get_ref().name.clone();
        let (ns, name) = parse_name(&full, "leases")?;
        let c = caller_in(&self.shared, request.metadata(), &ns).await?;
        self.shared
            .store
            .update_lease(&ns, &name, |l| {
                if l.client != c.name {
                    return Err(Status::unknown("DeleteLease permission denied"));
                }
                if l.release {
                    return Err(Status::failed_precondition(format!(
                        "lease \"{full}\" has already been released"
                    )));
                }
                l.release = true;
                l.generation += 1;
                Ok(true)
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => Status::unknown(format!(
                    "leases.jumpstarter.dev \"{name}\" not found",
                    name = clip(&name)
                )),
                e => raw(e),
            })??;
        tracing::info!(lease = %name, client = %c.name, "lease released");
        self.shared.wake();
        Ok(Response::new(()))
    }

    async fn rotate_token(
        &self,
        request: Request<client_v1::RotateTokenRequest>,
    ) -> Result<Response<client_v1::RotateTokenResponse>, Status> {
        let ns = parse_parent(&request.get_ref().parent)?;
        let c = caller_in(&self.shared, request.metadata(), &ns).await?;
        // The new token carries the next credential generation; once it is stored, tokens of
        // every earlier generation (the caller's included) stop authenticating.
        let generation = c.token_generation + 1;
        let (token, exp) = self
            .shared
            .keys
            .mint_internal_gen(
                "client",
                &c.namespace,
                &c.name,
                &c.uid,
                self.shared.rotated_token_lifetime,
                generation,
            )
            .map_err(|e| Status::internal(format!("failed to mint token: {e}")))?;
        self.shared
            .store
            .rotate_client_token(&c.namespace, &c.name, c.token_generation, &token)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => Status::aborted(format!(
                    "{e}: a concurrent RotateToken won; use the token it returned"
                )),
                e => Status::internal(format!("failed to update credential secret: {e}")),
            })?;
        tracing::info!(client = %c.name, namespace = %c.namespace, generation, "token rotated");
        Ok(Response::new(client_v1::RotateTokenResponse {
            token,
            expiry: Some(convert::ts(i64::try_from(exp).unwrap_or(i64::MAX))),
        }))
    }
}
