//! Hosting actors in a serving [`Worker`]: classes registered with
//! [`Worker::register_actor`] (a constructor, methods on `&mut T` and, for
//! `T: Sync`, methods on `&T`), the instances this process holds by actor
//! id, and a queue per instance that starts its calls in the order they
//! arrived.
//!
//! The node sends an actor's creation as an `ExecuteTask` with
//! `spec.actor_creation` set (the class in `spec.function.name`), then its
//! method calls (`spec.actor_id`, `spec.method_name`) in submission order,
//! as soon as their arguments exist (it does not wait for earlier calls to
//! finish), and `NodeOp.drop_actor` when the actor is killed or its owner
//! exits. Each instance's creation and calls go through its queue, run on
//! tokio's blocking pool (a thread that finishes one takes the next that
//! may start, so a busy actor needs no thread hand-off per call):
//!
//! - The creation's `max_concurrency` (0 or 1: one) caps the calls running
//!   at once. With 1, one call at a time in arrival order.
//! - Calls start in arrival order; the first that may not start holds back
//!   the ones behind it. A call to a shared method (`&T`) starts while
//!   fewer than `max_concurrency` calls run and no exclusive one does; a
//!   call to an exclusive method (`&mut T`), the constructor, or a method
//!   the class does not have, starts only when nothing runs, and nothing
//!   starts while it runs.
//! - The instance lives in a `Mutex` (a class with exclusive methods only:
//!   `T` need not be `Sync`) or an `RwLock` (a class with a shared method),
//!   which the running calls hold an `Arc` of: a dropped actor's instance
//!   goes when its last running call ends. A panic in a method poisons the
//!   lock; later calls take it all the same (the actor goes on with its
//!   state, as after an `Err`).
//!
//! Different actors run side by side.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt::{Debug, Display};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use ember_proto::v1::{self, ErrorKind};
use ember_proto::{ActorId, TaskId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::Encoded;
use crate::conn::Shared;
use crate::worker::{decode_args, outcome, task_args, Failure, Outcome, Task, Worker};

/// The constructor of an actor class taking `Args` (a tuple of its argument
/// types): implemented for `Fn(A, B, ...) -> Result<T, E>` (up to 8
/// arguments) where the arguments are `DeserializeOwned` and
/// `E: Display + Debug`.
pub trait Constructor<Args, T>: Send + Sync + 'static {
    /// Decode the arguments (msgpack, raw or Arrow) and make the instance.
    fn construct(&self, args: Vec<Encoded>) -> std::result::Result<T, Failure>;
}

/// A method of an actor class `T` taking `Args`: implemented for
/// `Fn(&mut T, A, B, ...) -> Result<R, E>` (up to 8 arguments after the
/// instance) with the bounds of [`SyncHandler`](crate::SyncHandler).
pub trait MethodHandler<T, Args>: Send + Sync + 'static {
    /// Decode the arguments, run on `instance`, encode the result.
    fn invoke(&self, instance: &mut T, args: Vec<Encoded>) -> Outcome;
}

/// A shared method of an actor class `T` taking `Args`: implemented for
/// `Fn(&T, A, B, ...) -> Result<R, E>` (up to 8 arguments after the
/// instance) with the bounds of [`SyncHandler`](crate::SyncHandler). Calls
/// of shared methods may run side by side (see
/// [`ActorClass::method_shared`]).
pub trait SharedMethodHandler<T, Args>: Send + Sync + 'static {
    /// Decode the arguments, run on `instance`, encode the result.
    fn invoke(&self, instance: &T, args: Vec<Encoded>) -> Outcome;
}

