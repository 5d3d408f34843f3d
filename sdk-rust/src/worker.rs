//! Serving Rust functions by name: [`Worker`].
//!
//! A worker connects like a client (`Hello{DRIVER, RUST}`), tells the node
//! which functions it serves (`ServeFunctions{RUST, names, concurrency}`)
//! and runs the `ExecuteTask`s the node sends (at most `concurrency` at a
//! time), answering each with `TaskFinished`. A function's `Err` or panic
//! becomes an `ERROR` value (`TaskError{TASK_FAILED, type_name, message,
//! traceback, language: RUST, function_name}`) in every return. A return
//! over the inline limit goes into the node's shared memory; a worker
//! without it (over gRPC) returns values inline only, up to 16 MiB, and
//! fails a larger one with `INVALID_ARGUMENT`.
//!
//! It may host actors of the classes registered with
//! [`Worker::register_actor`] too (named in `ServeFunctions.actor_classes`;
//! see `host`): their creations and calls arrive as `ExecuteTask`s and go
//! to the actor's queue instead.

use std::collections::{HashMap, VecDeque};
use std::fmt::{Debug, Display};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ember_proto::v1::{self, client_op, object_value::Body, ErrorKind, ValueFormat};
use ember_proto::{ObjectId, TaskId};
use futures::FutureExt;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, encode_flagged, Encoded};
use crate::conn::{HostOp, Shared};
use crate::host::{Actors, ClassDef};
use crate::session::Options;
use crate::{Client, Error, Result};

/// Why a task failed, before it becomes a `TaskError`.
#[derive(Clone)]
pub struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) type_name: String,
    pub(crate) message: String,
    pub(crate) traceback: String,
    /// An argument was an error value: it is passed on as it is.
    pub(crate) passed_on: Option<Bytes>,
}

impl Failure {
    pub(crate) fn task(
        type_name: impl Into<String>,
        message: impl Into<String>,
        traceback: String,
    ) -> Self {
        Failure {
            kind: ErrorKind::TaskFailed,
            type_name: type_name.into(),
            message: message.into(),
            traceback,
            passed_on: None,
        }
    }

    /// A failure from the function's error value.
    pub fn from_error<E: Display + Debug>(err: &E) -> Self {
        Failure::task(
            std::any::type_name::<E>(),
            err.to_string(),
            format!("{err:?}"),
        )
    }

    pub(crate) fn panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "the function panicked".to_string()
        };
        Failure::task("panic", message.clone(), format!("panicked: {message}"))
    }
}

/// What running a function gives: its encoded return value (msgpack, or
/// an Arrow IPC stream for a [`Table`](crate::Table)), or why not.
pub type Outcome = std::result::Result<Encoded, Failure>;

type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A synchronous function of `Args` (a tuple of its argument types):
/// implemented for `Fn(A, B, ...) -> Result<R, E>` (up to 8 arguments)
/// where the arguments are `DeserializeOwned`, `R: Serialize` and
/// `E: Display + Debug`. An argument or result of type
/// [`Table`](crate::Table) is an `ARROW` value.
pub trait SyncHandler<Args>: Send + Sync + 'static {
    /// Decode the arguments (msgpack, raw or Arrow), run, encode the result.
    fn invoke(&self, args: Vec<Encoded>) -> Outcome;
}

/// An async function of `Args`: `Fn(A, B, ...) -> impl Future<Output =
/// Result<R, E>>` (up to 8 arguments), with the bounds of [`SyncHandler`].
pub trait AsyncHandler<Args>: Send + Sync + 'static {
    fn invoke(&self, args: Vec<Encoded>) -> BoxFuture;
}

pub(crate) fn check_arity(got: usize, want: usize) -> std::result::Result<(), Failure> {
    if got == want {
        Ok(())
    } else {
        Err(Failure::task(
            "ArgumentError",
            format!("the function takes {want} arguments, the call passed {got}"),
            String::new(),
        ))
    }
}

pub(crate) fn decode_arg<A: DeserializeOwned>(
    arg: &Encoded,
    index: usize,
) -> std::result::Result<A, Failure> {
    decode(arg.format, &arg.data).map_err(|e| {
        Failure::task(
            "ArgumentError",
            format!("argument {index}: {e}"),
            String::new(),
        )
    })
}

