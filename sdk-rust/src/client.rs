//! The async client: call functions by name, put and get objects.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ember_proto::v1::{self, client_op, object_value::Body, ValueFormat};
use ember_proto::{ObjectId, TaskId};
use futures::stream::{FuturesUnordered, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::codec::{decode, encode_flagged};
use crate::conn::{self, NodeInfo, Out, Shared, Slot};
use crate::session::Options;
use crate::{Error, Language, Result, Table};

/// The largest value a remote client (gRPC, no shared memory) puts: it
/// travels by value on the stream (messages are split at 64 MiB, the limit
/// is 512 MiB) and the node copies it into its store.
pub const MAX_REMOTE_PUT_BYTES: usize = 256 << 20;

/// A function to call, named by language and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Function {
    pub language: Language,
    pub name: String,
}

impl Function {
    /// A Rust function served by a [`Worker`](crate::Worker).
    pub fn rust(name: impl Into<String>) -> Self {
        Function {
            language: Language::Rust,
            name: name.into(),
        }
    }

    /// A Go function served by a Go worker (`ember.ServeWorker`).
    pub fn go(name: impl Into<String>) -> Self {
        Function {
            language: Language::Go,
            name: name.into(),
        }
    }

    /// A Python function exported by name (`ember.cross_language.export`).
    pub fn python(name: impl Into<String>) -> Self {
        Function {
            language: Language::Python,
            name: name.into(),
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.language.as_str_name())
    }
}

/// Options of one call.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// Resources the task needs (`{"CPU": 1.0}`, custom ones...). `None`:
    /// 1 CPU for a Python function, nothing for Go and Rust functions
    /// (their serving process has its own capacity).
    pub resources: Option<HashMap<String, f64>>,
    /// Times the task is run again when the process running it dies
    /// (-1: without limit). Default 3.
    pub max_retries: i32,
    /// Retry when a Python function raises (within `max_retries`).
    pub retry_exceptions: bool,
    /// A display name (default: the function's name).
    pub name: Option<String>,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            resources: None,
            max_retries: 3,
            retry_exceptions: false,
            name: None,
        }
    }
}

impl CallOptions {
    pub fn resource(mut self, name: impl Into<String>, amount: f64) -> Self {
        self.resources
            .get_or_insert_with(HashMap::new)
            .insert(name.into(), amount);
        self
    }

    pub fn max_retries(mut self, n: i32) -> Self {
        self.max_retries = n;
        self
    }
}

/// One argument of a call: a value, or a reference to an object.
pub enum Arg {
    /// Canonical msgpack bytes.
    Value(Vec<u8>),
    /// An Arrow IPC stream (an `ARROW` value: a [`Table`](crate::Table)).
    Arrow(Vec<u8>),
    /// An object this process holds (passed by reference: the node
    /// resolves it before the task runs).
    Ref(ObjectId),
}

/// Something that can be one argument: any `Serialize` value (a
/// [`Table`](crate::Table) goes as an `ARROW` value, anything else as
/// msgpack), or an `&ObjectRef` (passed by reference).
pub trait IntoArg {
    fn into_arg(self) -> Result<Arg>;
}

impl<T: Serialize> IntoArg for T {
    fn into_arg(self) -> Result<Arg> {
        let mut arrow = false;
        let data = encode_flagged(&self, &mut arrow)?;
        Ok(if arrow {
            Arg::Arrow(data)
        } else {
            Arg::Value(data)
        })
    }
}

impl<U> IntoArg for &ObjectRef<U> {
    fn into_arg(self) -> Result<Arg> {
        Ok(Arg::Ref(self.id()))
    }
}

/// The arguments of a call: `()` for none, a tuple `(a,)`, `(a, b)`, ...
/// (up to 12), or a `Vec` of one type.
pub trait IntoArgs {
    fn into_args(self) -> Result<Vec<Arg>>;
}

impl IntoArgs for () {
    fn into_args(self) -> Result<Vec<Arg>> {
        Ok(Vec::new())
    }
}

impl<T: IntoArg> IntoArgs for Vec<T> {
    fn into_args(self) -> Result<Vec<Arg>> {
        self.into_iter().map(IntoArg::into_arg).collect()
    }
}

macro_rules! tuple_args {
    ($($name:ident),+) => {
        impl<$($name: IntoArg),+> IntoArgs for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_args(self) -> Result<Vec<Arg>> {
                let ($($name,)+) = self;
                Ok(vec![$($name.into_arg()?),+])
            }
        }
    };
}

