//! Actors, from the caller's side: create an instance of a class of any
//! language by name ([`Class`], [`ActorOptions`]), call its methods
//! ([`ActorHandle::call`]), look a named one up, kill it.
//!
//! A creation is `CreateActor{request_id, spec}` where the spec names the
//! class (`function = {language, name}`) and carries `actor_creation`; the
//! node answers `ActorReply` (the actor; for `get_if_exists`, the existing
//! one) or an `ErrorReply`. The creation's return object is let go at once
//! (a failed constructor's error reaches every call instead). A method call
//! is a task with `actor_id` and `method_name` set; calls from one client
//! run in the order they were submitted.

use std::fmt;

use bytes::Bytes;
use ember_proto::v1::{self, client_op};
use ember_proto::{ActorId, ObjectId};

use crate::client::{IntoArgs, ObjectRef};
use crate::conn::Out;
use crate::{Client, Error, Language, Result};

/// An actor class, named by language and name (as a worker serves it: a
/// Rust `Worker::register_actor`, a Go `RegisterActor`, a Python class
/// exported with `ember.cross_language.export`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Class {
    pub language: Language,
    pub name: String,
}

impl Class {
    /// A Rust actor class served by a [`Worker`](crate::Worker).
    pub fn rust(name: impl Into<String>) -> Self {
        Class {
            language: Language::Rust,
            name: name.into(),
        }
    }

    /// A Go actor class served by a Go worker.
    pub fn go(name: impl Into<String>) -> Self {
        Class {
            language: Language::Go,
            name: name.into(),
        }
    }

    /// A Python actor class exported by name (`ember.cross_language.export`).
    pub fn python(name: impl Into<String>) -> Self {
        Class {
            language: Language::Python,
            name: name.into(),
        }
    }

    fn descriptor(&self) -> v1::FunctionDescriptor {
        v1::FunctionDescriptor {
            language: self.language as i32,
            function_id: Bytes::new(),
            name: self.name.clone(),
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.language.as_str_name())
    }
}

/// How an actor is made and kept.
#[derive(Clone, Debug, Default)]
pub struct ActorOptions {
    /// A name to find it by ([`Client::get_actor`]); `None`: anonymous.
    pub name: Option<String>,
    /// The namespace of the name; `None`: the client's
    /// ([`Options::namespace`](crate::Options), else the job's).
    pub namespace: Option<String>,
    /// Restarts after the process hosting it dies (-1: without limit).
    /// Default 0.
    pub max_restarts: i32,
    /// Times a call in flight when the process died is sent again (-1:
    /// without limit). Default 0.
    pub max_task_retries: i32,
    /// Calls run at once (0: the class's default, 1 for Rust and Go
    /// classes). A Rust class runs up to this many calls of its shared
    /// methods (`ActorClass::method_shared`) at once; its exclusive
    /// methods run alone.
    pub max_concurrency: u32,
    /// Outlive the client that made it, until killed.
    pub detached: bool,
    /// With a name in use: the existing actor instead of
    /// [`Error::AlreadyExists`].
    pub get_if_exists: bool,
}

impl ActorOptions {
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn max_restarts(mut self, n: i32) -> Self {
        self.max_restarts = n;
        self
    }

    pub fn max_task_retries(mut self, n: i32) -> Self {
        self.max_task_retries = n;
        self
    }

    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = n;
        self
    }

    pub fn detached(mut self, detached: bool) -> Self {
        self.detached = detached;
        self
    }

    pub fn get_if_exists(mut self, get_if_exists: bool) -> Self {
        self.get_if_exists = get_if_exists;
        self
    }
}

/// A handle to an actor: call its methods. Cheap to clone; it holds a
/// [`Client`] (its calls go through that connection).
#[derive(Clone)]
pub struct ActorHandle {
    client: Client,
    id: ActorId,
    class: Class,
    /// The calls' `max_retries` (the actor's `max_task_retries`).
    max_task_retries: i32,
}

impl fmt::Debug for ActorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorHandle")
            .field("id", &self.id.hex())
            .field("class", &self.class)
            .finish()
    }
}

impl ActorHandle {
    pub fn id(&self) -> ActorId {
        self.id
    }

    pub fn class(&self) -> &Class {
        &self.class
    }

    /// The client the calls go through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Call `method` with `args` (as for [`Client::call`]); the result
    /// arrives later (`get` it). A dead actor's calls fail with
    /// [`Error::ActorDied`]; the calls of one whose constructor failed
    /// with the constructor's error.
    ///
    /// ```no_run
    /// # async fn f(client: ember::Client) -> ember::Result<()> {
    /// use ember::Class;
    /// let counter = client.create_actor(&Class::rust("Counter"), (10,)).await?;
    /// let n = counter.call::<i64>("incr", (5,)).await?;
    /// assert_eq!(n.get().await?, 15);
    /// # Ok(()) }
    /// ```
    pub async fn call<R>(&self, method: &str, args: impl IntoArgs) -> Result<ObjectRef<R>> {
        let (task_args, temporaries) = self.client.task_args(args).await?;
        let task_id = self.client.shared.next_task_id();
        let label = format!("{}.{method}", self.class.name);
        let spec = v1::TaskSpec {
            task_id: task_id.to_vec().into(),
            function: Some(self.class.descriptor()),
            args: task_args,
            num_returns: 1,
            max_retries: self.max_task_retries,
            name: label.clone(),
            actor_id: self.id.to_vec().into(),
            method_name: method.to_string(),
            cross_language: true,
            ..Default::default()
        };
        let r = self.client.submit(task_id, spec, label.into());
        drop(temporaries);
        r
    }