pub(crate) fn encode_result<R: Serialize>(r: &R) -> Outcome {
    let mut arrow = false;
    match encode_flagged(r, &mut arrow) {
        Ok(data) => Ok(Encoded {
            format: if arrow {
                ValueFormat::Arrow
            } else {
                ValueFormat::Msgpack
            },
            data: Bytes::from(data),
        }),
        Err(e) => Err(Failure::task(
            "ReturnValueError",
            format!("cannot encode the return value: {e}"),
            String::new(),
        )),
    }
}

/// The arguments of a call decoded into the tuple `($($A,)*)` (their count
/// checked first): `Result<_, Failure>`.
macro_rules! decode_args {
    ($args:expr, $n:expr; $($A:ident),*) => {
        (|| -> std::result::Result<_, $crate::worker::Failure> {
            $crate::worker::check_arity($args.len(), $n)?;
            let mut it = $args.iter().enumerate();
            Ok(($({
                let (i, data) = it.next().expect("arity checked");
                $crate::worker::decode_arg::<$A>(data, i)?
            },)*))
        })()
    };
}
pub(crate) use decode_args;

/// A function's result as the call's outcome.
pub(crate) fn outcome<R: Serialize, E: Display + Debug>(r: std::result::Result<R, E>) -> Outcome {
    match r {
        Ok(r) => encode_result(&r),
        Err(e) => Err(Failure::from_error(&e)),
    }
}

macro_rules! handlers {
    ($n:expr; $($A:ident),*) => {
        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<Func, R, E, $($A),*> SyncHandler<($($A,)*)> for Func
        where
            Func: Fn($($A),*) -> std::result::Result<R, E> + Send + Sync + 'static,
            R: Serialize,
            E: Display + Debug,
            $($A: DeserializeOwned,)*
        {
            fn invoke(&self, args: Vec<Encoded>) -> Outcome {
                let ($($A,)*) = decode_args!(args, $n; $($A),*)?;
                outcome(self($($A),*))
            }
        }

        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<Func, Fut, R, E, $($A),*> AsyncHandler<($($A,)*)> for Func
        where
            Func: Fn($($A),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
            R: Serialize,
            E: Display + Debug,
            $($A: DeserializeOwned,)*
        {
            fn invoke(&self, args: Vec<Encoded>) -> BoxFuture {
                let ($($A,)*) = match decode_args!(args, $n; $($A),*) {
                    Ok(a) => a,
                    Err(f) => return Box::pin(std::future::ready(Err(f))),
                };
                let fut = self($($A),*);
                Box::pin(async move {
                    match fut.await {
                        Ok(r) => encode_result(&r),
                        Err(e) => Err(Failure::from_error(&e)),
                    }
                })
            }
        }
    };
}

handlers!(0;);
handlers!(1; A1);
handlers!(2; A1, A2);
handlers!(3; A1, A2, A3);
handlers!(4; A1, A2, A3, A4);
handlers!(5; A1, A2, A3, A4, A5);
handlers!(6; A1, A2, A3, A4, A5, A6);
handlers!(7; A1, A2, A3, A4, A5, A6, A7);
handlers!(8; A1, A2, A3, A4, A5, A6, A7, A8);

type SyncFn = Arc<dyn Fn(Vec<Encoded>) -> Outcome + Send + Sync>;
type AsyncFn = Arc<dyn Fn(Vec<Encoded>) -> BoxFuture + Send + Sync>;

#[derive(Clone)]
enum Handler {
    /// Runs on tokio's blocking pool (or, once its calls proved fast, on
    /// the runtime's threads).
    Blocking(SyncFn, Arc<Timing>),
    /// Runs as a tokio task.
    Async(AsyncFn),
}

/// Functions served by name. Register them, then [`serve`](Worker::serve).
///
/// ```no_run
/// # async fn f() -> ember::Result<()> {
/// let mut worker = ember::Worker::new();
/// worker.register("add", |a: i64, b: i64| Ok::<_, String>(a + b));
/// worker.register_async("shout", |s: String| async move { Ok::<_, String>(s.to_uppercase()) });
/// worker.serve(ember::ServeOptions::default()).await
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Worker {
    functions: HashMap<String, Handler>,
    /// Actor classes by name (see [`Worker::register_actor`]).
    pub(crate) classes: HashMap<String, ClassDef>,
}

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where to connect (as for [`Client::connect`]).
    pub connect: Options,
    /// Function calls (and actor constructors) run at once (default 64).
    /// Actor method calls are not counted: each actor runs as many at once
    /// as its `max_concurrency` allows (one by default), and different
    /// actors side by side.
    pub concurrency: u32,
    /// Run a sync function whose calls proved fast (under 20 µs on
    /// average, the last under 200 µs) on the runtime's threads instead of
    /// the blocking pool, saving a thread hand-off per call (default true).
    /// Turn it off for functions that are usually fast but may block long.
    pub inline_fast: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            connect: Options::default(),
            concurrency: 64,
            inline_fast: true,
        }
    }
}

