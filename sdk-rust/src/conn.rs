//! One connection to a node: the transport (Unix socket or gRPC stream), a
//! writer task that batches outgoing ops into one message per wake-up, a
//! reader task that routes incoming ops, and the state they share (objects
//! this process holds, requests in flight).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ember_proto::frame;
use ember_proto::local_socket::LocalSocket;
use ember_proto::v1::{self, client_op, node_op, object_value::Body};
use ember_proto::{ObjectId, TaskId};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};

use crate::session::{resolve, Options, Target};
use crate::shm::Arena;
use crate::{Error, Result};

/// What the writer task sends.
pub(crate) enum Out {
    /// An op for a gRPC stream.
    Op(Box<client_op::Op>),
    /// An op already encoded as one `ClientMessage.ops` entry (field tag,
    /// length, `ClientOp`): the local stream's writer only copies it.
    Encoded(Bytes),
    /// Drop this process's reference (batched into one RefUpdate).
    Release(ObjectId),
    /// Give back one granted shared-memory location (batched).
    Unmap(ObjectId),
    /// Close the connection.
    Close,
}

/// What the node said in its HelloReply.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node_id: Bytes,
    pub job_id: Bytes,
    pub shm_path: String,
    pub shm_size: u64,
    pub session_dir: String,
    pub max_inline_bytes: u64,
    pub node_address: String,
}

/// An object this process holds a reference to.
#[derive(Default)]
pub(crate) struct Slot {
    /// The value as announced (inline, stored_size or an ERROR value).
    pub value: Option<v1::ObjectValue>,
    /// `get`s waiting for the announcement.
    pub waiters: Vec<oneshot::Sender<v1::ObjectValue>>,
    /// Map requests waiting for a granted location.
    pub map_waiters: VecDeque<oneshot::Sender<v1::ObjectValue>>,
}

/// The objects a connection holds, by id. The ids this connection made
/// (its task-id prefix, a counter, index 0 for a put or 1 for a call's
/// return: one object per counter) live in a ring indexed by counter, so
/// that results arriving in order, and gets in order, touch memory in
/// order; other ids, and entries left behind far from the ring's end, in a
/// hash map.
pub(crate) struct Objects {
    prefix: [u8; 8],
    /// The counter of `ring[0]`.
    base: u64,
    ring: VecDeque<Option<(ObjectId, Box<Slot>)>>,
    live_in_ring: usize,
    other: HashMap<ObjectId, Box<Slot>, IdHash>,
}

impl Objects {
    fn new(prefix: [u8; 8]) -> Self {
        Objects {
            prefix,
            base: 0,
            ring: VecDeque::new(),
            live_in_ring: 0,
            other: HashMap::default(),
        }
    }

    /// The ring counter of `id`, if it is one of ours.
    fn counter(&self, id: &ObjectId) -> Option<u64> {
        let b = &id.0;
        let index = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
        if b[..8] != self.prefix || index > 1 {
            return None;
        }
        Some(u64::from_le_bytes([
            b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
        ]))
    }

    /// `id`'s place in the ring, if it lies in it.
    fn ring_index(&self, id: &ObjectId) -> Option<usize> {
        let c = self.counter(id)?;
        let i = c.checked_sub(self.base)?;
        (i < self.ring.len() as u64).then_some(i as usize)
    }

    pub fn get_mut(&mut self, id: &ObjectId) -> Option<&mut Slot> {
        if let Some(i) = self.ring_index(id) {
            if let Some((key, slot)) = self.ring[i].as_mut() {
                if key == id {
                    return Some(slot);
                }
            }
        }
        self.other.get_mut(id).map(|s| &mut **s)
    }

    pub fn get(&self, id: &ObjectId) -> Option<&Slot> {
        if let Some(i) = self.ring_index(id) {
            if let Some((key, slot)) = self.ring[i].as_ref() {
                if key == id {
                    return Some(slot);
                }
            }
        }
        self.other.get(id).map(|s| &**s)
    }

    pub fn insert(&mut self, id: ObjectId, slot: Box<Slot>) {
        match self.counter(&id) {
            Some(c) if c >= self.base && c - self.base < (1 << 32) => {
                let i = (c - self.base) as usize;
                if self.ring.is_empty() {
                    self.base = c;
                    self.ring.push_back(Some((id, slot)));
                } else {
                    if i >= self.ring.len() {
                        self.ring.resize_with(i + 1, || None);
                    }
                    if self.ring[i].replace((id, slot)).is_some() {
                        return;
                    }
                }
                self.live_in_ring += 1;
                self.compact();
            }
            _ => {
                self.other.insert(id, slot);
            }
        }
    }

    pub fn remove(&mut self, id: &ObjectId) -> Option<Box<Slot>> {
        if let Some(i) = self.ring_index(id) {
            if self.ring[i].as_ref().is_some_and(|(key, _)| key == id) {
                let (_, slot) = self.ring[i].take().expect("checked");
                self.live_in_ring -= 1;
                while let Some(None) = self.ring.front() {
                    self.ring.pop_front();
                    self.base += 1;
                }
                self.compact();
                return Some(slot);
            }
        }
        self.other.remove(id)
    }

