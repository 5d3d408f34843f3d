//! The object directory: which objects exist or are awaited, who holds
//! references to them, who waits for them, and when they are freed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ember_flight_store::{ObjectBody, RoomRequest, StoreError, StoredObject};
use ember_proto::v1::{self, node_op, object_value::Body};
use ember_proto::{ObjectId, TaskId};

use super::{error_value, system_error, ConnId, NodeCore};

/// One object this node owns or awaits.
#[derive(Default)]
pub(super) struct ObjectEntry {
    /// Sealed in the store.
    pub ready: bool,
    /// Processes holding a reference.
    pub holders: u32,
    /// Unfinished tasks taking it as an argument.
    pub arg_uses: u32,
    /// Values (stored objects, or inline arguments of unfinished tasks)
    /// that have this object's ref serialized inside them.
    pub contained_in: u32,
    /// The refs serialized inside this object's value: released when it is freed.
    pub contains: Vec<ObjectId>,
    /// Connections to send ObjectReady to when it is ready.
    pub subscribers: Vec<ConnId>,
    /// Connections to send a pinned location (a grant) when it is ready.
    pub map_subscribers: Vec<ConnId>,
    /// Locations of it held by clients (see `residency`): it is not freed
    /// while any is outstanding.
    pub grants: u32,
    /// Tasks waiting for it before they can run.
    pub waiting_tasks: Vec<TaskId>,
}

impl ObjectEntry {
    /// Something still refers to the object, or waits for it.
    fn in_use(&self) -> bool {
        self.holders > 0
            || self.arg_uses > 0
            || self.contained_in > 0
            || self.grants > 0
            || !self.map_subscribers.is_empty()
            || !self.subscribers.is_empty()
            || !self.waiting_tasks.is_empty()
    }
}

/// A CreateObject waiting for room in the store.
pub(super) struct PendingCreate {
    conn: ConnId,
    request_id: u64,
    id: ObjectId,
    size: u64,
    deadline: Instant,
    /// Keeps the store's spill thread making room for it.
    _room: RoomRequest,
    /// The store's failed spills when it started waiting.
    spill_failures_at: u64,
}

/// How a stored object is announced: inline values as they are, objects
/// in shared memory or on disk by size only (a location is only ever sent
/// as a grant, see `residency`).
pub(super) fn announcement(obj: &StoredObject) -> v1::ObjectValue {
    wire_value(obj, false)
}

/// The wire form of a stored object; its shm location only when `granted`
/// (the caller pinned it for the receiver).
pub(super) fn wire_value(obj: &StoredObject, granted: bool) -> v1::ObjectValue {
    let body = match &obj.body {
        ObjectBody::Inline(data) => Body::InlineData(data.clone()),
        ObjectBody::Shm(location) if granted => Body::Shm(*location),
        ObjectBody::Shm(_) | ObjectBody::Spilled => Body::StoredSize(obj.size),
    };
    v1::ObjectValue {
        format: obj.format,
        metadata: obj.metadata.clone(),
        body: Some(body),
        contained_refs: Vec::new(),
    }
}

impl NodeCore {
    pub(super) fn ref_update(&mut self, conn: ConnId, update: v1::RefUpdate) {
        for raw in update.add {
            let Ok(id) = ObjectId::from_bytes(&raw) else {
                continue;
            };
            self.hold(conn, id);
        }
        for raw in update.remove {
            let Ok(id) = ObjectId::from_bytes(&raw) else {
                continue;
            };
            let released = self
                .conns
                .get_mut(&conn)
                .is_some_and(|c| c.held.remove(&id));
            if released {
                if let Some(o) = self.objects.get_mut(&id) {
                    o.holders = o.holders.saturating_sub(1);
                }
                self.maybe_free(id);
            }
        }
        for raw in update.unmap {
            if let Ok(id) = ObjectId::from_bytes(&raw) {
                self.release_grant(conn, id);
            }
        }
    }

    /// `conn` holds a reference to `id` (idempotent per connection).
    pub(super) fn hold(&mut self, conn: ConnId, id: ObjectId) {
        let added = self.conns.get_mut(&conn).is_some_and(|c| c.held.insert(id));
        if added {
            self.objects.entry(id).or_default().holders += 1;
        }
    }

