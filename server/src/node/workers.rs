//! The worker pool's bookkeeping inside the core: which workers exist,
//! which are starting, idle or leased (holding a task's resources), and what
//! happens when one dies. Starting processes is the pool task's job
//! (`crate::worker_pool`), driven by `PoolCommand`s.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use ember_proto::v1;
use ember_proto::{ActorId, JobId, TaskId, WorkerId};

use super::{system_error, ConnId, ConnKind, NodeCore};
use crate::resources::ResourceSet;

/// What the core asks of the worker pool task.
#[derive(Debug)]
pub enum PoolCommand {
    /// Fork a new worker that will say hello with this id.
    Spawn(WorkerId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WorkerState {
    /// Fork requested; no hello yet.
    Starting,
    Idle,
    Leased,
    /// Dedicated to an actor for the rest of its life.
    Actor,
}

/// Resources a leased worker holds for the tasks of one class.
pub(super) struct Lease {
    pub request: ResourceSet,
    pub gpu_devices: Vec<usize>,
    /// `request` as each `ExecuteTask.assigned_resources` carries it,
    /// made once per lease rather than once per task.
    pub assigned: std::collections::HashMap<String, f64>,
}

impl Lease {
    pub fn new(request: ResourceSet, gpu_devices: Vec<usize>) -> Self {
        let assigned = request.to_map();
        Self {
            request,
            gpu_devices,
            assigned,
        }
    }
}

pub(super) struct WorkerEntry {
    pub pid: Option<u32>,
    pub conn: Option<ConnId>,
    pub state: WorkerState,
    pub lease: Option<Lease>,
    /// Tasks sent to it; the first is running.
    pub tasks: VecDeque<TaskId>,
    /// When the first of `tasks` started (as far as the node knows).
    pub front_since: Instant,
    /// When it last became idle.
    pub idle_since: Instant,
    /// Its running task waits in get/wait; its CPU is lent out.
    pub blocked: bool,
    /// The actor it runs, once it is an actor's worker.
    pub actor: Option<ActorId>,
    pub seen_functions: HashSet<Bytes>,
    pub seen_jobs: HashSet<JobId>,
}

/// Workers beyond the prestarted number exit after being idle this long.
const IDLE_WORKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Consecutive startup failures after which queued tasks are failed.
const MAX_START_FAILURES: u32 = 3;

impl NodeCore {
    pub(super) fn spawn_worker(&mut self) {
        if self.stopping {
            return;
        }
        let id = WorkerId::random();
        self.workers.insert(
            id,
            WorkerEntry {
                pid: None,
                conn: None,
                state: WorkerState::Starting,
                lease: None,
                tasks: VecDeque::new(),
                front_since: Instant::now(),
                idle_since: Instant::now(),
                blocked: false,
                actor: None,
                seen_functions: HashSet::new(),
                seen_jobs: HashSet::new(),
            },
        );
        let _ = self.pool_tx.send(PoolCommand::Spawn(id));
    }

    fn count_state(&self, state: WorkerState) -> usize {
        self.workers.values().filter(|w| w.state == state).count()
    }

    /// Tasks of `class` fit but no worker is idle: start enough workers for
    /// what fits, within the pool's limit.
    pub(super) fn want_workers(&mut self, class: &ResourceSet) {
        let queued = self.queues.get(class).map(|q| q.len()).unwrap_or(0);
        // An actor's placement holds its CPU only for a moment: every queued
        // creation can use a worker of its own at once.
        let creations = self
            .queues
            .get(class)
            .map(|q| {
                q.iter()
                    .filter(|t| {
                        self.tasks
                            .get(t)
                            .is_some_and(|t| t.spec.actor_creation.is_some())
                    })
                    .count()
            })
            .unwrap_or(0);
        let cpu = class.get("CPU");
        let fits = if cpu > 0 {
            (self.available.get("CPU") / cpu).max(0) as usize
        } else {
            queued
        };
        let wanted = queued.min(fits.max(1)).max(creations);
        let starting = self.count_state(WorkerState::Starting);
        // Actors' workers are their own: they do not count against the pool.
        let room = self.cfg.max_workers.saturating_sub(self.task_workers());
        for _ in 0..wanted.saturating_sub(starting).min(room) {
            self.spawn_worker();
        }
    }

    /// A busy worker of this class that can take `task_id` in its queue.
    ///
    /// Nothing is queued behind a task of a function known to block (a
    /// parent waiting for its children would hand the queued tasks back),
    /// nor is such a task queued behind another: it waits for a CPU.
    pub(super) fn pipeline_target(&self, class: &ResourceSet, task_id: TaskId) -> Option<WorkerId> {
        if self.cfg.pipeline_depth == 0 {
            return None;
        }
        let blocking = &self.blocking_functions;
        let may_block = |task: &TaskId| {
            !blocking.is_empty()
                && self
                    .tasks
                    .get(task)
                    .and_then(|t| t.spec.function.as_ref())
                    .is_some_and(|f| blocking.contains(&f.function_id))
        };
        if may_block(&task_id) {
            return None;
        }
        let now = Instant::now();
        self.workers
            .iter()
            .filter(|(_, w)| {
                w.state == WorkerState::Leased
                    && !w.blocked
                    && w.tasks.len() <= self.cfg.pipeline_depth
                    && now.duration_since(w.front_since) < self.cfg.pipeline_window
                    && w.lease.as_ref().is_some_and(|l| &l.request == class)
                    && !w.tasks.iter().any(may_block)
            })
            .min_by_key(|(_, w)| w.tasks.len())
            .map(|(id, _)| *id)
    }

    /// Workers of the task pool that count against `max_workers`: not
    /// dedicated to an actor, and not blocked in a `get` (a blocked worker
    /// gave its CPU back; counting it would deadlock nested tasks once every
    /// worker holds a parent waiting for its children).
    fn task_workers(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.actor.is_none() && !w.blocked)
            .count()
    }

    /// Give an idle worker the resources of one task of `class`.
    pub(super) fn lease(&mut self, wid: WorkerId, class: &ResourceSet) {
        let gpu_units = class.get("GPU");
        let gpu_devices = self.gpus.acquire(gpu_units).unwrap_or_default();
        self.available.subtract(class);
        if let Some(w) = self.workers.get_mut(&wid) {
            w.state = WorkerState::Leased;
            w.lease = Some(Lease::new(class.clone(), gpu_devices));
        }
    }

    /// The worker just got an actor's creation: from now on it holds the
    /// resources the actor keeps (not those it needed to be placed) and runs
    /// nothing else.
    pub(super) fn make_actor_worker(&mut self, wid: WorkerId, actor: ActorId) {
        let held = self
            .actors
            .get(&actor)
            .and_then(|a| ResourceSet::from_map(&a.creation.held_resources).ok())
            .unwrap_or_default();
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        w.state = WorkerState::Actor;
        w.actor = Some(actor);
        if let Some(lease) = w.lease.as_mut() {
            self.available.add(&lease.request);
            self.available.subtract(&held);
            *lease = Lease::new(held, std::mem::take(&mut lease.gpu_devices));
        }
        // Keep the task pool at its prestarted size.
        if self.task_workers() < self.cfg.prestart_workers {
            self.spawn_worker();
        }
    }

    /// A worker with nothing left to run returns its lease and goes idle.
    pub(super) fn worker_maybe_idle(&mut self, wid: WorkerId) {
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        if !w.tasks.is_empty() || w.state != WorkerState::Leased {
            return;
        }
        let blocked = std::mem::replace(&mut w.blocked, false);
        let lease = w.lease.take();
        w.state = WorkerState::Idle;
        w.idle_since = Instant::now();
        if let Some(lease) = lease {
            self.return_lease(&lease, blocked);
        }
        self.idle.push(wid);
    }

    fn return_lease(&mut self, lease: &Lease, blocked: bool) {
        if blocked {
            // Its CPU was already lent out when it blocked.
            self.available.add(&lease.request.without("CPU"));
        } else {
            self.available.add(&lease.request);
        }
        self.gpus
            .release(&lease.gpu_devices, lease.request.get("GPU"));
    }

    /// Stop workers that have idled past the timeout while more than the
    /// prestarted number exist (they were started for a burst or for blocked
    /// tasks). Their connections close and `worker_died` forgets them.
    pub(super) fn reap_idle_workers(&mut self, now: Instant) {
        let mut excess = self
            .task_workers()
            .saturating_sub(self.cfg.prestart_workers);
        if excess == 0 {
            return;
        }
        // `idle` is oldest first.
        let mut keep = Vec::with_capacity(self.idle.len());
        for wid in std::mem::take(&mut self.idle) {
            let expired = self
                .workers
                .get(&wid)
                .is_some_and(|w| now.duration_since(w.idle_since) > IDLE_WORKER_TIMEOUT);
            if excess > 0 && expired {
                excess -= 1;
                if let Some(w) = self.workers.get(&wid) {
                    tracing::debug!(worker = %wid, "stopping an idle worker");
                    if let Some(conn) = w.conn {
                        self.close(conn);
                    }
                }
            } else {
                keep.push(wid);
            }
        }
        self.idle = keep;
    }

    /// The pool forked the process for `wid`.
    pub fn worker_forked(&mut self, wid: WorkerId, pid: u32) {
        match self.workers.get_mut(&wid) {
            Some(w) => w.pid = Some(pid),
            None => {
                // Forgotten while starting (shutdown): do not leave it running.
                super::signal_worker(pid, libc::SIGKILL);
            }
        }
    }

    /// The worker `wid` said hello on `conn`.
    pub(super) fn worker_connected(&mut self, wid: WorkerId, conn: ConnId, pid: u32) -> bool {
        let Some(w) = self.workers.get_mut(&wid) else {
            return false;
        };
        if w.state != WorkerState::Starting {
            return false;
        }
        w.conn = Some(conn);
        // The fork server's report is authoritative; a hello's pid fills in
        // only when that has not arrived, and never as 0 or 1.
        if w.pid.is_none() && pid > 1 {
            w.pid = Some(pid);
        }
        w.state = WorkerState::Idle;
        self.idle.push(wid);
        self.start_failures = 0;
        true
    }

    /// A worker process exited (reported by the pool). A worker that never
    /// said hello failed to start; one that did is handled when its
    /// connection closes.
    pub fn worker_process_exited(&mut self, pid: u32, status: i32) {
        let starting = self
            .workers
            .iter()
            .find(|(_, w)| w.pid == Some(pid) && w.state == WorkerState::Starting)
            .map(|(id, _)| *id);
        let Some(wid) = starting else { return };
        self.workers.remove(&wid);
        self.worker_start_failed(format!(
            "a worker process (pid {pid}) exited during startup with status {status}"
        ));
    }

    /// Starting a worker failed (the process died, or the fork server could
    /// not run). After a few in a row, queued tasks fail with the reason.
    pub fn worker_start_failed(&mut self, why: String) {
        self.start_failures += 1;
        tracing::warn!(failures = self.start_failures, %why, "worker failed to start");
        self.last_start_failure = why;
        if self.start_failures >= MAX_START_FAILURES {
            self.start_failures = 0;
            let err = system_error(
                v1::ErrorKind::WorkerStartFailed,
                format!(
                    "no worker could be started for the task: {} ({} attempts); see the node log in {}",
                    self.last_start_failure,
                    MAX_START_FAILURES,
                    self.cfg.session_dir.join("logs").display()
                ),
            );
            // Forget the workers still starting: they belong to the failed batch.
            self.workers.retain(|_, w| w.state != WorkerState::Starting);
            self.fail_queued(err);
        }
        self.dispatch();
    }

    /// The fork server died: the workers it was starting will never say
    /// hello. Forget them (so new ones are asked of the next fork server)
    /// and count the failure.
    pub fn fork_server_died(&mut self, why: String) {
        self.workers.retain(|_, w| w.state != WorkerState::Starting);
        self.worker_start_failed(why);
    }

    /// A worker with a connection died (its socket closed).
    pub(super) fn worker_died(&mut self, wid: WorkerId, why: &str) {
        let Some(mut w) = self.workers.remove(&wid) else {
            return;
        };
        self.idle.retain(|i| *i != wid);
        if let Some(lease) = w.lease.take() {
            self.return_lease(&lease, w.blocked);
        }
        let pid = w.pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
        let tasks = std::mem::take(&mut w.tasks);
        if let Some(actor) = w.actor {
            self.actor_worker_died(actor, tasks, &format!("{pid}{why}"));
            self.dispatch();
            return;
        }
        if !tasks.is_empty() {
            tracing::warn!(worker = %wid, tasks = tasks.len(), "worker died with tasks assigned");
        }
        self.requeue_after_crash(tasks, &format!("{pid}{why}"));
        self.dispatch();
    }

    fn worker_of(&self, conn: ConnId) -> Option<WorkerId> {
        match self.conns.get(&conn).map(|c| c.kind) {
            Some(ConnKind::Worker(w)) => Some(w),
            _ => None,
        }
    }

    /// The worker's running task waits for objects: lend its CPU and take
    /// back the tasks queued behind it.
    pub(super) fn worker_blocked(&mut self, conn: ConnId, blocked: v1::WorkerBlocked) {
        let Some(wid) = self.worker_of(conn) else {
            return;
        };
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        let mut handed_back = Vec::new();
        for raw in &blocked.returned_task_ids {
            let Ok(task_id) = TaskId::from_bytes(raw) else {
                continue;
            };
            if let Some(pos) = w.tasks.iter().position(|t| *t == task_id) {
                // An actor's calls are bound to it: never handed back.
                if pos > 0 && w.actor.is_none() {
                    w.tasks.remove(pos);
                    handed_back.push(task_id);
                }
            }
        }
        let newly_blocked =
            !w.blocked && matches!(w.state, WorkerState::Leased | WorkerState::Actor);
        if newly_blocked {
            if let Some(f) = w
                .tasks
                .front()
                .filter(|_| w.actor.is_none())
                .and_then(|t| self.tasks.get(t))
                .and_then(|t| t.spec.function.as_ref())
            {
                if !self.blocking_functions.contains(&f.function_id) {
                    self.blocking_functions.insert(f.function_id.clone());
                }
            }
            w.blocked = true;
            let cpu = w.lease.as_ref().map(|l| l.request.get("CPU")).unwrap_or(0);
            self.available.adjust("CPU", cpu);
        }
        // Keep their order at the front of their queues.
        for task_id in handed_back.into_iter().rev() {
            self.enqueue(task_id, true);
        }
        self.dispatch();
    }

    pub(super) fn worker_unblocked(&mut self, conn: ConnId) {
        let Some(wid) = self.worker_of(conn) else {
            return;
        };
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        if !w.blocked {
            return;
        }
        w.blocked = false;
        let cpu = w.lease.as_ref().map(|l| l.request.get("CPU")).unwrap_or(0);
        self.available.adjust("CPU", -cpu);
    }
}
