//! The head: the control plane. It keeps cluster membership (with
//! liveness from heartbeats), the function table and a small KV store. It
//! runs inside the first node's process by default and is never on the
//! per-task path: nodes talk to it when they join and on heartbeats.
//!
//! Membership: a node registers (`RegisterNode`), then heartbeats every
//! `heartbeat_interval` with its current `NodeInfo`; each answer carries
//! every node the head knows, which is how nodes learn the cluster. A node
//! silent for `missed_beats` intervals is declared dead (kept in the list
//! with `alive: false`); its heartbeats are then refused until it registers
//! again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ember_proto::v1::{self, head_service_server::HeadService};
use prost::Message;

use crate::head_store::{Backend, Entries};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct HeadState {
    nodes: HashMap<Bytes, NodeRecord>,
    functions: HashMap<Bytes, Bytes>,
    kv: HashMap<(String, Bytes), Bytes>,
    /// The actor directory: actor id -> record (dead actors are dropped,
    /// but a dead named actor's record stays until the name is reused).
    actors: HashMap<Bytes, v1::ActorRecord>,
    /// (namespace, name) -> actor id.
    actor_names: HashMap<(String, String), Bytes>,
    /// The job table: job id -> job.
    jobs: HashMap<Bytes, v1::JobInfo>,
    /// Requests answered, by RPC.
    requests: HashMap<&'static str, u64>,
    /// Where the tables are kept (see `head_store`); none: memory only.
    backend: Option<Box<dyn Backend>>,
    /// A write to the backend failed (said once, not per write).
    backend_failed: bool,
}

impl HeadState {
    fn persist(&mut self, table: &str, key: &[u8], value: Option<&[u8]>) {
        let Some(backend) = self.backend.as_mut() else {
            return;
        };
        let result = match value {
            Some(v) => backend.put(table, key, v),
            None => backend.delete(table, key),
        };
        match result {
            Ok(()) => self.backend_failed = false,
            Err(error) if !self.backend_failed => {
                self.backend_failed = true;
                tracing::error!(error = %format!("{error:#}"), storage = %backend.describe(), "the head cannot write its storage: it keeps running from memory");
            }
            Err(_) => {}
        }
    }

    fn persist_actor(&mut self, id: &Bytes) {
        match self.actors.get(id).map(|r| r.encode_to_vec()) {
            Some(v) => self.persist("actors", id, Some(&v)),
            None => self.persist("actors", id, None),
        }
    }
}

/// Finished jobs kept in the table (the oldest go first).
const MAX_FINISHED_JOBS: usize = 10_000;

impl HeadState {
    fn register_job(&mut self, job: v1::JobInfo) {
        let id = job.job_id.clone();
        self.persist("jobs", &id, Some(&job.encode_to_vec()));
        self.jobs.insert(id, job);
        let finished = self.jobs.values().filter(|j| j.finished).count();
        if finished > MAX_FINISHED_JOBS {
            let mut old: Vec<(u64, Bytes)> = self
                .jobs
                .iter()
                .filter(|(_, j)| j.finished)
                .map(|(id, j)| (j.end_time_ms, id.clone()))
                .collect();
            old.sort();
            for (_, id) in old.into_iter().take(finished - MAX_FINISHED_JOBS) {
                self.jobs.remove(&id);
                self.persist("jobs", &id, None);
            }
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn kv_key(ns: &str, key: &[u8]) -> Vec<u8> {
    let mut k = ns.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key);
    k
}

fn record_state(r: &v1::ActorRecord) -> v1::ActorState {
    r.actor
        .as_ref()
        .and_then(|a| v1::ActorState::try_from(a.state).ok())
        .unwrap_or(v1::ActorState::Pending)
}

fn record_name(r: &v1::ActorRecord) -> Option<(String, String)> {
    let c = r.actor.as_ref()?.creation.as_ref()?;
    (!c.name.is_empty()).then(|| (c.namespace.clone(), c.name.clone()))
}

struct NodeRecord {
    info: v1::NodeInfo,
    /// When it last registered or heartbeat.
    last_seen: Instant,
}

/// The in-memory head (persistence is a later issue).
pub struct Head {
    state: Mutex<HeadState>,
    /// How often nodes report.
    pub heartbeat_interval: Duration,
    /// Intervals of silence after which a node is declared dead.
    pub missed_beats: u32,
}

impl Default for Head {
    fn default() -> Self {
        Head::new(Duration::from_secs(1), 5)
    }
}

/// Why a heartbeat was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeartbeatRefused {
    Unknown,
    DeclaredDead,
}

impl Head {
    pub fn new(heartbeat_interval: Duration, missed_beats: u32) -> Head {
        Head {
            state: Mutex::new(HeadState::default()),
            heartbeat_interval,
            missed_beats: missed_beats.max(1),
        }
    }