    /// Kill the actor (see [`Client::kill_actor`]).
    pub async fn kill(&self, no_restart: bool) -> Result<()> {
        self.client.kill_actor(self, no_restart).await
    }
}

impl Client {
    /// Create an actor of `class` with the constructor's `args`, with the
    /// default options (anonymous, no restarts).
    pub async fn create_actor(&self, class: &Class, args: impl IntoArgs) -> Result<ActorHandle> {
        self.create_actor_with(class, args, &ActorOptions::default())
            .await
    }

    /// Create an actor of `class`; returns once the node has registered it
    /// (the constructor may still be running: calls wait for it). A name in
    /// use fails with [`Error::AlreadyExists`] (unless `get_if_exists`: the
    /// existing actor's handle).
    pub async fn create_actor_with(
        &self,
        class: &Class,
        args: impl IntoArgs,
        options: &ActorOptions,
    ) -> Result<ActorHandle> {
        let (task_args, temporaries) = self.task_args(args).await?;
        let task_id = self.shared.next_task_id();
        let actor_id = ActorId::random();
        let creation = v1::ActorCreation {
            actor_id: actor_id.to_vec().into(),
            name: options.name.clone().unwrap_or_default(),
            namespace: options.namespace.clone().unwrap_or_default(),
            detached: options.detached,
            max_restarts: options.max_restarts,
            max_task_retries: options.max_task_retries,
            max_concurrency: options.max_concurrency,
            get_if_exists: options.get_if_exists,
            class_name: class.name.clone(),
            ..Default::default()
        };
        let spec = v1::TaskSpec {
            task_id: task_id.to_vec().into(),
            function: Some(class.descriptor()),
            args: task_args,
            num_returns: 1,
            max_retries: options.max_restarts,
            name: format!("{}.__init__", class.name),
            actor_creation: Some(creation),
            cross_language: true,
            ..Default::default()
        };
        let info = self
            .shared
            .actor_request(
                |request_id| {
                    client_op::Op::CreateActor(v1::CreateActor {
                        request_id,
                        spec: Some(spec),
                        code_search_path: Vec::new(),
                    })
                },
                // The creation's return (nil, or the constructor's error,
                // which every call gets too): not kept.
                |shared| shared.send(Out::Release(ObjectId::for_return(task_id, 0))),
            )
            .await;
        drop(temporaries);
        let info = info?;
        // get_if_exists: the existing actor.
        let (id, max_task_retries) = match ActorId::from_bytes(&info.actor_id) {
            Ok(id) => (
                id,
                info.creation
                    .as_ref()
                    .map_or(options.max_task_retries, |c| c.max_task_retries),
            ),
            Err(_) => (actor_id, options.max_task_retries),
        };
        Ok(ActorHandle {
            client: self.clone(),
            id,
            class: class.clone(),
            max_task_retries,
        })
    }

    /// The live actor named `name` in `namespace` (`None`: the client's
    /// namespace), or [`Error::NotFound`].
    pub async fn get_actor(&self, name: &str, namespace: Option<&str>) -> Result<ActorHandle> {
        let info = self
            .shared
            .actor_request(
                |request_id| {
                    client_op::Op::GetActor(v1::GetActor {
                        request_id,
                        name: name.to_string(),
                        namespace: namespace.unwrap_or_default().to_string(),
                    })
                },
                |_| {},
            )
            .await?;
        let id = ActorId::from_bytes(&info.actor_id)
            .map_err(|e| Error::Connection(format!("the node's ActorReply: {e}")))?;
        let function = info.class_function.unwrap_or_default();
        Ok(ActorHandle {
            client: self.clone(),
            id,
            class: Class {
                language: Language::try_from(function.language).unwrap_or(Language::Unspecified),
                name: function.name,
            },
            max_task_retries: info.creation.map_or(0, |c| c.max_task_retries),
        })
    }

    /// Kill `actor`'s instance. With `no_restart` it is dead for good (its
    /// calls fail with [`Error::ActorDied`]); without, it restarts if its
    /// `max_restarts` allows.
    pub async fn kill_actor(&self, actor: &ActorHandle, no_restart: bool) -> Result<()> {
        let st = self.shared.lock();
        if let Some(e) = &st.closed {
            return Err(e.clone());
        }
        self.shared.send_op(client_op::Op::KillActor(v1::KillActor {
            actor_id: actor.id.to_vec().into(),
            no_restart,
        }));
        Ok(())
    }
}

/// The futures of the API can be spawned (compile-time check).
#[cfg(test)]
#[allow(dead_code)]
fn futures_are_send(client: &Client, actor: &ActorHandle) {
    fn send<T: Send + 'static>(_: &T) {}
    fn send_ref<T: Send>(_: T) {}
    send(actor);
    let class = Class::rust("C");
    send_ref(client.create_actor(&class, (1, "x")));
    send_ref(actor.call::<i64>("m", (1,)));
    send_ref(client.get_actor("n", None));
    send_ref(client.kill_actor(actor, true));
}