tuple_args!(A);
tuple_args!(A, B);
tuple_args!(A, B, C);
tuple_args!(A, B, C, D);
tuple_args!(A, B, C, D, E);
tuple_args!(A, B, C, D, E, F);
tuple_args!(A, B, C, D, E, F, G);
tuple_args!(A, B, C, D, E, F, G, H);
tuple_args!(A, B, C, D, E, F, G, H, I);
tuple_args!(A, B, C, D, E, F, G, H, I, J);
tuple_args!(A, B, C, D, E, F, G, H, I, J, K);
tuple_args!(A, B, C, D, E, F, G, H, I, J, K, L);

/// Counters of a client (for tests and tuning).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub tasks_submitted: u64,
    /// Values this client wrote into the node's shared memory.
    pub shm_writes: u64,
    /// Values this client read from the node's shared memory.
    pub shm_reads: u64,
    /// Values this client read over Arrow Flight (a remote client's large
    /// values, and `flight_get` pulls).
    pub flight_reads: u64,
    /// Tasks this process ran for the node (a serving worker).
    pub tasks_executed: u64,
}

/// A connection to a node. Cheap to clone; the connection closes when the
/// last clone and the last [`ObjectRef`] made through it are dropped (or
/// at [`Client::close`]).
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("node_address", &self.shared.info.node_address)
            .field("remote", &self.shared.remote)
            .finish()
    }
}

impl Client {
    /// Connect to a node (see [`Options`]: the address and token from the
    /// options, `$EMBER_ADDRESS`/`$EMBER_TOKEN`, or the newest live local
    /// session).
    pub async fn connect(options: Options) -> Result<Client> {
        Ok(Client {
            shared: conn::connect(&options).await?,
        })
    }

    /// Connect with the defaults (environment and session files).
    pub async fn connect_default() -> Result<Client> {
        Self::connect(Options::default()).await
    }

    /// What the node said when this client connected.
    pub fn node(&self) -> &NodeInfo {
        &self.shared.info
    }

    /// Whether this client talks to the node over gRPC (no shared memory).
    pub fn is_remote(&self) -> bool {
        self.shared.remote
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.shared.counters;
        ClientStats {
            tasks_submitted: c.tasks_submitted.load(Ordering::Relaxed),
            shm_writes: c.shm_writes.load(Ordering::Relaxed),
            shm_reads: c.shm_reads.load(Ordering::Relaxed),
            flight_reads: c.flight_reads.load(Ordering::Relaxed),
            tasks_executed: c.tasks_executed.load(Ordering::Relaxed),
        }
    }

    /// Close the connection now (objects held by it are released by the node).
    pub fn close(&self) {
        self.shared.send(Out::Close);
    }

    /// Resolves when the connection is gone, with the reason.
    pub async fn closed(&self) -> Error {
        self.shared.closed().await
    }

