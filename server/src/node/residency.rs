//! Residency: which objects must stay in shared memory for whom, and how
//! spilled ones come back.
//!
//! A client reads a large object by mapping its shared-memory location.
//! Every location the node hands out — an `ObjectReady` answering
//! `GetObjects { map: true }`, or an argument of `ExecuteTask` — is a
//! *grant*: the object is pinned in the store (never spilled, never freed)
//! until that client sends one `RefUpdate.unmap` for it, or disconnects.
//! Other announcements of an object in the store carry only
//! `stored_size`, so no client ever holds a location the store could
//! reuse.
//!
//! An object that was spilled is restored before a location is granted: a
//! restore request goes to [`run_store_events`] (the store's async
//! `restore`), and the connections, tasks and actor calls waiting for it
//! are served when it ends (`restore_done`). A restore that cannot make room
//! in time, or cannot read the file back, fails its waiters with a clear
//! error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_flight_store::{PinOutcome, Store, StoreError, StoredObject};
use ember_proto::v1::{self, node_op};
use ember_proto::{ActorId, ObjectId, TaskId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::objects::wire_value;
use super::{error_value, system_error, ConnId, NodeCore};

/// Who waits for a restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RestoreWaiter {
    /// A client asked to map the object.
    Conn(ConnId),
    /// A task about to be assigned needs it as an argument.
    Task(TaskId),
    /// The call at the front of an actor's queue needs it as an argument.
    ActorCall(ActorId, TaskId),
}

/// The pinned shared-memory arguments of a task about to be assigned, one
/// slot per argument (`None`: passed by value, inline, or missing).
pub(super) type ArgPins = Vec<Option<StoredObject>>;

/// The wire form of an object given with a pinned location.
/// The largest stored value sent by value to a client without shared
/// memory; with the gRPC stream's 512 MiB message limit this leaves room for
/// the other ops gathered into the same message (capped at
/// [`crate::local::MAX_GATHER_BYTES`] before the last one).
pub const MAX_REMOTE_VALUE_BYTES: usize = 256 << 20;

fn granted_value(obj: &StoredObject) -> v1::ObjectValue {
    wire_value(obj, true)
}

