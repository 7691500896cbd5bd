//! The session client: connect, read the report, and drive any driver by name.
//!
//! The tree is rebuilt from `GetReport` exactly as the Python client does it (a child attaches
//! to the *last* report seen with its parent's uuid, so a `ref:` alias gets its own copy of
//! the target's subtree). Typed clients (power, network, ...) wrap a [`DriverClient`].

mod error;
mod resource;
mod stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use jumpstarter_protocol::v1::{
    DriverCallRequest, DriverInstanceReport, EndSessionRequest, EndSessionResponse,
    GetStatusRequest, GetStatusResponse, LogStreamResponse, StreamingDriverCallRequest,
    exporter_service_client::ExporterServiceClient,
};
use jumpstarter_protocol::value::{from_proto_owned, into_proto};
use jumpstarter_protocol::wire::{CLIENT_LABEL, COMPOSITE_CLIENT, NAME_LABEL};
use serde_json::Value;

pub use error::{CallError, CallKind, ClientError, code_name};
pub use resource::{Progress, ResourceStream};
pub use stream::DriverStream;
pub use tonic::Code;

use crate::transport::{Dial, H2Channel, Target};

/// gRPC stubs sharing one connection.
#[derive(Clone, Debug)]
pub(crate) struct Rpc {
    pub(crate) exporter: ExporterServiceClient<H2Channel>,
    pub(crate) channel: H2Channel,
}

impl Rpc {
    fn new(channel: H2Channel) -> Rpc {
        let origin = channel.origin();
        Rpc {
            exporter: ExporterServiceClient::with_origin(channel.clone(), origin),
            channel,
        }
    }
}

/// A connection to a session and its driver tree.
#[derive(Clone, Debug)]
pub struct Client {
    rpc: Rpc,
    uuid: String,
    root: DriverClient,
    motd: String,
}

impl Client {
    /// Connects to a `JUMPSTARTER_HOST`-style target and reads the report.
    pub async fn connect(target: &Target) -> Result<Client, ClientError> {
        let channel = H2Channel::connect(target)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Self::from_channel(channel).await
    }

    /// Connects to a target as `dial` says (TLS, passphrase) and reads the report.
    pub async fn dial(target: &Target, dial: &Dial) -> Result<Client, ClientError> {
        let channel = H2Channel::dial(target, dial)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Self::from_channel(channel).await
    }

    /// Reads the report over an established channel.
    pub async fn from_channel(channel: H2Channel) -> Result<Client, ClientError> {
        let rpc = Rpc::new(channel);
        let report = rpc
            .exporter
            .clone()
            .get_report(())
            .await
            .map_err(|s| {
                if s.code() == Code::Unauthenticated {
                    ClientError::Unauthenticated(s.message().to_owned())
                } else {
                    ClientError::Connect(format!("{}: {}", error::code_name(s.code()), s.message()))
                }
            })?
            .into_inner();
        let root = build_tree(&rpc, report.reports)?;
        Ok(Client {
            rpc,
            uuid: report.uuid,
            root,
            motd: report.motd,
        })
    }

    /// The message of the day from the report (empty when the exporter has none).
    pub fn motd(&self) -> &str {
        &self.motd
    }

    /// Calls `GetReport` again (the message of the day may have grown since connecting).
    pub async fn get_report(
        &self,
    ) -> Result<jumpstarter_protocol::v1::GetReportResponse, tonic::Status> {
        Ok(self.rpc.exporter.clone().get_report(()).await?.into_inner())
    }

    /// The session (exporter) uuid from the report.
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The root composite.
    pub fn root(&self) -> &DriverClient {
        &self.root
    }

    /// A driver by dotted path (`power`, `group.psu2`).
    pub fn get(&self, path: &str) -> Option<&DriverClient> {
        let mut node = &self.root;
        for part in path.split('.') {
            node = node.child(part)?;
        }
        Some(node)
    }

    pub async fn get_status(&self) -> Result<GetStatusResponse, tonic::Status> {
        Ok(self
            .rpc
            .exporter
            .clone()
            .get_status(GetStatusRequest {})
            .await?
            .into_inner())
    }

    pub async fn end_session(&self) -> Result<EndSessionResponse, tonic::Status> {
        Ok(self
            .rpc
            .exporter
            .clone()
            .end_session(EndSessionRequest {})
            .await?
            .into_inner())
    }

    pub async fn log_stream(
        &self,
    ) -> Result<impl Stream<Item = Result<LogStreamResponse, tonic::Status>> + use<>, tonic::Status>
    {
        Ok(self.rpc.exporter.clone().log_stream(()).await?.into_inner())
    }
}

struct NodeData {
    uuid: String,
    name: String,
    labels: BTreeMap<String, String>,
    description: Option<String>,
    methods_description: BTreeMap<String, String>,
    children: Vec<DriverClient>,
}

/// One node of the tree: generic calls by method name, plus what the report says about it.
#[derive(Clone)]
pub struct DriverClient {
    node: Arc<NodeData>,
    rpc: Rpc,
}

impl std::fmt::Debug for DriverClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverClient")
            .field("name", &self.node.name)
            .field("uuid", &self.node.uuid)
            .field("client", &self.client_class())
            .finish()
    }
}