    /// The cluster's status (nodes, resources, task counts, objects), as
    /// `ember status` shows it.
    pub async fn cluster_status(&self) -> Result<v1::ClusterStatus> {
        self.shared.cluster_status().await
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Call `function` with `args`; the result arrives later (`get` it).
    ///
    /// ```no_run
    /// # async fn f(client: ember::Client) -> ember::Result<()> {
    /// use ember::Function;
    /// let r = client.call::<i64>(&Function::rust("add"), (1, 2)).await?;
    /// assert_eq!(r.get().await?, 3);
    /// # Ok(()) }
    /// ```
    pub async fn call<R>(&self, function: &Function, args: impl IntoArgs) -> Result<ObjectRef<R>> {
        self.call_with(function, args, &CallOptions::default())
            .await
    }

    /// [`call`](Self::call) with options.
    pub async fn call_with<R>(
        &self,
        function: &Function,
        args: impl IntoArgs,
        options: &CallOptions,
    ) -> Result<ObjectRef<R>> {
        let (task_args, temporaries) = self.task_args(args).await?;
        let task_id = self.shared.next_task_id();
        let resources = match &options.resources {
            Some(r) => r.clone(),
            None if function.language == Language::Python => {
                HashMap::from([("CPU".to_string(), 1.0)])
            }
            None => HashMap::new(),
        };
        let spec = v1::TaskSpec {
            task_id: task_id.to_vec().into(),
            function: Some(v1::FunctionDescriptor {
                language: function.language as i32,
                function_id: Bytes::new(),
                name: function.name.clone(),
            }),
            args: task_args,
            num_returns: 1,
            resources,
            max_retries: options.max_retries,
            retry_exceptions: options.retry_exceptions,
            name: options
                .name
                .clone()
                .unwrap_or_else(|| function.name.clone()),
            cross_language: true,
            ..Default::default()
        };
        let r = self.submit(task_id, spec, function.name.as_str().into());
        drop(temporaries);
        r
    }

    /// The wire arguments of a call, and the temporary objects holding the
    /// large ones: values larger than the inline limit are put first and
    /// passed by reference (the task holds them until it ends, so the
    /// temporaries may go once the task was sent). The limit is
    /// `max_inline_bytes` with shared memory (the put writes it there) and
    /// 16 MiB without (a remote client: the put goes by value, at most
    /// [`MAX_REMOTE_PUT_BYTES`], and the node copies it into its store).
    pub(crate) async fn task_args(
        &self,
        args: impl IntoArgs,
    ) -> Result<(Vec<v1::TaskArg>, Vec<ObjectRef<()>>)> {
        let args = args.into_args()?;
        let shared = &self.shared;
        let max_inline = shared.max_inline();
        let mut task_args = Vec::with_capacity(args.len());
        let mut temporaries = Vec::new();
        for (i, arg) in args.into_iter().enumerate() {
            let (format, data) = match arg {
                Arg::Value(data) => (ValueFormat::Msgpack, data),
                Arg::Arrow(data) => (ValueFormat::Arrow, data),
                Arg::Ref(id) => {
                    task_args.push(v1::TaskArg {
                        object_ref: id.to_vec().into(),
                        ..Default::default()
                    });
                    continue;
                }
            };
            if data.len() <= max_inline {
                task_args.push(v1::TaskArg {
                    value: Some(v1::ObjectValue {
                        format: format as i32,
                        body: Some(Body::InlineData(Bytes::from(data))),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            } else {
                let r = self
                    .put_value::<()>(data, format)
                    .await
                    .map_err(|e| match e {
                        Error::InvalidArgument(m) => {
                            Error::InvalidArgument(format!("argument {i}: {m}"))
                        }
                        e => e,
                    })?;
                task_args.push(v1::TaskArg {
                    object_ref: r.id().to_vec().into(),
                    ..Default::default()
                });
                temporaries.push(r);
            }
        }
        Ok((task_args, temporaries))
    }

    /// Submit `spec` (its task id `task_id`, one return) and hold its
    /// return; `label` names it in errors.
    pub(crate) fn submit<R>(
        &self,
        task_id: TaskId,
        spec: v1::TaskSpec,
        label: Arc<str>,
    ) -> Result<ObjectRef<R>> {
        let shared = &self.shared;
        let id = ObjectId::for_return(task_id, 0);
        {
            let mut st = shared.lock();
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            st.objects.insert(id, Box::default());
            // Sent under the lock: a release of this id (from a drop on
            // another thread) cannot overtake it.
            shared.send_op(client_op::Op::SubmitTask(v1::SubmitTask {
                spec: Some(spec),
                code_search_path: Vec::new(),
            }));
        }
        shared
            .counters
            .tasks_submitted
            .fetch_add(1, Ordering::Relaxed);
        Ok(ObjectRef::new(shared.clone(), id, Some(label)))
    }

    /// Store `value` in the node's object store: a [`Table`](crate::Table)
    /// as an `ARROW` value, anything else as msgpack.
    pub async fn put<T: Serialize>(&self, value: &T) -> Result<ObjectRef<T>> {
        let mut arrow = false;
        let data = encode_flagged(value, &mut arrow)?;
        let format = if arrow {
            ValueFormat::Arrow
        } else {
            ValueFormat::Msgpack
        };
        self.put_value(data, format).await
    }

    /// Store bytes as a `RAW` value (read back as bytes, by any language).
    pub async fn put_raw(&self, data: Vec<u8>) -> Result<ObjectRef<serde_bytes::ByteBuf>> {
        self.put_value(data, ValueFormat::Raw).await
    }

    async fn put_value<T>(&self, data: Vec<u8>, format: ValueFormat) -> Result<ObjectRef<T>> {
        let shared = &self.shared;
        // A fresh task-id part and index 0: a put.
        let mut b = [0u8; 20];
        b[..16].copy_from_slice(&shared.next_task_id().0);
        let id = ObjectId(b);
        let size = data.len();
        let (wire, local) = if size > shared.max_inline() && shared.arena.is_some() {
            let location = shared
                .write_shm(id, &data)
                .await?
                .expect("an arena is mapped");
            drop(data);
            let wire = v1::ObjectValue {
                format: format as i32,
                body: Some(Body::Shm(location)),
                ..Default::default()
            };
            let local = v1::ObjectValue {
                format: format as i32,
                body: Some(Body::StoredSize(size as u64)),
                ..Default::default()
            };
            (wire, local)
        } else {
            // No shared memory (a remote client): by value on the stream,
            // which the node copies into its store when over its inline limit.
            let limit = if shared.arena.is_some() {
                shared.max_inline()
            } else {
                MAX_REMOTE_PUT_BYTES
            };
            if size > limit {
                return Err(Error::InvalidArgument(format!(
                    "a value of {size} bytes is too large to send without shared memory \
                     (at most {limit} bytes over a remote connection)"
                )));
            }
            let v = v1::ObjectValue {
                format: format as i32,
                body: Some(Body::InlineData(Bytes::from(data))),
                ..Default::default()
            };
            (v.clone(), v)
        };
        {
            let mut st = shared.lock();
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            st.objects.insert(
                id,
                Box::new(Slot {
                    value: Some(local),
                    ..Default::default()
                }),
            );
            shared.send_op(client_op::Op::PutObject(v1::PutObject {
                object_id: id.to_vec().into(),
                value: Some(wire),
            }));
        }
        Ok(ObjectRef::new(shared.clone(), id, None))
    }

    /// Pull `r`'s record batches over the node's Arrow Flight service
    /// (`do_get`, ticket: the object id in hex, `authorization: Bearer
    /// <token>`), over the connection's gRPC channel, or, for a client on
    /// the node's Unix socket, a channel to the node's address made at the
    /// first pull. See [`ObjectRef::flight_get`].
    pub async fn flight_get<T>(&self, r: &ObjectRef<T>) -> Result<Table> {
        r.flight_get().await
    }

    /// The value of `r`, waiting for it as long as it takes.
    pub async fn get<T: DeserializeOwned>(&self, r: &ObjectRef<T>) -> Result<T> {
        r.get().await
    }

    /// The value of `r`, or [`Error::Timeout`] after `timeout`.
    pub async fn get_timeout<T: DeserializeOwned>(
        &self,
        r: &ObjectRef<T>,
        timeout: Duration,
    ) -> Result<T> {
        r.get_timeout(timeout).await
    }

    /// The values of `refs`, in order.
    pub async fn get_all<T: DeserializeOwned>(&self, refs: &[ObjectRef<T>]) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            out.push(r.get().await?);
        }
        Ok(out)
    }

    /// Wait until `num_ready` of `refs` are ready (or all are, or `timeout`
    /// passes); returns (ready, not ready), each in the order given.
    pub async fn wait<T>(
        &self,
        refs: &[ObjectRef<T>],
        num_ready: usize,
        timeout: Option<Duration>,
    ) -> Result<(Vec<ObjectRef<T>>, Vec<ObjectRef<T>>)> {
        let num_ready = num_ready.min(refs.len());
        let mut ready = vec![false; refs.len()];
        let mut pending = FuturesUnordered::new();
        {
            let mut st = self.shared.lock();
            for (i, r) in refs.iter().enumerate() {
                let Some(slot) = st.objects.get_mut(&r.id()) else {
                    continue;
                };
                if slot.value.is_some() {
                    ready[i] = true;
                } else {
                    let (tx, rx) = oneshot::channel();
                    slot.waiters.retain(|w| !w.is_closed());
                    slot.waiters.push(tx);
                    pending.push(async move { (i, rx.await.is_ok()) });
                }
            }
        }
        let mut count = ready.iter().filter(|r| **r).count();
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        while count < num_ready {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, pending.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                },
                None => pending.next().await,
            };
            match next {
                Some((i, true)) => {
                    ready[i] = true;
                    count += 1;
                }
                Some((_, false)) => return Err(self.shared.closed_error()),
                None => break,
            }
        }
        let (mut yes, mut no) = (Vec::new(), Vec::new());
        for (r, ok) in refs.iter().zip(ready) {
            if ok {
                yes.push(r.clone());
            } else {
                no.push(r.clone());
            }
        }
        Ok((yes, no))
    }
}

struct RefInner {
    shared: Arc<Shared>,
    id: ObjectId,
    /// The function whose return this is.
    function: Option<Arc<str>>,
}

impl Drop for RefInner {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.objects.remove(&self.id);
        if st.closed.is_none() {
            self.shared.send(Out::Release(self.id));
        }
    }
}