impl ServeOptions {
    pub fn new(connect: Options) -> Self {
        ServeOptions {
            connect,
            ..Default::default()
        }
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n.max(1);
        self
    }
}

impl Worker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve a synchronous function under `name` (it runs on tokio's
    /// blocking thread pool, so it may block).
    pub fn register<Args, F: SyncHandler<Args>>(
        &mut self,
        name: impl Into<String>,
        f: F,
    ) -> &mut Self {
        let f = Arc::new(f);
        self.functions.insert(
            name.into(),
            Handler::Blocking(
                Arc::new(move |args| f.invoke(args)),
                Arc::new(Timing::default()),
            ),
        );
        self
    }

    /// Serve an async function under `name` (it runs as a tokio task).
    pub fn register_async<Args, F: AsyncHandler<Args>>(
        &mut self,
        name: impl Into<String>,
        f: F,
    ) -> &mut Self {
        let f = Arc::new(f);
        self.functions.insert(
            name.into(),
            Handler::Async(Arc::new(move |args| f.invoke(args))),
        );
        self
    }

    /// The names registered so far, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.functions.keys().cloned().collect();
        names.sort();
        names
    }

    /// Connect and serve until the connection closes (an error) or the
    /// node goes away.
    pub async fn serve(self, options: ServeOptions) -> Result<()> {
        let serving = self.start(options).await?;
        Err(serving.closed().await)
    }

    /// Connect, start serving, and return a handle (serving stops when it
    /// is dropped or [`Serving::stop`]ped).
    pub async fn start(self, options: ServeOptions) -> Result<Serving> {
        if self.functions.is_empty() && self.classes.is_empty() {
            return Err(Error::InvalidArgument(
                "the worker has no functions or actor classes to serve (register some first)"
                    .into(),
            ));
        }
        let client = Client::connect(options.connect.clone()).await?;
        let names = self.names();
        let actor_classes = self.class_names();
        let base = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let max = options.concurrency.max(1) as usize;
        let functions = Functions {
            inline_fast: options.inline_fast,
            handlers: self.functions,
            actors: Arc::new(Actors::new(self.classes)),
            executor: Arc::new(Executor {
                state: Mutex::new(ExecState::default()),
                runtime: tokio::runtime::Handle::current(),
                base: base.min(max),
                max,
            }),
        };
        let hook = move |shared: &Arc<Shared>, op: HostOp| match op {
            HostOp::Execute(exec) => execute(shared, &functions, exec),
            HostOp::DropActor(kill) => functions.actors.drop_actor(&kill.actor_id),
        };
        if client.shared.exec.set(Box::new(hook)).is_err() {
            return Err(Error::InvalidArgument(
                "this connection serves already".into(),
            ));
        }
        client
            .shared
            .send_op(client_op::Op::ServeFunctions(v1::ServeFunctions {
                language: v1::Language::Rust as i32,
                names,
                concurrency: options.concurrency.max(1),
                actor_classes,
            }));
        // Once the node answers a later request, it serves the names: a
        // call made after `start` returns finds them.
        client.shared.cluster_status().await?;
        Ok(Serving { client })
    }
}

/// A worker serving its functions.
pub struct Serving {
    client: Client,
}

impl Serving {
    /// The worker's connection, also a client (to call and put).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Stop serving: the connection closes; tasks still running are
    /// retried elsewhere by the node.
    pub async fn stop(self) {
        self.client.close();
        let _ = self.client.closed().await;
    }

    /// Resolves when the connection closes, with the reason.
    pub async fn closed(&self) -> Error {
        self.client.closed().await
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.client.close();
    }
}