    pub(super) fn get_objects(&mut self, conn: ConnId, get: v1::GetObjects) {
        if get.map {
            for raw in get.object_ids {
                match ObjectId::from_bytes(&raw) {
                    Ok(id) => self.send_mapped(conn, id),
                    Err(_) => self.send_error(
                        conn,
                        0,
                        system_error(
                            v1::ErrorKind::InvalidArgument,
                            format!("map of a malformed object id ({} bytes)", raw.len()),
                        ),
                    ),
                }
            }
            return;
        }
        for raw in get.object_ids {
            let Ok(id) = ObjectId::from_bytes(&raw) else {
                self.send_error(
                    conn,
                    0,
                    system_error(
                        v1::ErrorKind::InvalidArgument,
                        format!("get of a malformed object id ({} bytes)", raw.len()),
                    ),
                );
                continue;
            };
            if let Some(obj) = self.store.get(&id) {
                self.send_ready(conn, id, &obj);
                continue;
            }
            let entry = self.objects.entry(id).or_default();
            if !entry.subscribers.contains(&conn) {
                entry.subscribers.push(conn);
            }
            if let Some(c) = self.conns.get_mut(&conn) {
                c.subscribed.insert(id);
            }
            if !self.tasks.contains_key(&id.task_id()) {
                self.look_up_elsewhere(id);
            }
        }
    }

    fn send_ready(&self, conn: ConnId, id: ObjectId, obj: &StoredObject) {
        let mut value = announcement(obj);
        // The refs inside it: a node receiving the value holds them here
        // before it lets the value go (see `remote`).
        if let Some(entry) = self.objects.get(&id) {
            value.contained_refs = entry.contains.iter().map(|c| c.to_vec().into()).collect();
        }
        self.send_value(conn, id, value);
    }

    pub(super) fn put_object(&mut self, conn: ConnId, put: v1::PutObject) {
        let Ok(id) = ObjectId::from_bytes(&put.object_id) else {
            let err = system_error(
                v1::ErrorKind::InvalidArgument,
                "put of a malformed object id".into(),
            );
            self.send_error(conn, 0, err);
            return;
        };
        self.hold(conn, id);
        self.sealed_by(conn, &id);
        let Some(value) = put.value else {
            let err = system_error(
                v1::ErrorKind::InvalidArgument,
                format!("put of {id} without a value"),
            );
            self.store_value(id, error_value(&err));
            return;
        };
        if let Err(err) = self.store_value_checked(id, value) {
            self.send_error(conn, 0, err.clone());
            let _ = self
                .store
                .put_inline(id, v1::ValueFormat::Error as i32, Bytes::new(), {
                    use prost::Message;
                    err.encode_to_vec().into()
                });
        }
        self.object_ready(id);
    }