/// A reference to an object: a call's result or a put value, of type `T`.
/// Clones share one reference; the node may free the object once every
/// clone is dropped.
pub struct ObjectRef<T> {
    inner: Arc<RefInner>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for ObjectRef<T> {
    fn clone(&self) -> Self {
        ObjectRef {
            inner: self.inner.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for ObjectRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectRef({})", self.inner.id.hex())
    }
}

/// Returns a grant when dropped (after the mapped bytes were read).
struct Grant<'a> {
    shared: &'a Shared,
    id: ObjectId,
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        self.shared.send(Out::Unmap(self.id));
    }
}

impl<T> ObjectRef<T> {
    fn new(shared: Arc<Shared>, id: ObjectId, function: Option<Arc<str>>) -> Self {
        ObjectRef {
            inner: Arc::new(RefInner {
                shared,
                id,
                function,
            }),
            _type: PhantomData,
        }
    }

    pub fn id(&self) -> ObjectId {
        self.inner.id
    }

    /// The same object, read as another type.
    pub fn cast<U>(&self) -> ObjectRef<U> {
        ObjectRef {
            inner: self.inner.clone(),
            _type: PhantomData,
        }
    }

    /// Whether the value is there (a `get` would not wait).
    pub fn is_ready(&self) -> bool {
        self.inner
            .shared
            .lock()
            .objects
            .get(&self.inner.id)
            .is_some_and(|s| s.value.is_some())
    }