    /// Keep the ring dense: when few of its entries are live (old refs
    /// kept while many newer ones came and went), move the oldest live ones
    /// to the map.
    fn compact(&mut self) {
        if self.ring.len() < 4096 || self.ring.len() < 8 * self.live_in_ring {
            return;
        }
        while self.ring.len() > 2 * self.live_in_ring.max(1) {
            match self.ring.pop_front() {
                Some(Some((id, slot))) => {
                    self.live_in_ring -= 1;
                    self.other.insert(id, slot);
                }
                Some(None) => {}
                None => break,
            }
            self.base += 1;
        }
        while let Some(None) = self.ring.front() {
            self.ring.pop_front();
            self.base += 1;
        }
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.ring
            .iter_mut()
            .filter_map(|e| e.as_mut().map(|(_, s)| &mut **s))
            .chain(self.other.values_mut().map(|s| &mut **s))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live_in_ring + self.other.len()
    }
}

pub(crate) struct State {
    pub objects: Objects,
    /// CreateObject requests waiting for their location.
    pub creates: HashMap<u64, oneshot::Sender<Result<v1::ShmLocation>>>,
    /// InfoRequests waiting for their reply.
    pub infos: HashMap<u64, oneshot::Sender<v1::InfoReply>>,
    /// CreateActor/GetActor requests waiting for their ActorReply (or
    /// ErrorReply).
    pub actor_requests: HashMap<u64, oneshot::Sender<Result<v1::ActorInfo>>>,
    pub next_request: u64,
    /// Why the connection is gone.
    pub closed: Option<Error>,
    /// The last error the node reported outside any request.
    pub last_error: Option<Error>,
}

/// A fast hash for ids (random or counter bytes: no need for SipHash's
/// defence against chosen keys).
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // murmur3's finalizer: every input bit reaches every output bit
        // (hashbrown uses the low bits for the bucket, the high for tags).
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0 ^ v).wrapping_mul(K).rotate_left(23);
        }
        for b in chunks.remainder() {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(K).rotate_left(23);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write(&(n as u64).to_le_bytes());
    }
}

/// Counters, for tests and tuning.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub tasks_submitted: AtomicU64,
    pub shm_writes: AtomicU64,
    pub shm_reads: AtomicU64,
    pub flight_reads: AtomicU64,
    pub tasks_executed: AtomicU64,
}

/// Work the node gives a serving process.
// Nearly every op is an ExecuteTask, moved once into a short-lived vector:
// boxing it would cost an allocation per task for the rare drop.
#[allow(clippy::large_enum_variant)]
pub(crate) enum HostOp {
    /// Run a task: a function call, an actor's creation or a method call.
    Execute(v1::ExecuteTask),
    /// Drop an actor's instance (killed, or its owner exited).
    DropActor(v1::KillActor),
}

/// Runs the work sent to this process (set by a serving worker), in the
/// order it arrived.
pub(crate) type ExecHook = Box<dyn Fn(&Arc<Shared>, HostOp) + Send + Sync>;

pub(crate) struct Shared {
    state: Mutex<State>,
    tx: mpsc::UnboundedSender<Out>,
    pub info: NodeInfo,
    pub arena: Option<Arena>,
    pub remote: bool,
    /// The gRPC channel of a remote connection (Flight reads of large
    /// values go over it).
    pub grpc: Option<tonic::transport::Channel>,
    /// A channel to the node's gRPC port for a local connection's Flight
    /// requests, made at the first one.
    flight_channel: tokio::sync::OnceCell<tonic::transport::Channel>,
    /// The token this connection said hello with (Flight requests carry it).
    token: String,
    prefix: [u8; 8],
    counter: AtomicU64,
    pub counters: Counters,
    pub exec: OnceLock<ExecHook>,
    /// The runtime the connection was made on.
    pub runtime: tokio::runtime::Handle,
    closed_tx: watch::Sender<Option<Error>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn send(&self, out: Out) {
        let _ = self.tx.send(out);
    }

    pub fn send_op(&self, op: client_op::Op) {
        let out = if self.remote {
            Out::Op(Box::new(op))
        } else {
            let op = v1::ClientOp { op: Some(op) };
            let mut buf = Vec::with_capacity(op.encoded_len() + 6);
            prost::encoding::message::encode(1, &op, &mut buf);
            Out::Encoded(Bytes::from(buf))
        };
        let _ = self.tx.send(out);
    }