impl NodeCore {
    /// Send `conn` a pinned location of `id` (or its inline value), or start
    /// what gets it one: a restore, or a wait until it is sealed.
    pub(super) fn send_mapped(&mut self, conn: ConnId, id: ObjectId) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let remote = self.conns.get(&conn).is_some_and(|c| c.remote);
        match self.store.pin_shm(&id) {
            PinOutcome::Pinned(obj) if remote => {
                // No shared memory on the other side: the bytes themselves
                // (a view of the block, copied once into the gRPC message).
                let data = self.store.read(&id);
                self.store.unpin(&id);
                let value = match data {
                    Some(data) if data.len() <= MAX_REMOTE_VALUE_BYTES => v1::ObjectValue {
                        format: obj.format,
                        metadata: obj.metadata.clone(),
                        body: Some(v1::object_value::Body::InlineData(data)),
                        contained_refs: Vec::new(),
                    },
                    Some(data) => error_value(&system_error(
                        v1::ErrorKind::InvalidArgument,
                        format!(
                            "object {id} is {} bytes: a client without shared memory (a gRPC \
                             stream) reads values up to {} MiB by value; pull larger ones over \
                             Arrow Flight (do_get of the ticket \"raw:{id}\")",
                            data.len(),
                            MAX_REMOTE_VALUE_BYTES >> 20
                        ),
                    )),
                    None => error_value(&system_error(
                        v1::ErrorKind::ObjectLost,
                        format!("object {id} is no longer available"),
                    )),
                };
                self.send_value(conn, id, value);
            }
            PinOutcome::Pinned(obj) => {
                self.note_grant(conn, id);
                self.send_value(conn, id, granted_value(&obj));
            }
            PinOutcome::Inline(obj) => self.send_value(conn, id, granted_value(&obj)),
            PinOutcome::Spilled => self.request_restore(id, RestoreWaiter::Conn(conn)),
            PinOutcome::Missing => {
                if !self.tasks.contains_key(&id.task_id()) {
                    self.look_up_elsewhere(id);
                }
                let entry = self.objects.entry(id).or_default();
                if !entry.map_subscribers.contains(&conn) {
                    entry.map_subscribers.push(conn);
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.subscribed.insert(id);
                }
            }
        }
    }

    pub(super) fn send_value(&self, conn: ConnId, id: ObjectId, value: v1::ObjectValue) {
        self.send(
            conn,
            node_op::Op::ObjectReady(v1::ObjectReady {
                object_id: id.to_vec().into(),
                value: Some(value),
            }),
        );
    }

    /// Count a location handed to `conn` (the store pin is taken already).
    pub(super) fn note_grant(&mut self, conn: ConnId, id: ObjectId) {
        match self.conns.get_mut(&conn) {
            Some(c) => *c.grants.entry(id).or_default() += 1,
            None => {
                self.store.unpin(&id);
                return;
            }
        }
        self.objects.entry(id).or_default().grants += 1;
    }

    /// `conn` stopped reading one location of `id` it was given.
    pub(super) fn release_grant(&mut self, conn: ConnId, id: ObjectId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(n) = c.grants.get_mut(&id) else {
            return; // not given to it: ignore
        };
        *n -= 1;
        if *n == 0 {
            c.grants.remove(&id);
        }
        self.release_grants_of(id, 1);
    }

    /// Drop `n` grants of `id` (its connection is gone or released them).
    pub(super) fn release_grants_of(&mut self, id: ObjectId, n: u32) {
        for _ in 0..n {
            self.store.unpin(&id);
        }
        if let Some(o) = self.objects.get_mut(&id) {
            o.grants = o.grants.saturating_sub(n);
        }
        self.maybe_free(id);
    }

    /// Pin the shared-memory arguments of a task about to be assigned.
    /// `Err` lists the arguments that are spilled (nothing stays pinned).
    pub(super) fn pin_args(&self, task_id: TaskId) -> Result<ArgPins, Vec<ObjectId>> {
        let Some(t) = self.tasks.get(&task_id) else {
            return Ok(Vec::new());
        };
        let mut pins: ArgPins = Vec::with_capacity(t.spec.args.len());
        let mut spilled = Vec::new();
        for arg in &t.spec.args {
            let pinned = match ObjectId::from_bytes(&arg.object_ref) {
                Ok(id) => match self.store.pin_shm(&id) {
                    PinOutcome::Pinned(obj) => Some(obj),
                    PinOutcome::Spilled => {
                        spilled.push(id);
                        None
                    }
                    PinOutcome::Inline(_) | PinOutcome::Missing => None,
                },
                Err(_) => None,
            };
            pins.push(pinned);
        }
        if spilled.is_empty() {
            return Ok(pins);
        }
        self.unpin_args(t, pins);
        Err(spilled)
    }

    /// Give back pins taken by `pin_args` for a task that was not assigned.
    pub(super) fn unpin_args(&self, t: &super::tasks::TaskEntry, pins: ArgPins) {
        for (arg, pinned) in t.spec.args.iter().zip(pins) {
            if pinned.is_some() {
                if let Ok(id) = ObjectId::from_bytes(&arg.object_ref) {
                    self.store.unpin(&id);
                }
            }
        }
    }

    /// The value an argument by reference is sent with: its pinned location
    /// (`granted` records it), its inline value, or an error.
    pub(super) fn arg_value(
        &self,
        raw_id: &[u8],
        pinned: Option<StoredObject>,
        granted: &mut Vec<ObjectId>,
    ) -> v1::ObjectValue {
        let id = ObjectId::from_bytes(raw_id).ok();
        if let (Some(id), Some(obj)) = (id, pinned) {
            granted.push(id);
            return granted_value(&obj);
        }
        match id.and_then(|id| self.store.get(&id)) {
            Some(
                obj @ StoredObject {
                    body: ember_flight_store::ObjectBody::Inline(_),
                    ..
                },
            ) => granted_value(&obj),
            _ => error_value(&system_error(
                v1::ErrorKind::ObjectLost,
                format!(
                    "argument object {} is no longer available",
                    hex::encode(raw_id)
                ),
            )),
        }
    }

    /// Whether a task waits for its arguments to be restored. Tasks restore
    /// one at a time, and only when they could run at once: restoring the
    /// arguments of every queued task would overfill the store and evict
    /// one task's arguments to make room for another's.
    pub(super) fn a_task_is_restoring(&self) -> bool {
        self.restoring.values().flatten().any(|w| {
            matches!(w, RestoreWaiter::Task(t)
                if self.tasks.get(t).is_some_and(|t| t.state == super::tasks::TaskState::RestoringArgs))
        })
    }

    /// Ask for `id` to be restored (once), `waiter` to be told.
    pub(super) fn request_restore(&mut self, id: ObjectId, waiter: RestoreWaiter) {
        let mut first = false;
        let waiters = self.restoring.entry(id).or_insert_with(|| {
            first = true;
            Vec::new()
        });
        if !waiters.contains(&waiter) {
            waiters.push(waiter);
        }
        if first {
            tracing::debug!(object_id = %id, "restoring a spilled object");
            let _ = self.restore_tx.send(id);
        }
    }

    /// A restore ended: serve (or fail) whoever waited for it.
    pub fn restore_done(&mut self, id: ObjectId, result: Result<(), StoreError>) {
        let waiters = self.restoring.remove(&id).unwrap_or_default();
        match result {
            Ok(()) => {
                // The restore's pin keeps it in memory until the waiters
                // have taken theirs.
                for waiter in waiters {
                    match waiter {
                        RestoreWaiter::Conn(conn) => self.send_mapped(conn, id),
                        RestoreWaiter::Task(task) => self.requeue_restored(task),
                        RestoreWaiter::ActorCall(actor, _) => self.pump_actor(actor),
                    }
                }
                self.dispatch();
                self.store.unpin(&id);
            }
            Err(error) => {
                let err = restore_error(id, &error);
                tracing::warn!(object_id = %id, %error, "a spilled object could not be restored");
                for waiter in waiters {
                    match waiter {
                        RestoreWaiter::Conn(conn) => {
                            self.send_value(conn, id, error_value(&err));
                        }
                        RestoreWaiter::Task(task) => self.fail_task(task, err.clone()),
                        RestoreWaiter::ActorCall(actor, task) => {
                            if let Some(a) = self.actors.get_mut(&actor) {
                                a.queue.retain(|q| *q != task);
                            }
                            self.fail_task(task, err.clone());
                            self.pump_actor(actor);
                        }
                    }
                }
                self.dispatch();
            }
        }
    }

    /// The store freed memory, or spilled or restored objects: retry the
    /// creates that wait for room, and fail those that waited through a
    /// failed spill (the spill disk is full: waiting longer would not help).
    pub fn store_changed(&mut self) {
        if self.pending_creates.is_empty() {
            return;
        }
        self.retry_creates();
        let (failures, reason) = self.store.spill_failures();
        self.fail_creates_after_spill_failure(failures, &reason);
    }
}