    /// The announced value, waiting until `deadline`.
    async fn announced(&self, deadline: Option<Instant>) -> Result<v1::ObjectValue> {
        let shared = &self.inner.shared;
        let rx = {
            let mut st = shared.lock();
            let closed = st.closed.clone();
            let Some(slot) = st.objects.get_mut(&self.inner.id) else {
                return Err(Error::ObjectLost(format!(
                    "object {} is not held by this client",
                    self.inner.id
                )));
            };
            if let Some(v) = &slot.value {
                return Ok(v.clone());
            }
            if let Some(e) = closed {
                return Err(e);
            }
            let (tx, rx) = oneshot::channel();
            slot.waiters.retain(|w| !w.is_closed());
            slot.waiters.push(tx);
            rx
        };
        self.await_value(rx, deadline).await
    }

    async fn await_value(
        &self,
        rx: oneshot::Receiver<v1::ObjectValue>,
        deadline: Option<Instant>,
    ) -> Result<v1::ObjectValue> {
        let result = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), rx).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(Error::Timeout(format!(
                        "object {} was not ready in time{}",
                        self.inner.id,
                        self.inner
                            .function
                            .as_ref()
                            .map(|f| format!(" (the result of {f})"))
                            .unwrap_or_default()
                    )))
                }
            },
            None => rx.await,
        };
        result.map_err(|_| self.inner.shared.closed_error())
    }

    /// Read the value's bytes and decode them with `decode`.
    async fn read<U>(
        &self,
        deadline: Option<Instant>,
        decode: impl FnOnce(ValueFormat, &[u8]) -> Result<U>,
    ) -> Result<U> {
        let value = self.announced(deadline).await?;
        let function = self.inner.function.as_deref();
        let format = ValueFormat::try_from(value.format).unwrap_or(ValueFormat::FormatUnspecified);
        match value.body {
            Some(Body::InlineData(data)) => decode_value(format, &data, function, decode),
            None => decode_value(format, &[], function, decode),
            Some(Body::StoredSize(size)) => {
                let shared = &self.inner.shared;
                let Some(arena) = &shared.arena else {
                    // A remote client: over Arrow Flight.
                    let read = shared.flight_read(self.inner.id, size);
                    let data = match deadline {
                        Some(d) => {
                            tokio::time::timeout_at(d.into(), read)
                                .await
                                .map_err(|_| {
                                    Error::Timeout(format!(
                                        "reading object {} took too long",
                                        self.inner.id
                                    ))
                                })??
                        }
                        None => read.await?,
                    };
                    return decode_value(format, &data, function, decode);
                };
                let rx = {
                    let mut st = shared.lock();
                    let Some(slot) = st.objects.get_mut(&self.inner.id) else {
                        return Err(Error::ObjectLost(format!(
                            "object {} was released",
                            self.inner.id
                        )));
                    };
                    let (tx, rx) = oneshot::channel();
                    slot.map_waiters.push_back(tx);
                    shared.send_op(client_op::Op::GetObjects(v1::GetObjects {
                        object_ids: vec![self.inner.id.to_vec().into()],
                        map: true,
                    }));
                    rx
                };
                let granted = self.await_value(rx, deadline).await?;
                let format =
                    ValueFormat::try_from(granted.format).unwrap_or(ValueFormat::FormatUnspecified);
                match granted.body {
                    Some(Body::Shm(loc)) => {
                        let _grant = Grant {
                            shared,
                            id: self.inner.id,
                        };
                        let bytes = arena.read(loc.offset, loc.size)?;
                        shared.counters.shm_reads.fetch_add(1, Ordering::Relaxed);
                        decode_value(format, bytes, function, decode)
                    }
                    Some(Body::InlineData(data)) => decode_value(format, &data, function, decode),
                    _ => decode_value(format, &[], function, decode),
                }
            }
            Some(Body::Shm(_)) => Err(Error::Connection(
                "the node announced a shared-memory location without a map request".into(),
            )),
        }
    }

    /// The value's raw bytes and format (msgpack, raw, arrow...).
    pub async fn get_bytes(&self) -> Result<(ValueFormat, Vec<u8>)> {
        self.read(None, |format, data| Ok((format, data.to_vec())))
            .await
    }

    /// Pull the object's record batches over the node's Arrow Flight
    /// service, once it is ready: an `ARROW` object's schema and batches as
    /// the node streams them (the batches may be split differently from
    /// the ones stored); any other object as the Flight service sends it
    /// (one binary column `data` of its bytes in chunks, schema metadata
    /// `ember.format`). An error value fails as [`get`](Self::get) does.
    /// The object must be in the store of the node this client is
    /// connected to (a put, a result the node holds), else
    /// [`Error::ObjectLost`].
    pub async fn flight_get(&self) -> Result<Table> {
        let value = self.announced(None).await?;
        if value.format == ValueFormat::Error as i32 {
            let data = match &value.body {
                Some(Body::InlineData(d)) => d.clone(),
                _ => Bytes::new(),
            };
            return Err(task_error(&data, self.inner.function.as_deref()));
        }
        let shared = &self.inner.shared;
        let id = self.inner.id;
        let (schema, batches) = match shared.flight_table(id).await {
            // A put of this client that the node has not handled yet: once
            // it answers a later request, it has.
            Err(Error::ObjectLost(_)) => {
                shared.cluster_status().await?;
                shared.flight_table(id).await?
            }
            r => r?,
        };
        Ok(Table { schema, batches })
    }
}