    /// A head that keeps its tables in `backend`, starting from `entries`
    /// (what a previous head stored there). Nodes it knew count as alive
    /// until they miss their beats: a node that kept running goes on
    /// heartbeating and never notices the restart.
    pub fn with_storage(
        heartbeat_interval: Duration,
        missed_beats: u32,
        backend: Box<dyn Backend>,
        entries: Entries,
    ) -> Head {
        let head = Head::new(heartbeat_interval, missed_beats);
        {
            let mut st = head.state();
            for (table, key, value) in entries {
                match table.as_str() {
                    "nodes" => {
                        if let Ok(mut info) = v1::NodeInfo::decode(value.as_slice()) {
                            info.is_head = false; // the head it was is gone
                            st.nodes.insert(
                                Bytes::from(key),
                                NodeRecord {
                                    info,
                                    last_seen: Instant::now(),
                                },
                            );
                        }
                    }
                    "functions" => {
                        st.functions.insert(Bytes::from(key), Bytes::from(value));
                    }
                    "kv" => {
                        if let Some(split) = key.iter().position(|b| *b == 0) {
                            let ns = String::from_utf8_lossy(&key[..split]).into_owned();
                            st.kv.insert(
                                (ns, Bytes::copy_from_slice(&key[split + 1..])),
                                Bytes::from(value),
                            );
                        }
                    }
                    "jobs" => {
                        if let Ok(job) = v1::JobInfo::decode(value.as_slice()) {
                            st.jobs.insert(Bytes::from(key), job);
                        }
                    }
                    "actors" => {
                        if let Ok(record) = v1::ActorRecord::decode(value.as_slice()) {
                            if let Some(name) = record_name(&record) {
                                st.actor_names.insert(name, Bytes::from(key.clone()));
                            }
                            st.actors.insert(Bytes::from(key), record);
                        }
                    }
                    _ => {}
                }
            }
            tracing::info!(
                storage = %backend.describe(),
                nodes = st.nodes.len(),
                actors = st.actors.len(),
                functions = st.functions.len(),
                kv = st.kv.len(),
                "the head loaded its tables"
            );
            st.backend = Some(backend);
        }
        head
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HeadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A node joins (or rejoins: a node declared dead comes back alive).
    pub fn register_node(&self, mut node: v1::NodeInfo) {
        node.alive = true;
        let id = node.node_id.clone();
        let rejoined = self.state().nodes.contains_key(&id);
        tracing::info!(node = %hex::encode(&id), address = %node.address, rejoined, "node registered");
        let mut st = self.state();
        st.persist("nodes", &id, Some(&node.encode_to_vec()));
        let record = NodeRecord {
            info: node,
            last_seen: Instant::now(),
        };
        st.nodes.insert(id, record);
    }

    /// A node reports: its info replaces what was known.
    pub fn heartbeat(&self, mut node: v1::NodeInfo) -> Result<(), HeartbeatRefused> {
        let mut st = self.state();
        let record = st
            .nodes
            .get_mut(&node.node_id)
            .ok_or(HeartbeatRefused::Unknown)?;
        if !record.info.alive {
            return Err(HeartbeatRefused::DeclaredDead);
        }
        node.alive = true;
        node.is_head = record.info.is_head;
        record.info = node;
        record.last_seen = Instant::now();
        Ok(())
    }

    /// Declare dead the nodes silent for too long; returns them.
    pub fn check_liveness(&self, now: Instant) -> Vec<v1::NodeInfo> {
        let limit = self.heartbeat_interval * self.missed_beats;
        let mut dead = Vec::new();
        let mut st = self.state();
        for record in st.nodes.values_mut() {
            if record.info.alive && now.duration_since(record.last_seen) > limit {
                record.info.alive = false;
                tracing::warn!(
                    node = %hex::encode(&record.info.node_id),
                    address = %record.info.address,
                    missed_beats = self.missed_beats,
                    "node declared dead: no heartbeat"
                );
                dead.push(record.info.clone());
            }
        }
        for info in &dead {
            st.persist("nodes", &info.node_id, Some(&info.encode_to_vec()));
            // Its drivers are gone with it.
            let ended: Vec<Bytes> = st
                .jobs
                .iter()
                .filter(|(_, j)| !j.finished && j.node_id == info.node_id)
                .map(|(id, _)| id.clone())
                .collect();
            for id in ended {
                let mut job = st.jobs[&id].clone();
                job.finished = true;
                job.end_time_ms = now_ms();
                st.register_job(job);
            }
        }
        dead
    }

    /// Every node known, alive or dead, ordered by address.
    pub fn nodes(&self) -> Vec<v1::NodeInfo> {
        let mut nodes: Vec<v1::NodeInfo> = self
            .state()
            .nodes
            .values()
            .map(|r| r.info.clone())
            .collect();
        nodes.sort_by(|a, b| a.address.cmp(&b.address));
        nodes
    }

    pub fn register_function(&self, id: Bytes, payload: Bytes) {
        let mut st = self.state();
        if !st.functions.contains_key(&id) {
            st.persist("functions", &id, Some(&payload));
            st.functions.insert(id, payload);
        }
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
        st.persist("kv", &kv_key(&k.0, &k.1), Some(&value));
        st.kv.insert(k, value).is_none()
    }

    pub fn kv_get(&self, ns: String, key: Bytes) -> Option<Bytes> {
        self.state().kv.get(&(ns, key)).cloned()
    }

    /// Add or update an actor. A named actor is refused (with the actor
    /// that has the name) while another live actor of a live node has it.
    pub fn register_actor(&self, record: v1::ActorRecord) -> Result<(), Box<v1::ActorRecord>> {
        let Some(id) = record.actor.as_ref().map(|a| a.actor_id.clone()) else {
            return Ok(());
        };
        let mut st = self.state();
        let name = record_name(&record);
        if let Some(key) = &name {
            if let Some(holder) = st.actor_names.get(key).filter(|h| **h != id) {
                if let Some(existing) = st.actors.get(holder) {
                    let owner_alive = st
                        .nodes
                        .get(&existing.owner_node_id)
                        .is_some_and(|n| n.info.alive);
                    if record_state(existing) != v1::ActorState::Dead && owner_alive {
                        return Err(Box::new(existing.clone()));
                    }
                }
            }
        }
        let dead = record_state(&record) == v1::ActorState::Dead;
        match (name, dead) {
            (Some(key), false) => {
                if let Some(old) = st.actor_names.insert(key, id.clone()) {
                    if old != id {
                        st.actors.remove(&old);
                        st.persist_actor(&old);
                    }
                }
                st.actors.insert(id.clone(), record);
            }
            (Some(_), true) | (None, false) => {
                st.actors.insert(id.clone(), record);
            }
            (None, true) => {
                st.actors.remove(&id);
            }
        }
        st.persist_actor(&id);
        Ok(())
    }

    /// An actor by id, or by (namespace, name).
    pub fn actor(&self, id: &[u8], namespace: &str, name: &str) -> Option<v1::ActorRecord> {
        let st = self.state();
        let id = if id.is_empty() {
            st.actor_names
                .get(&(namespace.to_string(), name.to_string()))?
                .clone()
        } else {
            Bytes::copy_from_slice(id)
        };
        let mut record = st.actors.get(&id)?.clone();
        // Its owner's node died: nobody can reach it.
        let owner_alive = st
            .nodes
            .get(&record.owner_node_id)
            .is_some_and(|n| n.info.alive);
        if !owner_alive {
            if let Some(a) = record.actor.as_mut() {
                if a.state != v1::ActorState::Dead as i32 {
                    a.state = v1::ActorState::Dead as i32;
                    a.death_cause = "the node that owned it died".into();
                }
            }
        }
        Some(record)
    }

    /// A node reports a job (driver) that started or finished.
    pub fn register_job(&self, job: v1::JobInfo) {
        self.state().register_job(job);
    }

    /// Every job known, oldest first.
    pub fn jobs(&self) -> Vec<v1::JobInfo> {
        let mut jobs: Vec<v1::JobInfo> = self.state().jobs.values().cloned().collect();
        jobs.sort_by_key(|j| j.start_time_ms);
        jobs
    }

    /// Keep the cluster token in the storage (a restarted head reuses it).
    pub fn remember_token(&self, token: &str) {
        self.state()
            .persist("meta", b"token", Some(token.as_bytes()));
    }

    fn count(&self, rpc: &'static str) {
        *self.state().requests.entry(rpc).or_default() += 1;
    }

    /// Requests answered so far, by RPC.
    pub fn request_counts(&self) -> HashMap<String, u64> {
        self.state()
            .requests
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
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
        self.0.count("RegisterNode");
        let node = req
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("node is required"))?;
        if node.node_id.len() != ember_proto::NodeId::LEN {
            return Err(Status::invalid_argument("node_id must be 16 bytes"));
        }
        let mut node = node;
        node.is_head = false;
        self.0.register_node(node);
        Ok(Response::new(v1::RegisterNodeResponse {
            heartbeat_interval_ms: self.0.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        self.0.count("Heartbeat");
        let hb = req.into_inner();
        let mut node = hb.node.unwrap_or_default();
        node.node_id = hb.node_id;
        match self.0.heartbeat(node) {
            Ok(()) => Ok(Response::new(v1::HeartbeatResponse {
                nodes: self.0.nodes(),
            })),
            Err(HeartbeatRefused::Unknown) => {
                Err(Status::not_found("unknown node: register first"))
            }
            Err(HeartbeatRefused::DeclaredDead) => Err(Status::not_found(
                "this node was declared dead after missing heartbeats: register again",
            )),
        }
    }

    async fn register_function(
        &self,
        req: Request<v1::RegisterFunctionRequest>,
    ) -> Result<Response<v1::RegisterFunctionResponse>, Status> {
        self.0.count("RegisterFunction");
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
        self.0.count("GetFunction");
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
        self.0.count("KvPut");
        let r = req.into_inner();
        let added = self.0.kv_put(r.namespace, r.key, r.value, r.overwrite);
        Ok(Response::new(v1::KvPutResponse { added }))
    }

    async fn kv_get(
        &self,
        req: Request<v1::KvGetRequest>,
    ) -> Result<Response<v1::KvGetResponse>, Status> {
        self.0.count("KvGet");
        let r = req.into_inner();
        let value = self.0.kv_get(r.namespace, r.key);
        Ok(Response::new(v1::KvGetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    async fn register_actor(
        &self,
        req: Request<v1::RegisterActorRequest>,
    ) -> Result<Response<v1::RegisterActorResponse>, Status> {
        self.0.count("RegisterActor");
        let record = req
            .into_inner()
            .record
            .ok_or_else(|| Status::invalid_argument("record is required"))?;
        if record
            .actor
            .as_ref()
            .is_none_or(|a| a.actor_id.len() != ember_proto::ActorId::LEN)
        {
            return Err(Status::invalid_argument(
                "record.actor.actor_id must be 16 bytes",
            ));
        }
        Ok(Response::new(match self.0.register_actor(record) {
            Ok(()) => v1::RegisterActorResponse {
                registered: true,
                existing: None,
            },
            Err(existing) => v1::RegisterActorResponse {
                registered: false,
                existing: Some(*existing),
            },
        }))
    }

    async fn get_actor_info(
        &self,
        req: Request<v1::GetActorInfoRequest>,
    ) -> Result<Response<v1::GetActorInfoResponse>, Status> {
        self.0.count("GetActorInfo");
        let r = req.into_inner();
        let record = self.0.actor(&r.actor_id, &r.namespace, &r.name);
        Ok(Response::new(v1::GetActorInfoResponse {
            found: record.is_some(),
            record,
        }))
    }

    async fn register_job(
        &self,
        req: Request<v1::RegisterJobRequest>,
    ) -> Result<Response<v1::RegisterJobResponse>, Status> {
        self.0.count("RegisterJob");
        let job = req
            .into_inner()
            .job
            .ok_or_else(|| Status::invalid_argument("job is required"))?;
        if job.job_id.len() != ember_proto::JobId::LEN {
            return Err(Status::invalid_argument("job_id must be 4 bytes"));
        }
        self.0.register_job(job);
        Ok(Response::new(v1::RegisterJobResponse {}))
    }

    async fn list_jobs(
        &self,
        _req: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        self.0.count("ListJobs");
        Ok(Response::new(v1::ListJobsResponse {
            jobs: self.0.jobs(),
        }))
    }

    async fn get_head_stats(
        &self,
        _req: Request<v1::GetHeadStatsRequest>,
    ) -> Result<Response<v1::GetHeadStatsResponse>, Status> {
        Ok(Response::new(v1::GetHeadStatsResponse {
            requests: self.0.request_counts(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u8, address: &str) -> v1::NodeInfo {
        v1::NodeInfo {
            node_id: vec![id; 16].into(),
            address: address.into(),
            ..Default::default()
        }
    }

    #[test]
    fn silent_nodes_are_declared_dead_and_may_register_again() {
        let head = Head::new(Duration::from_millis(10), 3);
        head.register_node(node(1, "127.0.0.1:1"));
        head.register_node(node(2, "127.0.0.2:1"));
        let start = Instant::now();
        assert!(head.check_liveness(start).is_empty());
        std::thread::sleep(Duration::from_millis(40));
        head.heartbeat(node(1, "127.0.0.1:1")).unwrap();
        let dead = head.check_liveness(Instant::now());
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].address, "127.0.0.2:1");
        let nodes = head.nodes();
        assert!(nodes[0].alive && !nodes[1].alive, "{nodes:?}");
        assert_eq!(
            head.heartbeat(node(2, "127.0.0.2:1")),
            Err(HeartbeatRefused::DeclaredDead)
        );
        assert_eq!(
            head.heartbeat(node(3, "127.0.0.3:1")),
            Err(HeartbeatRefused::Unknown)
        );
        head.register_node(node(2, "127.0.0.2:1"));
        assert!(head.nodes().iter().all(|n| n.alive));
    }

    fn actor(id: u8, owner: u8, name: &str, state: v1::ActorState) -> v1::ActorRecord {
        v1::ActorRecord {
            actor: Some(v1::ActorInfo {
                actor_id: vec![id; 16].into(),
                state: state as i32,
                creation: Some(v1::ActorCreation {
                    name: name.into(),
                    namespace: "ns".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            owner_node_id: vec![owner; 16].into(),
        }
    }

    #[test]
    fn actor_names_are_unique_while_their_actor_and_its_owner_live() {
        let head = Head::default();
        head.register_node(node(1, "127.0.0.1:1"));
        head.register_node(node(2, "127.0.0.2:1"));
        head.register_actor(actor(7, 1, "a", v1::ActorState::Pending))
            .unwrap();
        // Taken: the refusal names the holder.
        let holder = head
            .register_actor(actor(8, 2, "a", v1::ActorState::Pending))
            .unwrap_err();
        assert_eq!(holder.actor.unwrap().actor_id, Bytes::from(vec![7; 16]));
        // Found by name and by id; updates of the holder itself are fine.
        assert!(head.actor(&[], "ns", "a").is_some());
        head.register_actor(actor(7, 1, "a", v1::ActorState::Alive))
            .unwrap();
        assert!(head.actor(&[7; 16], "", "").is_some());
        // Dead: the name is free again.
        head.register_actor(actor(7, 1, "a", v1::ActorState::Dead))
            .unwrap();
        head.register_actor(actor(8, 2, "a", v1::ActorState::Pending))
            .unwrap();
        let now = head.actor(&[], "ns", "a").unwrap();
        assert_eq!(now.actor.unwrap().actor_id, Bytes::from(vec![8; 16]));
        // Its owner's node dies: the actor reads as dead, the name is free.
        std::thread::sleep(Duration::from_millis(1));
        let short = Head::new(Duration::from_millis(1), 1);
        short.register_node(node(2, "127.0.0.2:1"));
        short
            .register_actor(actor(8, 2, "a", v1::ActorState::Alive))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        short.check_liveness(Instant::now());
        let dead = short.actor(&[8; 16], "", "").unwrap().actor.unwrap();
        assert_eq!(dead.state, v1::ActorState::Dead as i32);
        short
            .register_actor(actor(9, 1, "a", v1::ActorState::Pending))
            .unwrap();
        // Unnamed actors are dropped when dead.
        head.register_actor(actor(3, 1, "", v1::ActorState::Alive))
            .unwrap();
        head.register_actor(actor(3, 1, "", v1::ActorState::Dead))
            .unwrap();
        assert!(head.actor(&[3; 16], "", "").is_none());
    }

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