    /// Store a value produced by a client (put or task return), checking it.
    // The error is stored as the object's value right away; boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    pub(super) fn store_value_checked(
        &mut self,
        id: ObjectId,
        value: v1::ObjectValue,
    ) -> Result<(), v1::TaskError> {
        let inner: Vec<ObjectId> = value
            .contained_refs
            .iter()
            .filter_map(|raw| ObjectId::from_bytes(raw).ok())
            .collect();
        let result = match value.body {
            Some(Body::InlineData(data)) => {
                if data.len() as u64 > self.cfg.max_inline_bytes.max(16 << 20) {
                    return Err(system_error(
                        v1::ErrorKind::InvalidArgument,
                        format!(
                            "object {id}: inline value of {} bytes is too large; use shared memory",
                            data.len()
                        ),
                    ));
                }
                self.store
                    .put_inline(id, value.format, value.metadata, data)
            }
            Some(Body::Shm(loc)) => self.store.seal(id, value.format, value.metadata, loc),
            Some(Body::StoredSize(_)) => {
                return Err(system_error(
                    v1::ErrorKind::InvalidArgument,
                    format!("object {id}: stored_size is announced by the node, not sent to it"),
                ))
            }
            None => self
                .store
                .put_inline(id, value.format, value.metadata, Bytes::new()),
        };
        let result = result
            .map_err(|e| system_error(v1::ErrorKind::InvalidArgument, format!("object {id}: {e}")));
        if result.is_ok() && !inner.is_empty() {
            for i in &inner {
                self.objects.entry(*i).or_default().contained_in += 1;
            }
            self.objects.entry(id).or_default().contains = inner;
        }
        result
    }

    /// Store `value` under `id`, replacing nothing; errors become an ERROR value.
    pub(super) fn store_value(&mut self, id: ObjectId, value: v1::ObjectValue) {
        if let Err(err) = self.store_value_checked(id, value) {
            use prost::Message;
            self.store.delete(&id);
            let _ = self.store.put_inline(
                id,
                v1::ValueFormat::Error as i32,
                Bytes::new(),
                err.encode_to_vec().into(),
            );
        }
    }

    /// `id` was sealed: tell who waits, wake tasks, then free it if no one
    /// holds it.
    pub(super) fn object_ready(&mut self, id: ObjectId) {
        let Some(obj) = self.store.get(&id) else {
            return;
        };
        let entry = self.objects.entry(id).or_default();
        entry.ready = true;
        let subscribers = std::mem::take(&mut entry.subscribers);
        let map_subscribers = std::mem::take(&mut entry.map_subscribers);
        let waiting = std::mem::take(&mut entry.waiting_tasks);
        for conn in subscribers {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.subscribed.remove(&id);
            }
            self.send_ready(conn, id, &obj);
        }
        for conn in map_subscribers {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.subscribed.remove(&id);
            }
            self.send_mapped(conn, id);
        }
        for task in waiting {
            self.arg_ready(task);
        }
        self.maybe_free(id);
    }

    /// Free `id` if nothing refers to it any more, and then whatever only
    /// its value kept alive.
    pub(super) fn maybe_free(&mut self, id: ObjectId) {
        // The nested refs to look at next; most values have none, and
        // then nothing is allocated.
        let mut work = Vec::new();
        let mut first = Some(id);
        while let Some(id) = first.take().or_else(|| work.pop()) {
            if self.objects.get(&id).is_none_or(ObjectEntry::in_use) {
                continue;
            }
            // A return of a task still running stays awaited only if someone
            // cares; the task's completion checks for the entry.
            let Some(entry) = self.objects.remove(&id) else {
                continue;
            };
            if self.store.delete(&id) {
                self.retry_creates();
            }
            self.release_remote_hold(id);
            for inner in entry.contains {
                if let Some(o) = self.objects.get_mut(&inner) {
                    o.contained_in = o.contained_in.saturating_sub(1);
                }
                work.push(inner);
            }
        }
    }

    /// Hold or release the refs nested in a task's inline arguments: they
    /// stay alive while the task is unfinished.
    pub(super) fn hold_nested_args(&mut self, spec: &v1::TaskSpec, hold: bool) {
        for arg in &spec.args {
            let Some(value) = &arg.value else { continue };
            if !arg.object_ref.is_empty() {
                continue;
            }
            for raw in &value.contained_refs {
                let Ok(inner) = ObjectId::from_bytes(raw) else {
                    continue;
                };
                if hold {
                    self.objects.entry(inner).or_default().contained_in += 1;
                } else {
                    if let Some(o) = self.objects.get_mut(&inner) {
                        o.contained_in = o.contained_in.saturating_sub(1);
                    }
                    self.maybe_free(inner);
                }
            }
        }
    }

    pub(super) fn create_object(&mut self, conn: ConnId, req: v1::CreateObject) {
        let Ok(id) = ObjectId::from_bytes(&req.object_id) else {
            let err = system_error(
                v1::ErrorKind::InvalidArgument,
                "create of a malformed object id".into(),
            );
            self.send_error(conn, req.request_id, err);
            return;
        };
        if req.size == 0 {
            let err = system_error(
                v1::ErrorKind::InvalidArgument,
                format!("create of {id} with size 0"),
            );
            self.send_error(conn, req.request_id, err);
            return;
        }
        match self.store.create(id, req.size) {
            Ok(location) => self.reply_created(conn, req.request_id, id, location),
            Err(StoreError::Full { .. }) if req.timeout_ms > 0 => {
                self.pending_creates.push(PendingCreate {
                    conn,
                    request_id: req.request_id,
                    id,
                    size: req.size,
                    deadline: Instant::now() + Duration::from_millis(req.timeout_ms),
                    // Read before asking for room: a spill that fails at once counts.
                    spill_failures_at: self.store.spill_failures().0,
                    _room: self.store.request_room(req.size),
                });
            }
            Err(e) => {
                let err = system_error(
                    v1::ErrorKind::ObjectStoreFull,
                    store_full_message(&e, req.size),
                );
                self.send_error(conn, req.request_id, err);
            }
        }
    }

    /// Answer a create and remember the block until its writer seals it.
    fn reply_created(
        &mut self,
        conn: ConnId,
        request_id: u64,
        id: ObjectId,
        location: v1::ShmLocation,
    ) {
        match self.conns.get_mut(&conn) {
            Some(c) => {
                c.creating.insert(id);
            }
            None => {
                // The writer is gone already.
                self.store.abort(id);
                return;
            }
        }
        self.send(
            conn,
            node_op::Op::CreateObjectReply(v1::CreateObjectReply {
                request_id,
                object_id: id.to_vec().into(),
                location: Some(location),
            }),
        );
    }

    /// `conn` sealed (or gave up) the block it created for `id`.
    pub(super) fn sealed_by(&mut self, conn: ConnId, id: &ObjectId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.creating.remove(id);
        }
    }

    /// Creates still waiting for room from a connection that is gone.
    pub(super) fn pending_creates_of_gone(&mut self, conn: ConnId) {
        self.pending_creates.retain(|p| p.conn != conn);
    }

    pub(super) fn abort_object(&mut self, abort: v1::AbortObject) {
        if let Ok(id) = ObjectId::from_bytes(&abort.object_id) {
            self.store.abort(id);
            self.retry_creates();
        }
    }

    /// Fail the creates that started waiting before the store's
    /// `failures`-th failed spill: the spill disk is full, waiting longer
    /// would not make room.
    pub(super) fn fail_creates_after_spill_failure(&mut self, failures: u64, reason: &str) {
        if !self
            .pending_creates
            .iter()
            .any(|p| p.spill_failures_at < failures)
        {
            return;
        }
        let (failed, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_creates)
            .into_iter()
            .partition(|p| p.spill_failures_at < failures);
        self.pending_creates = keep;
        let stats = self.store.stats();
        for p in failed {
            let err = system_error(
                v1::ErrorKind::ObjectStoreFull,
                format!(
                    "object store full: could not make room for an object of {} bytes \
                     (capacity {} bytes, {} bytes in use), and spilling other objects to disk failed: {reason}",
                    p.size, stats.capacity, stats.used
                ),
            );
            self.send_error(p.conn, p.request_id, err);
        }
    }

    /// Memory was freed: try the creates that wait for room, oldest first.
    pub(super) fn retry_creates(&mut self) {
        if self.pending_creates.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.pending_creates);
        for p in waiting {
            match self.store.create(p.id, p.size) {
                Ok(location) => self.reply_created(p.conn, p.request_id, p.id, location),
                Err(StoreError::Full { .. }) => self.pending_creates.push(p),
                Err(e) => {
                    let err = system_error(
                        v1::ErrorKind::ObjectStoreFull,
                        store_full_message(&e, p.size),
                    );
                    self.send_error(p.conn, p.request_id, err);
                }
            }
        }
    }

    pub(super) fn expire_creates(&mut self, now: Instant) {
        if self.pending_creates.is_empty() {
            return;
        }
        let (expired, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_creates)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.pending_creates = keep;
        for p in expired {
            let stats = self.store.stats();
            let err = system_error(
                v1::ErrorKind::ObjectStoreFull,
                format!(
                    "object store full: could not make room for an object of {} bytes \
                     (capacity {} bytes, {} bytes in use by {} objects)",
                    p.size, stats.capacity, stats.used, stats.num_objects
                ),
            );
            self.send_error(p.conn, p.request_id, err);
        }
    }
}

fn store_full_message(err: &StoreError, size: u64) -> String {
    match err {
        StoreError::TooLarge { requested, capacity } => format!(
            "object of {requested} bytes is larger than the object store's capacity of {capacity} bytes \
             (start the cluster with a larger --object-store-memory)"
        ),
        StoreError::Full { requested, capacity, used } => format!(
            "object store full: could not make room for an object of {requested} bytes \
             (capacity {capacity} bytes, {used} bytes in use)"
        ),
        other => format!("could not create an object of {size} bytes: {other}"),
    }
}