impl<T: DeserializeOwned> ObjectRef<T> {
    /// Wait for the value and decode it.
    pub async fn get(&self) -> Result<T> {
        self.read(None, decode::<T>).await
    }

    /// Like [`get`](Self::get), failing with [`Error::Timeout`] after `timeout`.
    pub async fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.read(Some(Instant::now() + timeout), decode::<T>).await
    }
}

fn decode_value<U>(
    format: ValueFormat,
    data: &[u8],
    function: Option<&str>,
    decode: impl FnOnce(ValueFormat, &[u8]) -> Result<U>,
) -> Result<U> {
    if format == ValueFormat::Error {
        return Err(task_error(data, function));
    }
    decode(format, data)
}

/// The error an ERROR value stands for.
fn task_error(data: &[u8], function: Option<&str>) -> Error {
    use prost::Message;
    match v1::TaskError::decode(data) {
        Ok(err) => Error::from_task_error(err, function),
        Err(e) => Error::Codec(format!("malformed error value: {e}")),
    }
}

/// The futures of the API can be spawned (compile-time check).
#[cfg(test)]
#[allow(dead_code)]
fn futures_are_send(client: &Client, r: &ObjectRef<i64>, refs: &[ObjectRef<i64>]) {
    fn send<T: Send + 'static>(_: &T) {}
    fn send_ref<T: Send>(_: T) {}
    send(client);
    send(r);
    let f = Function::rust("f");
    send_ref(client.call::<i64>(&f, (1, "x", r)));
    send_ref(client.put(&1i64));
    send_ref(r.get());
    send_ref(client.wait(refs, 1, None));
    send_ref(client.cluster_status());
}