macro_rules! actor_handlers {
    ($n:expr; $($A:ident),*) => {
        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<Func, T, E, $($A),*> Constructor<($($A,)*), T> for Func
        where
            Func: Fn($($A),*) -> std::result::Result<T, E> + Send + Sync + 'static,
            E: Display + Debug,
            $($A: DeserializeOwned,)*
        {
            fn construct(&self, args: Vec<Encoded>) -> std::result::Result<T, Failure> {
                let ($($A,)*) = decode_args!(args, $n; $($A),*)?;
                self($($A),*).map_err(|e| Failure::from_error(&e))
            }
        }

        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<Func, T, R, E, $($A),*> MethodHandler<T, ($($A,)*)> for Func
        where
            Func: Fn(&mut T, $($A),*) -> std::result::Result<R, E> + Send + Sync + 'static,
            R: Serialize,
            E: Display + Debug,
            $($A: DeserializeOwned,)*
        {
            fn invoke(&self, instance: &mut T, args: Vec<Encoded>) -> Outcome {
                let ($($A,)*) = decode_args!(args, $n; $($A),*)?;
                outcome(self(instance, $($A),*))
            }
        }

        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<Func, T, R, E, $($A),*> SharedMethodHandler<T, ($($A,)*)> for Func
        where
            Func: Fn(&T, $($A),*) -> std::result::Result<R, E> + Send + Sync + 'static,
            R: Serialize,
            E: Display + Debug,
            $($A: DeserializeOwned,)*
        {
            fn invoke(&self, instance: &T, args: Vec<Encoded>) -> Outcome {
                let ($($A,)*) = decode_args!(args, $n; $($A),*)?;
                outcome(self(instance, $($A),*))
            }
        }
    };
}

actor_handlers!(0;);
actor_handlers!(1; A1);
actor_handlers!(2; A1, A2);
actor_handlers!(3; A1, A2, A3);
actor_handlers!(4; A1, A2, A3, A4);
actor_handlers!(5; A1, A2, A3, A4, A5);
actor_handlers!(6; A1, A2, A3, A4, A5, A6);
actor_handlers!(7; A1, A2, A3, A4, A5, A6, A7);
actor_handlers!(8; A1, A2, A3, A4, A5, A6, A7, A8);

/// An instance, type-erased, before it goes into its [`Cell`].
type Instance = Box<dyn Any + Send>;
type ConstructFn =
    Arc<dyn Fn(Vec<Encoded>) -> std::result::Result<Instance, Failure> + Send + Sync>;
type ExclusiveFn = Arc<dyn Fn(&mut dyn Any, Vec<Encoded>) -> Outcome + Send + Sync>;
type SharedFn = Arc<dyn Fn(&dyn Any, Vec<Encoded>) -> Outcome + Send + Sync>;

/// A method, type-erased: on `&mut T` or on `&T`.
#[derive(Clone)]
enum MethodFn {
    Exclusive(ExclusiveFn),
    Shared(SharedFn),
}

/// Where a hosted instance lives; the running calls hold an `Arc` of it.
enum Cell {
    /// A class with exclusive methods only (`T` need not be `Sync`).
    Exclusive(Mutex<Instance>),
    /// A class with a shared method (`T: Sync`): its calls read at once.
    Shared(RwLock<Box<dyn Any + Send + Sync>>),
}

impl Cell {
    /// Run `f` on the instance, alone. A lock poisoned by a method that
    /// panicked is taken all the same: the actor goes on with its state.
    fn exclusive<R>(&self, f: impl FnOnce(&mut dyn Any) -> R) -> R {
        match self {
            Cell::Exclusive(m) => f(&mut **lock(m)),
            Cell::Shared(rw) => f(&mut **rw.write().unwrap_or_else(|e| e.into_inner())),
        }
    }