/// The arguments (msgpack, raw or Arrow) of a task, or the failure it
/// stands for.
pub(crate) fn task_args(spec: &v1::TaskSpec) -> std::result::Result<Vec<Encoded>, Failure> {
    let mut out = Vec::with_capacity(spec.args.len());
    for (i, arg) in spec.args.iter().enumerate() {
        let Some(value) = &arg.value else {
            return Err(Failure::task(
                "ArgumentError",
                format!("argument {i} arrived without a value"),
                String::new(),
            ));
        };
        let data = match &value.body {
            Some(Body::InlineData(d)) => d.clone(),
            None => Bytes::new(),
            Some(_) => {
                return Err(Failure::task(
                    "ArgumentError",
                    format!("argument {i} arrived in shared memory, not inline"),
                    String::new(),
                ))
            }
        };
        match ValueFormat::try_from(value.format).unwrap_or(ValueFormat::FormatUnspecified) {
            format @ (ValueFormat::Msgpack | ValueFormat::Raw | ValueFormat::Arrow) => {
                out.push(Encoded { format, data })
            }
            ValueFormat::Error => {
                return Err(Failure {
                    kind: ErrorKind::TaskFailed,
                    type_name: String::new(),
                    message: String::new(),
                    traceback: String::new(),
                    passed_on: Some(data),
                })
            }
            other => {
                return Err(Failure::task(
                    "ArgumentError",
                    format!(
                        "argument {i} is a {} value, which Rust functions cannot read",
                        other.as_str_name()
                    ),
                    String::new(),
                ))
            }
        }
    }
    Ok(out)
}

fn execute(shared: &Arc<Shared>, functions: &Functions, exec: v1::ExecuteTask) {
    let Some(spec) = exec.spec else { return };
    if spec.actor_creation.is_some() || !spec.actor_id.is_empty() {
        return functions.actors.execute(shared, spec);
    }
    let Ok(task_id) = TaskId::from_bytes(&spec.task_id) else {
        tracing::warn!("ExecuteTask with a malformed task id");
        return;
    };
    let name = spec
        .function
        .as_ref()
        .map(|f| f.name.clone())
        .unwrap_or_default();
    let num_returns = spec.num_returns;
    let handler = functions.handlers.get(&name).cloned();
    let args = task_args(&spec);
    let task = Task {
        shared: shared.clone(),
        task_id,
        num_returns,
        name,
    };
    match (handler, args) {
        (_, Err(f)) => task.finish(Err(f)),
        (None, _) => {
            let message = format!("this Rust worker does not serve {:?}", task.name);
            task.finish(Err(Failure {
                kind: ErrorKind::UnknownFunction,
                type_name: "UnknownFunction".into(),
                message,
                traceback: String::new(),
                passed_on: None,
            }))
        }
        (Some(Handler::Blocking(f, timing)), Ok(args)) => {
            let inline = functions.inline_fast && timing.is_fast();
            let job = Job {
                f,
                args,
                task,
                timing,
            };
            if inline {
                // Proved fast: run it here, in the connection's reader.
                job.run();
            } else {
                functions.executor.submit(job);
            }
        }
        (Some(Handler::Async(f)), Ok(args)) => {
            let mut fut = match std::panic::catch_unwind(AssertUnwindSafe(|| f(args))) {
                Ok(fut) => fut,
                Err(payload) => return task.finish(Err(Failure::panic(payload))),
            };
            // Poll once here: a function that does not wait finishes
            // without a task of its own. One that waits is spawned, and
            // polled again there (with the task's waker).
            let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
            match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                Ok(std::task::Poll::Ready(outcome)) => task.finish(outcome),
                Ok(std::task::Poll::Pending) => {
                    tokio::spawn(async move {
                        let outcome = match AssertUnwindSafe(fut).catch_unwind().await {
                            Ok(outcome) => outcome,
                            Err(payload) => Err(Failure::panic(payload)),
                        };
                        task.finish(outcome);
                    });
                }
                Err(payload) => task.finish(Err(Failure::panic(payload))),
            }
        }
    }
}

/// A task being run: where its answer goes.
pub(crate) struct Task {
    pub shared: Arc<Shared>,
    pub task_id: TaskId,
    pub num_returns: u32,
    /// The function (or `class.method`) the task runs, for its errors.
    pub name: String,
}