    /// A fresh task id: this connection's random prefix + a counter.
    pub fn next_task_id(&self) -> TaskId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.prefix);
        id[8..].copy_from_slice(&n.to_le_bytes());
        TaskId(id)
    }

    /// The error to report when the connection is gone.
    pub fn closed_error(&self) -> Error {
        self.lock()
            .closed
            .clone()
            .unwrap_or_else(|| Error::Connection("the connection to the node closed".into()))
    }

    /// Resolves when the connection is gone, with the reason.
    pub async fn closed(&self) -> Error {
        let mut rx = self.closed_tx.subscribe();
        let result = match rx.wait_for(|c| c.is_some()).await {
            Ok(c) => c
                .clone()
                .unwrap_or_else(|| Error::Connection("closed".into())),
            Err(_) => Error::Connection("the connection to the node closed".into()),
        };
        result
    }

    pub fn is_closed(&self) -> bool {
        self.closed_tx.borrow().is_some()
    }

    /// Ask the node for a shared-memory block of `size` bytes for `id`.
    pub async fn create_object(&self, id: ObjectId, size: u64) -> Result<v1::ShmLocation> {
        let (tx, rx) = oneshot::channel();
        let request_id = {
            let mut st = self.lock();
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            st.next_request += 1;
            let r = st.next_request;
            st.creates.insert(r, tx);
            r
        };
        self.send_op(client_op::Op::CreateObject(v1::CreateObject {
            request_id,
            object_id: id.to_vec().into(),
            size,
            timeout_ms: 30_000,
        }));
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self.closed_error()),
        }
    }

    /// A Flight client of the node: over the connection's gRPC channel
    /// (remote), else over a channel to the node's address made once.
    async fn flight_client(
        &self,
    ) -> Result<arrow_flight::flight_service_client::FlightServiceClient<tonic::transport::Channel>>
    {
        let channel = match &self.grpc {
            Some(channel) => channel.clone(),
            None => self
                .flight_channel
                .get_or_try_init(|| grpc_channel(&self.info.node_address))
                .await?
                .clone(),
        };
        Ok(
            arrow_flight::flight_service_client::FlightServiceClient::new(channel)
                .max_decoding_message_size(MAX_FLIGHT_MESSAGE_BYTES),
        )
    }

    /// `do_get` of `ticket`, with the token: the stream of record batches.
    async fn flight_do_get(
        &self,
        ticket: Vec<u8>,
    ) -> Result<arrow_flight::decode::FlightRecordBatchStream> {
        use futures::TryStreamExt;
        let mut client = self.flight_client().await?;
        let mut req = tonic::Request::new(arrow_flight::Ticket {
            ticket: ticket.into(),
        });
        let auth = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| Error::Unauthenticated("the token is not a valid header value".into()))?;
        req.metadata_mut().insert("authorization", auth);
        let response = client.do_get(req).await.map_err(flight_error)?.into_inner();
        Ok(
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                response.map_err(arrow_flight::error::FlightError::from),
            ),
        )
    }

    /// Pull an object over the node's Arrow Flight service (ticket: its id
    /// in hex): an ARROW object's schema and record batches, any other
    /// object as the Flight service sends it (a binary `data` column).
    pub async fn flight_table(
        &self,
        id: ObjectId,
    ) -> Result<(arrow_schema::SchemaRef, Vec<arrow_array::RecordBatch>)> {
        use futures::StreamExt;
        let fail =
            |what: String| Error::Connection(format!("pulling object {id} over Flight: {what}"));
        let mut stream = self.flight_do_get(id.hex().into_bytes()).await?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch.map_err(|e| fail(e.to_string()))?);
        }
        let schema = stream
            .schema()
            .cloned()
            .ok_or_else(|| fail("the stream has no schema".into()))?;
        self.counters.flight_reads.fetch_add(1, Ordering::Relaxed);
        Ok((schema, batches))
    }

    /// Read a stored value over the node's Arrow Flight service (a `raw:`
    /// ticket streams its bytes as a binary column): how a remote client
    /// reads what lies in the node's shared memory.
    pub async fn flight_read(&self, id: ObjectId, size: u64) -> Result<Vec<u8>> {
        use futures::StreamExt;
        let fail =
            |what: String| Error::Connection(format!("reading object {id} over Flight: {what}"));
        let mut ticket = b"raw:".to_vec();
        ticket.extend_from_slice(id.hex().as_bytes());
        let mut batches = self.flight_do_get(ticket).await?;
        let mut data = Vec::with_capacity(size as usize);
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| fail(e.to_string()))?;
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::BinaryArray>()
                .ok_or_else(|| fail("the stream has no binary column".into()))?;
            for value in column.iter().flatten() {
                data.extend_from_slice(value);
                if data.len() as u64 > size {
                    return Err(fail(format!("more than the {size} bytes announced")));
                }
            }
        }
        if data.len() as u64 != size {
            return Err(fail(format!("{} bytes, {size} announced", data.len())));
        }
        self.counters.flight_reads.fetch_add(1, Ordering::Relaxed);
        Ok(data)
    }

    /// Ask the node for the cluster status. The node handles a
    /// connection's ops in order, so when the answer comes, everything sent
    /// before it was handled.
    pub async fn cluster_status(&self) -> Result<v1::ClusterStatus> {
        let (tx, rx) = oneshot::channel();
        let request_id = {
            let mut st = self.lock();
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            st.next_request += 1;
            let r = st.next_request;
            st.infos.insert(r, tx);
            r
        };
        self.send_op(client_op::Op::InfoRequest(v1::InfoRequest {
            request_id,
            kind: v1::InfoKind::ClusterStatus as i32,
        }));
        match rx.await {
            Ok(reply) => Ok(reply.cluster_status.unwrap_or_default()),
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Send the op `make(request_id)` builds (CreateActor, GetActor) and
    /// wait for its ActorReply, or the ErrorReply as an error. `then` runs
    /// under the lock just after the op was queued (to queue more ops right
    /// behind it).
    pub async fn actor_request(
        &self,
        make: impl FnOnce(u64) -> client_op::Op,
        then: impl FnOnce(&Shared),
    ) -> Result<v1::ActorInfo> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.lock();
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            st.next_request += 1;
            let r = st.next_request;
            st.actor_requests.insert(r, tx);
            self.send_op(make(r));
            then(self);
        }
        match rx.await {
            Ok(reply) => reply,
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Write `data` for `id` into a fresh block of the node's shared memory
    /// and return its location (not sealed yet: the caller seals it with
    /// PutObject or a TaskFinished return). `None` when this connection
    /// cannot write shared memory.
    pub async fn write_shm(&self, id: ObjectId, data: &[u8]) -> Result<Option<v1::ShmLocation>> {
        let Some(arena) = &self.arena else {
            return Ok(None);
        };
        let location = self.create_object(id, data.len() as u64).await?;
        if let Err(e) = arena.write(location.offset, data) {
            self.send_op(client_op::Op::AbortObject(v1::AbortObject {
                object_id: id.to_vec().into(),
            }));
            return Err(e);
        }
        self.counters.shm_writes.fetch_add(1, Ordering::Relaxed);
        Ok(Some(location))
    }

    /// The largest value sent inline.
    pub fn max_inline(&self) -> usize {
        if self.arena.is_some() {
            self.info.max_inline_bytes as usize
        } else {
            // No shared memory (a remote connection): the node takes inline
            // values up to 16 MiB.
            (self.info.max_inline_bytes as usize).max(16 << 20)
        }
    }

    /// Handle a batch of ops from the node.
    fn handle(self: &Arc<Self>, ops: impl Iterator<Item = v1::NodeOp>) {
        let mut execs = Vec::new();
        {
            let mut st = self.lock();
            for (i, op) in ops.enumerate() {
                if i % 64 == 63 {
                    // Let callers (call, get, drop) in now and then.
                    drop(st);
                    st = self.lock();
                }
                let Some(op) = op.op else { continue };
                match op {
                    node_op::Op::ObjectReady(ready) => {
                        let Ok(id) = ObjectId::from_bytes(&ready.object_id) else {
                            continue;
                        };
                        let Some(value) = ready.value else { continue };
                        self.object_ready(&mut st, id, value);
                    }
                    node_op::Op::ExecuteTask(exec) => execs.push(HostOp::Execute(exec)),
                    node_op::Op::DropActor(kill) => execs.push(HostOp::DropActor(kill)),
                    node_op::Op::CreateObjectReply(reply) => {
                        if let Some(tx) = st.creates.remove(&reply.request_id) {
                            let _ = tx.send(reply.location.ok_or_else(|| {
                                Error::Connection("CreateObjectReply without a location".into())
                            }));
                        } else if let Ok(id) = ObjectId::from_bytes(&reply.object_id) {
                            // Nobody waits for it any more: give the block back.
                            self.send_op(client_op::Op::AbortObject(v1::AbortObject {
                                object_id: id.to_vec().into(),
                            }));
                        }
                    }
                    node_op::Op::Error(reply) => {
                        let err = reply
                            .error
                            .map(|e| Error::from_task_error(e, None))
                            .unwrap_or_else(|| Error::Connection("error without details".into()));
                        let request_id = reply.request_id;
                        if let Some(tx) = st.creates.remove(&request_id) {
                            let _ = tx.send(Err(err));
                        } else if let Some(tx) = st.actor_requests.remove(&request_id) {
                            let _ = tx.send(Err(err));
                        } else {
                            tracing::warn!(error = %err, "the node reported an error");
                            // If the node closes the connection next, this
                            // is why.
                            st.last_error = Some(err);
                        }
                    }
                    node_op::Op::Warning(w) => {
                        eprintln!("ember: warning from the node: {}", w.message);
                    }
                    node_op::Op::InfoReply(reply) => {
                        if let Some(tx) = st.infos.remove(&reply.request_id) {
                            let _ = tx.send(reply);
                        }
                    }
                    node_op::Op::ActorReply(reply) => {
                        // Request 0: a state report meant for peer nodes.
                        if let Some(tx) = st.actor_requests.remove(&reply.request_id) {
                            let _ = tx.send(reply.actor.ok_or_else(|| {
                                Error::Connection("ActorReply without an actor".into())
                            }));
                        }
                    }
                    node_op::Op::HelloReply(_) => {}
                }
            }
        }
        if !execs.is_empty() {
            match self.exec.get() {
                Some(hook) => {
                    for exec in execs {
                        hook(self, exec);
                    }
                }
                None => tracing::warn!(
                    n = execs.len(),
                    "tasks sent to a process that serves no functions"
                ),
            }
        }
    }

    fn object_ready(&self, st: &mut State, id: ObjectId, value: v1::ObjectValue) {
        let granted = matches!(value.body, Some(Body::Shm(_)));
        let Some(slot) = st.objects.get_mut(&id) else {
            if granted {
                self.send(Out::Unmap(id));
            }
            return;
        };
        // A map request is only made once the value was announced, so a
        // value arriving while one waits is its answer (a location, the
        // inline value, or an error for that request).
        if granted || (!slot.map_waiters.is_empty() && slot.value.is_some()) {
            let mut value = Some(value);
            while let Some(tx) = slot.map_waiters.pop_front() {
                match tx.send(value.take().expect("set")) {
                    Ok(()) => break,
                    Err(v) => value = Some(v),
                }
            }
            if let (Some(_), true) = (value, granted) {
                // Nobody reads it: give the grant back.
                self.send(Out::Unmap(id));
            }
            return;
        }
        for tx in slot.waiters.drain(..) {
            let _ = tx.send(value.clone());
        }
        slot.value = Some(value);
    }

    /// The connection is gone: fail everything waiting.
    fn close_all(&self, why: Error) {
        let mut st = self.lock();
        let why = st.last_error.take().unwrap_or(why);
        let err = st.closed.get_or_insert(why).clone();
        for slot in st.objects.values_mut() {
            slot.waiters.clear();
            slot.map_waiters.clear();
        }
        st.creates.clear();
        st.infos.clear();
        st.actor_requests.clear();
        drop(st);
        self.closed_tx.send_replace(Some(err));
    }
}

/// The byte stream (or gRPC stream) under a connection.
enum Sink {
    Unix(Arc<LocalSocket>),
    Grpc(mpsc::UnboundedSender<v1::ClientMessage>),
}

enum Source {
    Unix(Arc<LocalSocket>, BytesMut),
    Grpc(tonic::Streaming<v1::NodeMessage>),
}

impl Sink {
    async fn send(&mut self, msg: v1::ClientMessage, buf: &mut Vec<u8>) -> Result<()> {
        match self {
            Sink::Unix(wr) => {
                buf.clear();
                frame::encode_frame(&msg, buf);
                wr.write_all(buf).await?;
                Ok(())
            }
            Sink::Grpc(tx) => tx
                .send(msg)
                .map_err(|_| Error::Connection("the gRPC stream to the node closed".into())),
        }
    }

    async fn close(self) {
        match self {
            Sink::Unix(socket) => {
                let _ = socket.shutdown_write();
            }
            Sink::Grpc(tx) => drop(tx),
        }
    }
}

/// One message from the node: a frame's body (its ops are decoded one at a
/// time, never all into one vector) or a decoded gRPC message.
enum Incoming {
    Frame(Bytes),
    Message(v1::NodeMessage),
}

/// The ops of a frame body (`NodeMessage` bytes), decoded as they are taken.
/// A malformed op ends the iteration and leaves the error behind.
struct FrameOps {
    buf: Bytes,
    error: Option<Error>,
}

impl Iterator for FrameOps {
    type Item = v1::NodeOp;

    fn next(&mut self) -> Option<v1::NodeOp> {
        use bytes::Buf;
        use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
        while self.buf.has_remaining() && self.error.is_none() {
            let step = (|| -> std::result::Result<Option<v1::NodeOp>, String> {
                let (tag, wire_type) = decode_key(&mut self.buf).map_err(|e| e.to_string())?;
                if tag == 1 && wire_type == WireType::LengthDelimited {
                    let len = decode_varint(&mut self.buf).map_err(|e| e.to_string())? as usize;
                    if len > self.buf.remaining() {
                        return Err("an op runs past the end of the frame".into());
                    }
                    let body = self.buf.split_to(len);
                    return v1::NodeOp::decode(body)
                        .map(Some)
                        .map_err(|e| e.to_string());
                }
                skip_field(wire_type, tag, &mut self.buf, DecodeContext::default())
                    .map_err(|e| e.to_string())?;
                Ok(None)
            })();
            match step {
                Ok(Some(op)) => return Some(op),
                Ok(None) => {}
                Err(e) => {
                    self.error = Some(Error::Connection(format!(
                        "malformed message from the node: {e}"
                    )))
                }
            }
        }
        None
    }
}

impl Source {
    /// The next message; `Ok(None)` at the end of the stream.
    async fn next(&mut self) -> Result<Option<Incoming>> {
        match self {
            Source::Unix(rd, buf) => loop {
                match frame::next_frame(buf) {
                    Ok(Some((_, used))) => {
                        let frame = buf.split_to(used).freeze();
                        return Ok(Some(Incoming::Frame(frame.slice(4..))));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(Error::Connection(e.to_string())),
                }
                if buf.capacity() - buf.len() < 64 * 1024 {
                    buf.reserve(256 * 1024);
                }
                if rd.read_some(buf).await? == 0 {
                    return Ok(None);
                }
            },
            Source::Grpc(stream) => match stream.message().await {
                Ok(m) => Ok(m.map(Incoming::Message)),
                Err(status) => Err(status_error(status)),
            },
        }
    }
}

/// A Flight request's failure: an object the node does not have is
/// `ObjectLost`.
fn flight_error(status: tonic::Status) -> Error {
    match status.code() {
        tonic::Code::NotFound => {
            Error::ObjectLost(format!("the node's Flight service: {}", status.message()))
        }
        tonic::Code::Unauthenticated => Error::Unauthenticated(status.message().to_string()),
        _ => Error::Connection(format!(
            "the node's Flight service: {}: {}",
            status.code(),
            status.message()
        )),
    }
}

fn status_error(status: tonic::Status) -> Error {
    match status.code() {
        tonic::Code::Unauthenticated => Error::Unauthenticated(status.message().to_string()),
        _ => Error::Connection(format!(
            "gRPC stream: {}: {}",
            status.code(),
            status.message()
        )),
    }
}

/// Connect, say hello, and start the reader and writer tasks.
pub(crate) async fn connect(opts: &Options) -> Result<Arc<Shared>> {
    let timeout = opts.connect_timeout.unwrap_or(Duration::from_secs(30));
    match tokio::time::timeout(timeout, connect_inner(opts)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(format!(
            "connecting to the node took longer than {timeout:?}"
        ))),
    }
}

async fn connect_inner(opts: &Options) -> Result<Arc<Shared>> {
    let target = resolve(opts)?;
    let (token, remote) = match &target {
        Target::Local { token, .. } => (token.clone(), false),
        Target::Remote { token, .. } => (token.clone(), true),
    };
    let hello = v1::ClientMessage {
        ops: vec![v1::ClientOp {
            op: Some(client_op::Op::Hello(v1::Hello {
                token: token.clone(),
                kind: v1::ClientKind::Driver as i32,
                pid: std::process::id(),
                language: v1::Language::Rust as i32,
                namespace: opts.namespace.clone().unwrap_or_default(),
                ..Default::default()
            })),
        }],
    };
    let mut buf = Vec::new();
    let mut grpc = None;
    let (mut sink, mut source) = match &target {
        Target::Local { socket, .. } => {
            let stream = LocalSocket::connect(socket).await.map_err(|e| {
                Error::Connection(format!("cannot connect to {}: {e}", socket.display()))
            })?;
            let stream = Arc::new(stream);
            (
                Sink::Unix(stream.clone()),
                Source::Unix(stream, BytesMut::with_capacity(256 * 1024)),
            )
        }
        Target::Remote { address, .. } => {
            let (channel, sink, source) = open_grpc(address, &token).await?;
            grpc = Some(channel);
            (sink, source)
        }
    };
    sink.send(hello, &mut buf).await?;
    let first = match source.next().await {
        Ok(Some(Incoming::Message(msg))) => msg,
        Ok(Some(Incoming::Frame(body))) => v1::NodeMessage::decode(body)
            .map_err(|e| Error::Connection(format!("malformed message from the node: {e}")))?,
        Ok(None) => {
            return Err(Error::Connection(
                "the node closed the connection before answering hello".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    let mut ops = first.ops.into_iter();
    let reply = match ops.next().and_then(|o| o.op) {
        Some(node_op::Op::HelloReply(r)) => r,
        Some(node_op::Op::Error(e)) => {
            return Err(e
                .error
                .map(|e| Error::from_task_error(e, None))
                .unwrap_or_else(|| Error::Connection("hello refused".into())))
        }
        other => {
            return Err(Error::Connection(format!(
                "unexpected first message from the node: {other:?}"
            )))
        }
    };
    let rest: Vec<v1::NodeOp> = ops.collect();
    let info = NodeInfo {
        node_id: reply.node_id,
        job_id: reply.job_id,
        shm_path: reply.shm_path,
        shm_size: reply.shm_size,
        session_dir: reply.session_dir,
        max_inline_bytes: reply.max_inline_bytes,
        node_address: reply.node_address,
    };
    let arena = if remote || info.shm_path.is_empty() {
        None
    } else {
        match Arena::open(&info.shm_path) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(path = %info.shm_path, error = %e, "cannot map the node's shared memory: large values go inline");
                None
            }
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (closed_tx, _) = watch::channel(None);
    let prefix: [u8; 8] = rand::random();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            objects: Objects::new(prefix),
            creates: HashMap::new(),
            infos: HashMap::new(),
            actor_requests: HashMap::new(),
            next_request: 0,
            closed: None,
            last_error: None,
        }),
        tx,
        info,
        arena,
        remote,
        grpc,
        flight_channel: tokio::sync::OnceCell::new(),
        token,
        prefix,
        counter: AtomicU64::new(1),
        counters: Counters::default(),
        exec: OnceLock::new(),
        runtime: tokio::runtime::Handle::current(),
        closed_tx,
    });
    if !rest.is_empty() {
        shared.handle(rest.into_iter());
    }
    tokio::spawn(write_loop(sink, rx));
    tokio::spawn(read_loop(source, Arc::downgrade(&shared)));
    Ok(shared)
}

/// The largest Flight message read (the node's own limit: a record batch
/// that cannot be split goes as one message).
const MAX_FLIGHT_MESSAGE_BYTES: usize = 512 << 20;

/// A gRPC channel to the node at `address` (`host:port`).
async fn grpc_channel(address: &str) -> Result<tonic::transport::Channel> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| Error::Connection(format!("bad node address {address:?}: {e}")))?
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(32 << 20))
        // Large values come in HTTP/2 frames of up to 1 MiB, not 16 KiB:
        // far fewer frames to handle per Flight pull or value read.
        .max_frame_size(Some(1 << 20));
    endpoint
        .connect()
        .await
        .map_err(|e| Error::Connection(format!("cannot connect to {address}: {e}")))
}