    /// Run `f` on the instance, beside other shared calls.
    fn shared<R>(&self, f: impl FnOnce(&dyn Any) -> R) -> R {
        match self {
            Cell::Exclusive(m) => f(&**lock(m)),
            Cell::Shared(rw) => f(&**rw.read().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

fn exclusive_cell(instance: Instance) -> Cell {
    Cell::Exclusive(Mutex::new(instance))
}

fn shared_cell<T: Send + Sync + 'static>(instance: Instance) -> Cell {
    let instance: Box<T> = instance
        .downcast()
        .expect("an actor's instance has its class's type");
    Cell::Shared(RwLock::new(instance))
}

/// An actor class: how to make an instance and its methods by name.
#[derive(Clone)]
pub(crate) struct ClassDef {
    construct: ConstructFn,
    /// Puts a new instance into its cell: a `Mutex`, or an `RwLock` once
    /// the class has a shared method (only then is `T: Sync` known).
    cell: fn(Instance) -> Cell,
    methods: HashMap<String, MethodFn>,
}

/// An actor class being registered: add its methods with
/// [`method`](ActorClass::method) (on `&mut T`) and
/// [`method_shared`](ActorClass::method_shared) (on `&T`).
///
/// ```no_run
/// # fn f(worker: &mut ember::Worker) {
/// use std::sync::atomic::{AtomicI64, Ordering};
///
/// struct Counter { n: AtomicI64, label: String }
/// worker
///     .register_actor("Counter", |start: i64| {
///         Ok::<_, String>(Counter { n: AtomicI64::new(start), label: String::new() })
///     })
///     .method_shared("incr", |c: &Counter, by: i64| -> Result<i64, String> {
///         Ok(c.n.fetch_add(by, Ordering::SeqCst) + by)
///     })
///     .method("relabel", |c: &mut Counter, label: String| -> Result<(), String> {
///         c.label = label;
///         Ok(())
///     });
/// # }
/// ```
pub struct ActorClass<'w, T> {
    class: &'w mut ClassDef,
    name: String,
    _instance: PhantomData<fn() -> T>,
}

impl<T: Send + 'static> ActorClass<'_, T> {
    /// Serve `f` as the method `name`: it gets the instance (`&mut T`) and
    /// the call's arguments. Methods run on tokio's blocking thread pool
    /// (they may block). An exclusive method runs alone: it starts once the
    /// calls before it have ended, and the calls after it wait for it.
    pub fn method<Args, F: MethodHandler<T, Args>>(self, name: impl Into<String>, f: F) -> Self {
        let method: ExclusiveFn = Arc::new(move |instance: &mut dyn Any, args| {
            let instance = instance
                .downcast_mut::<T>()
                .expect("an actor's instance has its class's type");
            f.invoke(instance, args)
        });
        self.class
            .methods
            .insert(name.into(), MethodFn::Exclusive(method));
        self
    }

    /// The class's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T: Send + Sync + 'static> ActorClass<'_, T> {
    /// Serve `f` as the shared method `name`: it gets the instance (`&T`)
    /// and the call's arguments. With the creation's `max_concurrency`
    /// N > 1, up to N calls of shared methods run at once (on tokio's
    /// blocking pool), in arrival order, never beside an exclusive one
    /// ([`method`](Self::method)); with 1 (the default), one call at a
    /// time like any method. Use interior mutability (atomics, a `Mutex`
    /// field) for state they change.
    pub fn method_shared<Args, F: SharedMethodHandler<T, Args>>(
        self,
        name: impl Into<String>,
        f: F,
    ) -> Self {
        let method: SharedFn = Arc::new(move |instance: &dyn Any, args| {
            let instance = instance
                .downcast_ref::<T>()
                .expect("an actor's instance has its class's type");
            f.invoke(instance, args)
        });
        self.class.cell = shared_cell::<T>;
        self.class
            .methods
            .insert(name.into(), MethodFn::Shared(method));
        self
    }
}

impl Worker {
    /// Serve the actor class `name`: `constructor` makes an instance from
    /// the creation's arguments; add methods on the returned
    /// [`ActorClass`]. Registering a name again replaces the class.
    pub fn register_actor<Args, T, C>(
        &mut self,
        name: impl Into<String>,
        constructor: C,
    ) -> ActorClass<'_, T>
    where
        T: Send + 'static,
        C: Constructor<Args, T>,
    {
        let name = name.into();
        let construct: ConstructFn =
            Arc::new(move |args| Ok(Box::new(constructor.construct(args)?) as Instance));
        self.classes.insert(
            name.clone(),
            ClassDef {
                construct,
                cell: exclusive_cell,
                methods: HashMap::new(),
            },
        );
        ActorClass {
            class: self.classes.get_mut(&name).expect("just inserted"),
            name,
            _instance: PhantomData,
        }
    }

    /// The actor classes registered so far, sorted.
    pub fn class_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.classes.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The actors a serving connection hosts.
pub(crate) struct Actors {
    classes: HashMap<String, Arc<ClassDef>>,
    live: Mutex<HashMap<ActorId, Arc<Hosted>>>,
    /// Where the queues are drained (its blocking pool).
    runtime: tokio::runtime::Handle,
}

/// One actor hosted here.
struct Hosted {
    id: ActorId,
    class_name: String,
    class: Arc<ClassDef>,
    /// Calls that may run at once (the creation's `max_concurrency`, at
    /// least 1).
    max_concurrency: usize,
    state: Mutex<HostedState>,
}

#[derive(Default)]
struct HostedState {
    /// The instance; `None` until the constructor ran, and once dropped
    /// (running calls hold their own `Arc` of it).
    cell: Option<Arc<Cell>>,
    /// Work not started yet, in arrival order.
    queue: VecDeque<Work>,
    /// Work started and not ended (each on a blocking-pool thread).
    running: usize,
    /// The running work is exclusive (the constructor or a `&mut T`
    /// method): nothing else starts.
    exclusive_running: bool,
    /// Dropped by the node (or replaced by a new creation): the instance
    /// goes, queued work is not run.
    dropped: bool,
    /// The constructor's error, when it failed: the answer to any call.
    failed: Option<Failure>,
}

enum Work {
    Create {
        args: std::result::Result<Vec<Encoded>, Failure>,
        task: Task,
    },
    Call {
        method: String,
        /// Not a shared method: runs alone.
        exclusive: bool,
        args: std::result::Result<Vec<Encoded>, Failure>,
        task: Task,
    },
}

impl Work {
    fn exclusive(&self) -> bool {
        match self {
            Work::Create { .. } => true,
            Work::Call { exclusive, .. } => *exclusive,
        }
    }
}

impl HostedState {
    /// Take the queued work that may start now, in order (the first that
    /// may not holds back the rest), counting it as running.
    fn startable(&mut self, max_concurrency: usize) -> Vec<Work> {
        let mut start = Vec::new();
        while let Some(front) = self.queue.front() {
            let exclusive = front.exclusive();
            let may_start = if exclusive {
                self.running == 0
            } else {
                !self.exclusive_running && self.running < max_concurrency
            };
            if !may_start {
                break;
            }
            debug_assert!(!self.exclusive_running);
            self.running += 1;
            self.exclusive_running = exclusive;
            start.extend(self.queue.pop_front());
        }
        debug_assert!(self.running <= max_concurrency.max(1));
        start
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Actors {
    /// Must be called on a tokio runtime.
    pub fn new(classes: HashMap<String, ClassDef>) -> Self {
        Actors {
            classes: classes
                .into_iter()
                .map(|(name, class)| (name, Arc::new(class)))
                .collect(),
            live: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// An actor's creation or method call arrived (in the reader, in order).
    pub fn execute(self: &Arc<Self>, shared: &Arc<Shared>, spec: v1::TaskSpec) {
        let Ok(task_id) = TaskId::from_bytes(&spec.task_id) else {
            tracing::warn!("ExecuteTask with a malformed task id");
            return;
        };
        let class_name = spec
            .function
            .as_ref()
            .map(|f| f.name.clone())
            .unwrap_or_default();
        let task = |name: String| Task {
            shared: shared.clone(),
            task_id,
            num_returns: spec.num_returns,
            name,
        };
        let args = task_args(&spec);
        if let Some(creation) = &spec.actor_creation {
            let task = task(format!("{class_name}.__init__"));
            let Ok(id) = ActorId::from_bytes(&creation.actor_id) else {
                return task.finish(Err(Failure::task(
                    "ActorError",
                    "the actor creation has no valid actor id",
                    String::new(),
                )));
            };
            let Some(class) = self.classes.get(&class_name).cloned() else {
                let mut names: Vec<&str> = self.classes.keys().map(String::as_str).collect();
                names.sort_unstable();
                return task.finish(Err(Failure {
                    kind: ErrorKind::UnknownFunction,
                    type_name: "UnknownActorClass".into(),
                    message: format!(
                        "this Rust worker does not serve the actor class {class_name:?} \
                         (it serves: {})",
                        names.join(", ")
                    ),
                    traceback: String::new(),
                    passed_on: None,
                }));
            };
            let hosted = Arc::new(Hosted {
                id,
                class_name,
                class,
                // 0 is the default: one at a time (Rust has no async actors).
                max_concurrency: creation.max_concurrency.max(1) as usize,
                state: Mutex::new(HostedState::default()),
            });
            // A creation for an id held here already (a restart on this
            // process): the old instance goes.
            if let Some(old) = lock(&self.live).insert(id, hosted.clone()) {
                old.drop_instance();
            }
            hosted.push(self, Work::Create { args, task });
            return;
        }
        let method = spec.method_name.clone();
        let task = task(format!("{class_name}.{method}"));
        let hosted = ActorId::from_bytes(&spec.actor_id)
            .ok()
            .and_then(|id| lock(&self.live).get(&id).cloned());
        match hosted {
            Some(hosted) => {
                let exclusive =
                    !matches!(hosted.class.methods.get(&method), Some(MethodFn::Shared(_)));
                hosted.push(
                    self,
                    Work::Call {
                        method,
                        exclusive,
                        args,
                        task,
                    },
                )
            }
            None => task.finish(Err(Failure {
                kind: ErrorKind::ActorDied,
                type_name: "ActorNotFound".into(),
                message: format!(
                    "actor {} ({class_name}) is not hosted by this Rust worker \
                     (dropped, or never created here): cannot run {method:?}",
                    hex::encode(&spec.actor_id)
                ),
                traceback: String::new(),
                passed_on: None,
            })),
        }
    }

    /// `NodeOp.drop_actor`: the actor was killed or its owner exited.
    pub fn drop_actor(&self, actor_id: &[u8]) {
        let Ok(id) = ActorId::from_bytes(actor_id) else {
            return;
        };
        let hosted = lock(&self.live).remove(&id);
        if let Some(hosted) = hosted {
            hosted.drop_instance();
        }
    }

    /// Forget `hosted` if it is still the instance of its id.
    fn forget(&self, hosted: &Arc<Hosted>) {
        let mut live = lock(&self.live);
        if live.get(&hosted.id).is_some_and(|h| Arc::ptr_eq(h, hosted)) {
            live.remove(&hosted.id);
        }
    }
}

impl Hosted {
    /// Queue work; start what may start.
    fn push(self: &Arc<Self>, actors: &Arc<Actors>, work: Work) {
        let start = {
            let mut st = lock(&self.state);
            if let Some(f) = st.failed.clone() {
                drop(st);
                let (Work::Create { task, .. } | Work::Call { task, .. }) = work;
                return task.finish(Err(f));
            }
            if st.dropped {
                drop(st);
                return self.discard(work);
            }
            st.queue.push_back(work);
            st.startable(self.max_concurrency)
        };
        for work in start {
            self.spawn_runner(actors, work);
        }
    }

    fn spawn_runner(self: &Arc<Self>, actors: &Arc<Actors>, work: Work) {
        let this = self.clone();
        let runner_actors = actors.clone();
        actors
            .runtime
            .spawn_blocking(move || this.run(&runner_actors, work));
    }

    /// Run `work`, then (on this thread) the next work that may start once
    /// it ended, until none may; more that may start get threads of their
    /// own.
    fn run(self: Arc<Self>, actors: &Arc<Actors>, mut work: Work) {
        loop {
            let exclusive = work.exclusive();
            self.execute(actors, work);
            let start = {
                let mut st = lock(&self.state);
                st.running -= 1;
                if exclusive {
                    st.exclusive_running = false;
                }
                st.startable(self.max_concurrency)
            };
            let mut start = start.into_iter();
            let Some(next) = start.next() else { return };
            for other in start {
                self.spawn_runner(actors, other);
            }
            work = next;
        }
    }

    /// Work that arrived for a dropped actor: not run. A creation is
    /// answered (the node counts it against the process's concurrency
    /// until it is); a call is the node's to fail or send again.
    fn discard(&self, work: Work) {
        if let Work::Create { task, .. } = work {
            task.finish(Err(Failure {
                kind: ErrorKind::ActorDied,
                type_name: "ActorDropped".into(),
                message: format!(
                    "actor {} ({}) was dropped before its constructor ran",
                    self.id, self.class_name
                ),
                traceback: String::new(),
                passed_on: None,
            }));
        }
    }

    /// Drop the instance and the calls not started: the node has failed
    /// them or sends them again after a restart, and ignores answers to
    /// them. A call running now finishes unanswered; the instance is
    /// dropped when the last running call ends (here, when none runs).
    fn drop_instance(&self) {
        let (cell, queue) = {
            let mut st = lock(&self.state);
            st.dropped = true;
            (st.cell.take(), std::mem::take(&mut st.queue))
        };
        for work in queue {
            self.discard(work);
        }
        drop(cell);
    }

    fn execute(self: &Arc<Self>, actors: &Actors, work: Work) {
        match work {
            Work::Create { args, task } => self.create(actors, args, task),
            Work::Call {
                method, args, task, ..
            } => {
                let cell = lock(&self.state).cell.clone();
                let outcome = self.call(cell.as_deref(), &method, args);
                let answer = {
                    let st = lock(&self.state);
                    match (&st.failed, st.dropped) {
                        (Some(f), _) => Some(Err(f.clone())),
                        // A dropped actor's calls are the node's to fail
                        // or send again: no answer.
                        (None, true) => None,
                        (None, false) => Some(outcome),
                    }
                };
                if let Some(answer) = answer {
                    task.finish(answer);
                }
                // A dropped actor's instance goes here when this was its
                // last running call, outside the lock.
                drop(cell);
            }
        }
    }

    fn create(
        self: &Arc<Self>,
        actors: &Actors,
        args: std::result::Result<Vec<Encoded>, Failure>,
        task: Task,
    ) {
        let made = args.and_then(|args| {
            let construct = &self.class.construct;
            std::panic::catch_unwind(AssertUnwindSafe(|| construct(args)))
                .unwrap_or_else(|payload| Err(Failure::panic(payload)))
        });
        match made {
            Ok(instance) => {
                let cell = Arc::new((self.class.cell)(instance));
                // The creation's one return: nil.
                task.finish(Ok(Encoded {
                    format: v1::ValueFormat::Msgpack,
                    data: bytes::Bytes::from_static(&[0xc0]),
                }));
                let mut st = lock(&self.state);
                if !st.dropped {
                    st.cell = Some(cell);
                    return;
                }
                drop(st);
                // Dropped while the constructor ran: the instance goes now.
                drop(cell);
            }
            Err(f) => {
                task.finish(Err(f.clone()));
                // No instance: the node gives later calls the
                // constructor's error, and any queued here get it too.
                let queued = {
                    let mut st = lock(&self.state);
                    st.dropped = true;
                    st.failed = Some(f.clone());
                    std::mem::take(&mut st.queue)
                };
                for work in queued {
                    let (Work::Create { task, .. } | Work::Call { task, .. }) = work;
                    task.finish(Err(f.clone()));
                }
                actors.forget(self);
            }
        }
    }

    fn call(
        &self,
        cell: Option<&Cell>,
        method: &str,
        args: std::result::Result<Vec<Encoded>, Failure>,
    ) -> Outcome {
        let Some(cell) = cell else {
            return Err(Failure {
                kind: ErrorKind::ActorDied,
                type_name: "ActorNotFound".into(),
                message: format!(
                    "actor {} ({}) has no instance here (dropped, or its constructor failed): \
                     cannot run {method:?}",
                    self.id, self.class_name
                ),
                traceback: String::new(),
                passed_on: None,
            });
        };
        let Some(f) = self.class.methods.get(method) else {
            let mut names: Vec<&str> = self.class.methods.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(Failure {
                kind: ErrorKind::UnknownFunction,
                type_name: "UnknownMethod".into(),
                message: format!(
                    "the Rust actor class {:?} has no method {method:?} (it has: {})",
                    self.class_name,
                    names.join(", ")
                ),
                traceback: String::new(),
                passed_on: None,
            });
        };
        let args = args?;
        // A panic unwinds out of the lock (poisoning it; see `Cell`).
        std::panic::catch_unwind(AssertUnwindSafe(|| match f {
            MethodFn::Exclusive(f) => cell.exclusive(|instance| f(instance, args)),
            MethodFn::Shared(f) => cell.shared(|instance| f(instance, args)),
        }))
        .unwrap_or_else(|payload| Err(Failure::panic(payload)))
    }
}
