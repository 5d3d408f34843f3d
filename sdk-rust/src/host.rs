//! Hosting actors in a serving [`Worker`]: classes registered with
//! [`Worker::register_actor`] (a constructor and methods on `&mut T`), the
//! instances this process holds by actor id, and a queue per instance that
//! runs its calls one at a time, in the order they arrived.
//!
//! The node sends an actor's creation as an `ExecuteTask` with
//! `spec.actor_creation` set (the class in `spec.function.name`), then its
//! method calls (`spec.actor_id`, `spec.method_name`) in submission order,
//! and `NodeOp.drop_actor` when the actor is killed or its owner exits.
//! Each instance's creation and calls go through its queue; a queue with
//! work is drained by one thread of tokio's blocking pool, so one actor's
//! calls never overlap while different actors run side by side.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt::{Debug, Display};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use ember_proto::v1::{self, ErrorKind};
use ember_proto::{ActorId, TaskId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::Encoded;
use crate::conn::Shared;
use crate::worker::{
    check_arity, decode_arg, encode_result, task_args, Failure, Outcome, Task, Worker,
};

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
                check_arity(args.len(), $n)?;
                let mut it = args.iter().enumerate();
                $(let $A: $A = {
                    let (i, data) = it.next().expect("arity checked");
                    decode_arg(data, i)?
                };)*
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
                check_arity(args.len(), $n)?;
                let mut it = args.iter().enumerate();
                $(let $A: $A = {
                    let (i, data) = it.next().expect("arity checked");
                    decode_arg(data, i)?
                };)*
                match self(instance, $($A),*) {
                    Ok(r) => encode_result(&r),
                    Err(e) => Err(Failure::from_error(&e)),
                }
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

/// An instance, type-erased.
type Instance = Box<dyn Any + Send>;
type ConstructFn =
    Arc<dyn Fn(Vec<Encoded>) -> std::result::Result<Instance, Failure> + Send + Sync>;
type MethodFn = Arc<dyn Fn(&mut Instance, Vec<Encoded>) -> Outcome + Send + Sync>;

/// An actor class: how to make an instance and its methods by name.
#[derive(Clone)]
pub(crate) struct ClassDef {
    construct: ConstructFn,
    methods: HashMap<String, MethodFn>,
}

/// An actor class being registered: add its methods with
/// [`method`](ActorClass::method).
///
/// ```no_run
/// # fn f(worker: &mut ember::Worker) {
/// struct Counter { n: i64 }
/// worker
///     .register_actor("Counter", |start: i64| Ok::<_, String>(Counter { n: start }))
///     .method("incr", |c: &mut Counter, by: i64| -> Result<i64, String> {
///         c.n += by;
///         Ok(c.n)
///     })
///     .method("get", |c: &mut Counter| Ok::<_, String>(c.n));
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
    /// (they may block), one at a time per actor.
    pub fn method<Args, F: MethodHandler<T, Args>>(self, name: impl Into<String>, f: F) -> Self {
        let method: MethodFn = Arc::new(move |instance: &mut Instance, args| {
            let instance = instance
                .downcast_mut::<T>()
                .expect("an actor's instance has its class's type");
            f.invoke(instance, args)
        });
        self.class.methods.insert(name.into(), method);
        self
    }

    /// The class's name.
    pub fn name(&self) -> &str {
        &self.name
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
    state: Mutex<HostedState>,
}

#[derive(Default)]
struct HostedState {
    /// The instance; `None` until the constructor ran, and while a call
    /// runs (the running call has it).
    instance: Option<Instance>,
    /// Work not started yet, in arrival order.
    queue: VecDeque<Work>,
    /// A blocking-pool thread drains the queue.
    running: bool,
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
        args: std::result::Result<Vec<Encoded>, Failure>,
        task: Task,
    },
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
            Some(hosted) => hosted.push(self, Work::Call { method, args, task }),
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
    /// Queue work; start a drainer if none runs.
    fn push(self: &Arc<Self>, actors: &Arc<Actors>, work: Work) {
        let mut st = lock(&self.state);
        st.queue.push_back(work);
        if !st.running {
            st.running = true;
            drop(st);
            let this = self.clone();
            let actors = actors.clone();
            actors
                .runtime
                .clone()
                .spawn_blocking(move || this.drain(&actors));
        }
    }

    /// Drop the instance and the calls not started: the node has failed
    /// them or sends them again after a restart, and ignores answers to
    /// them. A creation not started is answered (the node counts it
    /// against the process's concurrency until it is). A call running now
    /// finishes unanswered; its instance is dropped after it.
    fn drop_instance(&self) {
        let (instance, queue) = {
            let mut st = lock(&self.state);
            st.dropped = true;
            (st.instance.take(), std::mem::take(&mut st.queue))
        };
        for work in queue {
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
        drop(instance);
    }

    /// Run the queued work, one at a time, until the queue is empty.
    fn drain(self: Arc<Self>, actors: &Actors) {
        loop {
            let (work, mut instance) = {
                let mut st = lock(&self.state);
                match st.queue.pop_front() {
                    Some(work) => (work, st.instance.take()),
                    None => {
                        st.running = false;
                        return;
                    }
                }
            };
            match work {
                Work::Create { args, task } => {
                    let made = args.and_then(|args| {
                        let construct = &self.class.construct;
                        std::panic::catch_unwind(AssertUnwindSafe(|| construct(args)))
                            .unwrap_or_else(|payload| Err(Failure::panic(payload)))
                    });
                    match made {
                        Ok(made) => {
                            instance = Some(made);
                            // The creation's one return: nil.
                            task.finish(Ok(Encoded {
                                format: v1::ValueFormat::Msgpack,
                                data: bytes::Bytes::from_static(&[0xc0]),
                            }));
                        }
                        Err(f) => {
                            task.finish(Err(f.clone()));
                            // No instance: the node gives later calls the
                            // constructor's error, and any queued here get
                            // it too.
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
                            actors.forget(&self);
                            continue;
                        }
                    }
                }
                Work::Call { method, args, task } => {
                    let outcome = self.call(instance.as_mut(), &method, args);
                    let st = lock(&self.state);
                    match (&st.failed, st.dropped) {
                        (Some(f), _) => {
                            let f = f.clone();
                            drop(st);
                            task.finish(Err(f));
                        }
                        // A dropped actor's calls are the node's to fail
                        // or send again: no answer.
                        (None, true) => {}
                        (None, false) => {
                            drop(st);
                            task.finish(outcome);
                        }
                    }
                }
            }
            let mut st = lock(&self.state);
            if !st.dropped {
                st.instance = instance.take();
            }
            drop(st);
            // A dropped actor's instance goes here, outside the lock.
            drop(instance);
        }
    }

    fn call(
        &self,
        instance: Option<&mut Instance>,
        method: &str,
        args: std::result::Result<Vec<Encoded>, Failure>,
    ) -> Outcome {
        let Some(instance) = instance else {
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
        std::panic::catch_unwind(AssertUnwindSafe(|| f(instance, args)))
            .unwrap_or_else(|payload| Err(Failure::panic(payload)))
    }
}