async fn open_grpc(
    address: &str,
    token: &str,
) -> Result<(tonic::transport::Channel, Sink, Source)> {
    use ember_proto::v1::node_service_client::NodeServiceClient;
    let channel = grpc_channel(address).await?;
    let mut client = NodeServiceClient::new(channel.clone())
        .max_decoding_message_size(512 << 20)
        .max_encoding_message_size(512 << 20);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut req = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| Error::Unauthenticated("the token is not a valid header value".into()))?;
    req.metadata_mut().insert("authorization", value);
    // The response (headers) comes once the call is accepted: send hello
    // first, from the caller, after this returns.
    let tx2 = tx.clone();
    let response = tokio::spawn(async move { client.open_stream(req).await });
    let stream = response
        .await
        .map_err(|e| Error::Connection(format!("gRPC call failed: {e}")))?
        .map_err(status_error)?
        .into_inner();
    drop(tx);
    Ok((channel, Sink::Grpc(tx2), Source::Grpc(stream)))
}

/// Rough size of an op on the wire, to keep messages well under the frame limit.
fn approx_size(op: &client_op::Op) -> usize {
    fn value_size(v: Option<&v1::ObjectValue>) -> usize {
        match v.and_then(|v| v.body.as_ref()) {
            Some(Body::InlineData(d)) => d.len(),
            _ => 0,
        }
    }
    64 + match op {
        client_op::Op::SubmitTask(s) => s
            .spec
            .as_ref()
            .map(|s| {
                s.args
                    .iter()
                    .map(|a| value_size(a.value.as_ref()) + 32)
                    .sum()
            })
            .unwrap_or(0),
        client_op::Op::PutObject(p) => value_size(p.value.as_ref()),
        client_op::Op::TaskFinished(f) => f.returns.iter().map(|v| value_size(Some(v))).sum(),
        _ => 0,
    }
}

