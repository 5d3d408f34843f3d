//! The head: the control plane. It keeps cluster membership, the function
//! table and a small KV store. It runs inside the first node's process by
//! default and is never on the per-task path: nodes talk to it when they
//! start, on heartbeats and when a function is first registered.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use ember_proto::v1::{self, head_service_server::HeadService};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct HeadState {
    nodes: HashMap<Bytes, v1::NodeInfo>,
    functions: HashMap<Bytes, Bytes>,
    kv: HashMap<(String, Bytes), Bytes>,
}

/// The in-memory head (persistence is a later issue).
#[derive(Default)]
pub struct Head {
    state: Mutex<HeadState>,
}

/// How often nodes are expected to report.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1000;

impl Head {
    fn state(&self) -> std::sync::MutexGuard<'_, HeadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register_node(&self, node: v1::NodeInfo) {
        self.state().nodes.insert(node.node_id.clone(), node);
    }

    pub fn nodes(&self) -> Vec<v1::NodeInfo> {
        self.state().nodes.values().cloned().collect()
    }

    pub fn register_function(&self, id: Bytes, payload: Bytes) {
        self.state().functions.entry(id).or_insert(payload);
    }

    pub fn function(&self, id: &Bytes) -> Option<Bytes> {
        self.state().functions.get(id).cloned()
    }

    pub fn kv_put(&self, ns: String, key: Bytes, value: Bytes, overwrite: bool) -> bool {
        let mut st = self.state();
        let k = (ns, key);
        if !overwrite && st.kv.contains_key(&k) {
            return false;
        }
        st.kv.insert(k, value).is_none()
    }

    pub fn kv_get(&self, ns: String, key: Bytes) -> Option<Bytes> {
        self.state().kv.get(&(ns, key)).cloned()
    }
}

/// The gRPC face of the head.
pub struct HeadServiceImpl(pub std::sync::Arc<Head>);

#[tonic::async_trait]
impl HeadService for HeadServiceImpl {
    async fn register_node(
        &self,
        req: Request<v1::RegisterNodeRequest>,
    ) -> Result<Response<v1::RegisterNodeResponse>, Status> {
        let node = req
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("node is required"))?;
        if node.node_id.len() != ember_proto::NodeId::LEN {
            return Err(Status::invalid_argument("node_id must be 16 bytes"));
        }
        self.0.register_node(node);
        Ok(Response::new(v1::RegisterNodeResponse {
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let hb = req.into_inner();
        {
            let mut st = self.0.state();
            let node = st
                .nodes
                .get_mut(&hb.node_id)
                .ok_or_else(|| Status::not_found("unknown node: register first"))?;
            node.resources_available = hb.resources_available;
        }
        Ok(Response::new(v1::HeartbeatResponse {
            nodes: self.0.nodes(),
        }))
    }

    async fn register_function(
        &self,
        req: Request<v1::RegisterFunctionRequest>,
    ) -> Result<Response<v1::RegisterFunctionResponse>, Status> {
        let r = req.into_inner();
        let f = r
            .function
            .ok_or_else(|| Status::invalid_argument("function is required"))?;
        self.0.register_function(f.function_id, r.payload);
        Ok(Response::new(v1::RegisterFunctionResponse {}))
    }

    async fn get_function(
        &self,
        req: Request<v1::GetFunctionRequest>,
    ) -> Result<Response<v1::GetFunctionResponse>, Status> {
        let f = req
            .into_inner()
            .function
            .ok_or_else(|| Status::invalid_argument("function is required"))?;
        let payload = self.0.function(&f.function_id);
        Ok(Response::new(v1::GetFunctionResponse {
            found: payload.is_some(),
            payload: payload.unwrap_or_default(),
        }))
    }

    async fn kv_put(
        &self,
        req: Request<v1::KvPutRequest>,
    ) -> Result<Response<v1::KvPutResponse>, Status> {
        let r = req.into_inner();
        let added = self.0.kv_put(r.namespace, r.key, r.value, r.overwrite);
        Ok(Response::new(v1::KvPutResponse { added }))
    }

    async fn kv_get(
        &self,
        req: Request<v1::KvGetRequest>,
    ) -> Result<Response<v1::KvGetResponse>, Status> {
        let r = req.into_inner();
        let value = self.0.kv_get(r.namespace, r.key);
        Ok(Response::new(v1::KvGetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_respects_overwrite() {
        let head = Head::default();
        assert!(head.kv_put("ns".into(), "k".into(), "1".into(), false));
        assert!(!head.kv_put("ns".into(), "k".into(), "2".into(), false));
        assert_eq!(
            head.kv_get("ns".into(), "k".into()).unwrap(),
            Bytes::from("1")
        );
        head.kv_put("ns".into(), "k".into(), "3".into(), true);
        assert_eq!(
            head.kv_get("ns".into(), "k".into()).unwrap(),
            Bytes::from("3")
        );
        assert!(head.kv_get("other".into(), "k".into()).is_none());
    }
}