impl Task {
    /// Send the task's result (from any thread). A return too large to go
    /// inline is written into shared memory first, on the runtime (a
    /// worker without shared memory fails it: see `small_returns`).
    pub(crate) fn finish(self, outcome: Outcome) {
        match small_returns(
            &self.shared,
            self.task_id,
            self.num_returns,
            &self.name,
            outcome,
        ) {
            Ok(returns) => self.send(returns),
            Err(data) => {
                let handle = self.shared.runtime.clone();
                handle.spawn(async move {
                    let returns = large_return(&self.shared, self.task_id, &self.name, data).await;
                    self.send(returns);
                });
            }
        }
    }

    fn send(self, returns: Vec<v1::ObjectValue>) {
        self.shared
            .counters
            .tasks_executed
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .send_op(client_op::Op::TaskFinished(v1::TaskFinished {
                task_id: self.task_id.to_vec().into(),
                returns,
                ..Default::default()
            }));
    }
}

/// A sync function's call waiting for a thread.
struct Job {
    f: SyncFn,
    args: Vec<Encoded>,
    task: Task,
    timing: Arc<Timing>,
}

impl Job {
    fn run(self) {
        let f = self.f;
        let args = self.args;
        let start = Instant::now();
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(move || f(args))) {
            Ok(outcome) => outcome,
            Err(payload) => Err(Failure::panic(payload)),
        };
        self.timing.record(start.elapsed());
        self.task.finish(outcome);
    }
}

/// How long a sync function's calls take: an average (1/8 weight to the
/// newest call) and the last one.
struct Timing {
    average_ns: AtomicU64,
    last_ns: AtomicU64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            average_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(u64::MAX),
        }
    }
}

/// A sync function runs on the runtime's threads when its calls took
/// under this on average...
const FAST_AVERAGE_NS: u64 = 20_000;
/// ...and the last one under this.
const FAST_LAST_NS: u64 = 200_000;

impl Timing {
    fn record(&self, took: Duration) {
        let ns = took.as_nanos().min(u64::MAX as u128 / 2) as u64;
        let avg = self.average_ns.load(Ordering::Relaxed);
        let avg = if avg == u64::MAX {
            ns
        } else {
            avg - avg / 8 + ns / 8
        };
        self.average_ns.store(avg, Ordering::Relaxed);
        self.last_ns.store(ns, Ordering::Relaxed);
    }

    fn is_fast(&self) -> bool {
        self.average_ns.load(Ordering::Relaxed) < FAST_AVERAGE_NS
            && self.last_ns.load(Ordering::Relaxed) < FAST_LAST_NS
    }
}

/// Runs sync functions on tokio's blocking pool without a thread hand-off
/// per task: up to `base` runner threads (one per CPU) drain a queue and
/// end when it is empty. When the queue makes no progress for a
/// millisecond (the functions block), more runners start, up to the
/// worker's concurrency, so blocking functions still run side by side.
struct Executor {
    state: Mutex<ExecState>,
    runtime: tokio::runtime::Handle,
    base: usize,
    max: usize,
}

#[derive(Default)]
struct ExecState {
    queue: VecDeque<Job>,
    runners: usize,
    /// Jobs taken from the queue so far.
    taken: u64,
    monitoring: bool,
}

impl Executor {
    fn lock(&self) -> std::sync::MutexGuard<'_, ExecState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(self: &Arc<Self>, job: Job) {
        let mut st = self.lock();
        st.queue.push_back(job);
        if st.runners < self.base {
            st.runners += 1;
            drop(st);
            self.spawn_runner();
        } else if !st.monitoring && st.runners < self.max {
            st.monitoring = true;
            drop(st);
            let this = self.clone();
            self.runtime.spawn(async move { this.monitor().await });
        }
    }

    fn spawn_runner(self: &Arc<Self>) {
        let this = self.clone();
        self.runtime.spawn_blocking(move || this.run());
    }

    fn run(&self) {
        loop {
            let job = {
                let mut st = self.lock();
                match st.queue.pop_front() {
                    Some(job) => {
                        st.taken += 1;
                        job
                    }
                    None => {
                        st.runners -= 1;
                        return;
                    }
                }
            };
            job.run();
        }
    }

    async fn monitor(self: Arc<Self>) {
        loop {
            let seen = self.lock().taken;
            tokio::time::sleep(Duration::from_millis(1)).await;
            let extra = {
                let mut st = self.lock();
                if st.queue.is_empty() || st.runners >= self.max {
                    st.monitoring = false;
                    return;
                }
                if st.taken != seen {
                    continue;
                }
                // No job started in a millisecond: the runners block.
                let extra = st.queue.len().min(self.max - st.runners);
                st.runners += extra;
                extra
            };
            for _ in 0..extra {
                self.spawn_runner();
            }
        }
    }
}