/// Most ops and bytes in one message.
const MAX_BATCH_OPS: usize = 8192;
const MAX_BATCH_BYTES: usize = 64 << 20;

/// One outgoing message being gathered.
#[derive(Default)]
struct Batch {
    /// Encoded ops (local stream), after 4 bytes left for the frame length.
    frame: Vec<u8>,
    /// Ops (gRPC stream).
    ops: Vec<v1::ClientOp>,
    refs: v1::RefUpdate,
    bytes: usize,
    count: usize,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.count >= MAX_BATCH_OPS || self.bytes >= MAX_BATCH_BYTES
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }
}

async fn write_loop(mut sink: Sink, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut batch = Batch::default();
    loop {
        let first = match rx.recv().await {
            Some(o) => o,
            None => break,
        };
        batch.frame.clear();
        batch.frame.extend_from_slice(&[0; 4]);
        let mut close = false;
        let mut item = Some(first);
        while let Some(out) = item {
            match out {
                Out::Encoded(bytes) => {
                    batch.bytes += bytes.len();
                    batch.frame.extend_from_slice(&bytes);
                }
                Out::Op(op) => {
                    batch.bytes += approx_size(&op);
                    batch.ops.push(v1::ClientOp { op: Some(*op) });
                }
                Out::Release(id) => batch.refs.remove.push(id.to_vec().into()),
                Out::Unmap(id) => batch.refs.unmap.push(id.to_vec().into()),
                Out::Close => {
                    close = true;
                    break;
                }
            }
            batch.count += 1;
            if batch.is_full() {
                break;
            }
            item = rx.try_recv().ok();
        }
        if !batch.is_empty() && flush(&mut sink, &mut batch).await.is_err() {
            return;
        }
        if batch.frame.capacity() > 16 << 20 {
            batch.frame = Vec::new();
        }
        if close {
            break;
        }
    }
    sink.close().await;
}