/// The error a failed restore gives its waiters.
fn restore_error(id: ObjectId, error: &StoreError) -> v1::TaskError {
    match error {
        StoreError::Full { .. } | StoreError::SpillFailed { .. } => system_error(
            v1::ErrorKind::ObjectStoreFull,
            format!(
                "object {id} is spilled to disk and could not be restored into shared memory: {error} \
                 (objects in use by readers are not spilled to make room; release some, or start \
                 the cluster with a larger --object-store-memory)"
            ),
        ),
        other => system_error(
            v1::ErrorKind::ObjectLost,
            format!("object {id} was spilled to disk and could not be read back: {other}"),
        ),
    }
}

/// Serve the core's restore requests with the store's async restore, and
/// tell the core when the store's memory changes. Ends at `shutdown`.
pub async fn run_store_events(
    core: Arc<Mutex<NodeCore>>,
    store: Arc<Store>,
    mut restores: mpsc::UnboundedReceiver<ObjectId>,
    wait: Duration,
    shutdown: CancellationToken,
) {
    let mut changes = store.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            request = restores.recv() => {
                let Some(id) = request else { return };
                let (core, store) = (core.clone(), store.clone());
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + wait;
                    let result = store.restore(id, deadline).await;
                    crate::local::lock(&core).restore_done(id, result);
                });
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                crate::local::lock(&core).store_changed();
            }
        }
    }
}