/// What a serving connection runs.
struct Functions {
    handlers: HashMap<String, Handler>,
    actors: Arc<Actors>,
    executor: Arc<Executor>,
    inline_fast: bool,
}

fn error_value(task_id: TaskId, name: &str, f: Failure) -> v1::ObjectValue {
    let data = match f.passed_on {
        Some(data) => data,
        None => v1::TaskError {
            kind: f.kind as i32,
            type_name: f.type_name,
            message: f.message,
            traceback: f.traceback,
            language: v1::Language::Rust as i32,
            payload: Bytes::new(),
            task_id: task_id.to_vec().into(),
            function_name: name.to_string(),
        }
        .encode_to_vec()
        .into(),
    };
    v1::ObjectValue {
        format: ValueFormat::Error as i32,
        body: Some(Body::InlineData(data)),
        ..Default::default()
    }
}

/// The task's return values: the result inline, or the same error value
/// for every return; `Err(data)` when the result is too large to go inline
/// and shared memory can take it (without shared memory, a result over the
/// inline limit is an `INVALID_ARGUMENT` error value).
fn small_returns(
    shared: &Shared,
    task_id: TaskId,
    num_returns: u32,
    name: &str,
    outcome: Outcome,
) -> std::result::Result<Vec<v1::ObjectValue>, Encoded> {
    let value = match (outcome, num_returns) {
        (_, 0) => return Ok(Vec::new()),
        (Ok(data), 1) => data,
        (Ok(_), n) => {
            let f = Failure::task(
                "ReturnValueError",
                format!("a Rust function returns one value; the call asked for {n}"),
                String::new(),
            );
            let v = error_value(task_id, name, f);
            return Ok(vec![v; n as usize]);
        }
        (Err(f), n) => {
            let v = error_value(task_id, name, f);
            return Ok(vec![v; n as usize]);
        }
    };
    let limit = shared.max_inline();
    if value.data.len() > limit {
        if shared.arena.is_some() {
            return Err(value);
        }
        // No shared memory (a worker connected over gRPC): a return can
        // only travel inline (`TaskFinished` carries values, not references
        // to stored objects), and the node refuses inline values over this.
        let f = Failure {
            kind: ErrorKind::InvalidArgument,
            type_name: "ReturnValueError".into(),
            message: format!(
                "the return value of {} bytes is larger than {limit} bytes, the most a worker \
                 connected without the node's shared memory (over gRPC) can return: returns \
                 travel inline; serve it from a worker on the node's machine for larger ones",
                value.data.len()
            ),
            traceback: String::new(),
            passed_on: None,
        };
        return Ok(vec![error_value(task_id, name, f)]);
    }
    Ok(vec![v1::ObjectValue {
        format: value.format as i32,
        body: Some(Body::InlineData(value.data)),
        ..Default::default()
    }])
}

/// A large return, written into shared memory (`small_returns` sends
/// none here without it).
async fn large_return(
    shared: &Shared,
    task_id: TaskId,
    name: &str,
    value: Encoded,
) -> Vec<v1::ObjectValue> {
    let id = ObjectId::for_return(task_id, 0);
    let Encoded { format, data } = value;
    match shared.write_shm(id, &data).await {
        Ok(Some(location)) => vec![v1::ObjectValue {
            format: format as i32,
            body: Some(Body::Shm(location)),
            ..Default::default()
        }],
        Ok(None) => vec![v1::ObjectValue {
            format: format as i32,
            body: Some(Body::InlineData(data)),
            ..Default::default()
        }],
        Err(e) => {
            let f = Failure {
                kind: e.kind(),
                type_name: "ObjectStoreError".into(),
                message: format!("cannot store the return value of {} bytes: {e}", data.len()),
                traceback: String::new(),
                passed_on: None,
            };
            vec![error_value(task_id, name, f)]
        }
    }
}