fn build_tree(rpc: &Rpc, reports: Vec<DriverInstanceReport>) -> Result<DriverClient, ClientError> {
    if reports.is_empty() {
        return Err(ClientError::Report(
            "the exporter reported no drivers".into(),
        ));
    }
    let mut last_index: HashMap<&str, usize> = HashMap::new();
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); reports.len()];
    let mut roots = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        match r.parent_uuid.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                let parent = *last_index.get(p).ok_or_else(|| {
                    ClientError::Report(format!(
                        "driver {} is listed before its parent {p}",
                        r.uuid
                    ))
                })?;
                kids[parent].push(i);
            }
            None => roots.push(i),
        }
        last_index.insert(r.uuid.as_str(), i);
    }
    if roots.len() != 1 {
        return Err(ClientError::Report(format!(
            "expected exactly one root driver, found {}",
            roots.len()
        )));
    }
    fn make(
        i: usize,
        reports: &[DriverInstanceReport],
        kids: &[Vec<usize>],
        rpc: &Rpc,
    ) -> DriverClient {
        let r = &reports[i];
        let labels: BTreeMap<String, String> = r.labels.clone().into_iter().collect();
        let name = labels.get(NAME_LABEL).cloned().unwrap_or_default();
        let children = kids[i]
            .iter()
            .map(|&c| make(c, reports, kids, rpc))
            .collect();
        DriverClient {
            node: Arc::new(NodeData {
                uuid: r.uuid.clone(),
                name,
                labels,
                description: r.description.clone(),
                methods_description: r.methods_description.clone().into_iter().collect(),
                children,
            }),
            rpc: rpc.clone(),
        }
    }
    Ok(make(roots[0], &reports, &kids, rpc))
}

impl DriverClient {
    pub fn uuid(&self) -> &str {
        &self.node.uuid
    }

    /// The export key (empty for the root).
    pub fn name(&self) -> &str {
        &self.node.name
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.node.labels
    }

    /// The client class path from `jumpstarter.dev/client`.
    pub fn client_class(&self) -> &str {
        self.node
            .labels
            .get(CLIENT_LABEL)
            .map_or("", String::as_str)
    }

    /// Whether a driver allow-list lets a client use this node's typed client class
    /// (composites are structure and always allowed). `Err` carries the note to show in
    /// place of the node's commands: a disallowed node is shown, never dropped.
    pub fn allowed_by(&self, allow: &jumpstarter_config::DriverAllow) -> Result<(), NotAllowed> {
        let class = self.client_class();
        if class == COMPOSITE_CLIENT || allow.allows(class) {
            Ok(())
        } else {
            Err(NotAllowed(allow.denial(class)))
        }
    }

    pub fn description(&self) -> Option<&str> {
        self.node.description.as_deref()
    }

    pub fn methods_description(&self) -> &BTreeMap<String, String> {
        &self.node.methods_description
    }

    pub fn children(&self) -> &[DriverClient] {
        &self.node.children
    }

    pub fn child(&self, name: &str) -> Option<&DriverClient> {
        self.node.children.iter().find(|c| c.name() == name)
    }

    /// `DriverCall`.
    pub async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value, ClientError> {
        let req = DriverCallRequest {
            uuid: self.node.uuid.clone(),
            method: method.to_owned(),
            args: args.into_iter().map(into_proto).collect(),
        };
        match self.rpc.exporter.clone().driver_call(req).await {
            Ok(resp) => Ok(resp
                .into_inner()
                .result
                .map(from_proto_owned)
                .unwrap_or(Value::Null)),
            Err(status) => Err(ClientError::call(CallKind::DriverCall, method, status)),
        }
    }

    /// `StreamingDriverCall`: each item as it arrives.
    pub async fn streaming_call(
        &self,
        method: &str,
        args: Vec<Value>,
    ) -> Result<impl Stream<Item = Result<Value, ClientError>> + Send + use<>, ClientError> {
        let req = StreamingDriverCallRequest {
            uuid: self.node.uuid.clone(),
            method: method.to_owned(),
            args: args.into_iter().map(into_proto).collect(),
        };
        let method_name = method.to_owned();
        match self.rpc.exporter.clone().streaming_driver_call(req).await {
            Ok(resp) => Ok(resp.into_inner().map(move |item| match item {
                Ok(r) => Ok(r.result.map(from_proto_owned).unwrap_or(Value::Null)),
                Err(status) => Err(ClientError::call(
                    CallKind::StreamingDriverCall,
                    &method_name,
                    status,
                )),
            })),
            Err(status) => Err(ClientError::call(
                CallKind::StreamingDriverCall,
                method,
                status,
            )),
        }
    }

    /// `StreamingDriverCall`, collected.
    pub async fn streaming_call_collect(
        &self,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, ClientError> {
        let mut items = Box::pin(self.streaming_call(method, args).await?);
        let mut out = Vec::new();
        while let Some(item) = items.next().await {
            out.push(item?);
        }
        Ok(out)
    }

    /// Opens a byte-stream method (`connect` for network and serial drivers).
    pub async fn stream(&self, method: &str) -> Result<DriverStream, ClientError> {
        let request =
            serde_json::json!({"kind": "driver", "uuid": self.node.uuid, "method": method});
        DriverStream::open(&self.rpc, request.to_string(), method).await
    }
}

/// A node the driver allow-list does not let this client drive; the text is the note shown in
/// place of the node's commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAllowed(pub String);