/// Send what the batch gathered as one message, and empty it.
async fn flush(sink: &mut Sink, batch: &mut Batch) -> Result<()> {
    let refs = std::mem::take(&mut batch.refs);
    let has_refs = !refs.remove.is_empty() || !refs.unmap.is_empty();
    batch.count = 0;
    batch.bytes = 0;
    match sink {
        Sink::Unix(wr) => {
            if has_refs {
                let op = v1::ClientOp {
                    op: Some(client_op::Op::RefUpdate(refs)),
                };
                prost::encoding::message::encode(1, &op, &mut batch.frame);
            }
            let len = batch.frame.len() - 4;
            batch.frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
            wr.write_all(&batch.frame).await?;
            batch.frame.clear();
            Ok(())
        }
        Sink::Grpc(tx) => {
            let mut ops = std::mem::take(&mut batch.ops);
            if has_refs {
                ops.push(v1::ClientOp {
                    op: Some(client_op::Op::RefUpdate(refs)),
                });
            }
            tx.send(v1::ClientMessage { ops })
                .map_err(|_| Error::Connection("the gRPC stream to the node closed".into()))
        }
    }
}

async fn read_loop(mut source: Source, shared: Weak<Shared>) {
    let why = loop {
        match source.next().await {
            Ok(Some(incoming)) => {
                let Some(shared) = shared.upgrade() else {
                    break None;
                };
                match incoming {
                    Incoming::Message(msg) => shared.handle(msg.ops.into_iter()),
                    Incoming::Frame(body) => {
                        let mut ops = FrameOps {
                            buf: body,
                            error: None,
                        };
                        shared.handle(&mut ops);
                        if let Some(e) = ops.error {
                            break Some(e);
                        }
                    }
                }
            }
            Ok(None) => break Some(Error::Connection("the node closed the connection".into())),
            Err(e) => break Some(e),
        }
    };
    if let Some(shared) = shared.upgrade() {
        shared.close_all(why.unwrap_or_else(|| Error::Connection("closed".into())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn our_id(prefix: [u8; 8], counter: u64, index: u32) -> ObjectId {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(&prefix);
        id[8..16].copy_from_slice(&counter.to_le_bytes());
        id[16..].copy_from_slice(&index.to_le_bytes());
        ObjectId(id)
    }

    #[test]
    fn objects_keep_every_entry_through_the_ring_and_the_map() {
        let prefix = [9u8; 8];
        let mut objects = Objects::new(prefix);
        let mut model = std::collections::HashMap::new();
        let put =
            |objects: &mut Objects, model: &mut HashMap<ObjectId, u64>, id: ObjectId, v: u64| {
                objects.insert(
                    id,
                    Box::new(Slot {
                        value: Some(v1::ObjectValue {
                            format: v as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                );
                model.insert(id, v);
            };
        // One long-lived entry, then many that come and go, some kept.
        put(&mut objects, &mut model, our_id(prefix, 1, 0), 1);
        for c in 2..50_000u64 {
            put(&mut objects, &mut model, our_id(prefix, c, 1), c);
            if c % 97 != 0 && c > 10 {
                let old = our_id(prefix, c - 5, 1);
                if model.remove(&old).is_some() {
                    assert!(objects.remove(&old).is_some());
                }
            }
        }
        // Foreign ids and out-of-order inserts.
        put(&mut objects, &mut model, ObjectId([3u8; 20]), 7);
        put(&mut objects, &mut model, our_id(prefix, 3, 1), 3);
        assert_eq!(objects.len(), model.len());
        assert!(
            objects.ring.len() <= 8 * objects.live_in_ring.max(512),
            "ring of {}",
            objects.ring.len()
        );
        for (id, v) in &model {
            let slot = objects.get_mut(id).expect("present");
            assert_eq!(slot.value.as_ref().unwrap().format as u64, *v);
        }
        assert!(objects.get(&our_id(prefix, 60_000, 1)).is_none());
        for id in model.keys() {
            assert!(objects.remove(id).is_some());
        }
        assert_eq!(objects.len(), 0);
        assert_eq!(objects.values_mut().count(), 0);
    }

    #[test]
    fn id_hash_spreads_sequential_ids() {
        let prefix: [u8; 8] = [7, 1, 200, 3, 99, 5, 6, 42];
        let mut low = std::collections::HashSet::new();
        let mut high = std::collections::HashSet::new();
        let n = 1u64 << 16;
        for i in 0..n {
            let mut id = [0u8; 20];
            id[..8].copy_from_slice(&prefix);
            id[8..16].copy_from_slice(&i.to_le_bytes());
            id[16..].copy_from_slice(&1u32.to_le_bytes());
            let h = IdHash.hash_one(ObjectId(id));
            low.insert(h & (n - 1));
            high.insert(h >> 57);
        }
        // Random placement fills ~63% of n buckets; tags use all 128 values.
        assert!(
            low.len() as f64 > 0.6 * n as f64,
            "{} distinct buckets",
            low.len()
        );
        assert_eq!(high.len(), 128);
    }
}
