//! Actors across nodes, through the head's actor directory.
//!
//! - A node registers every actor it owns with the head when it is
//!   created, and again when it dies for good. A named actor's name is
//!   reserved at the head before the actor is created, so a name is unique
//!   in the cluster.
//! - `get_actor` for a name not known here asks the head; calls to an
//!   actor owned by another node (a handle passed in, or found by name) go
//!   to its owner's node, which sends them on to the actor (a proxy entry
//!   here keeps them in order while the owner is looked up).

use std::collections::VecDeque;

use ember_proto::v1::{self, node_op};
use ember_proto::{ActorId, NodeId, TaskId};

use super::actors::NextCall;
use super::{system_error, ConnId, NodeCore};
use crate::head_link::{HeadAnswer, HeadCommand};

/// What an answer from the head is for.
pub(super) enum HeadWait {
    /// A named actor's creation, waiting for its name.
    Create {
        conn: ConnId,
        req: Box<v1::CreateActor>,
    },
    /// `get_actor` of a name this node does not know.
    GetActor {
        conn: ConnId,
        request_id: u64,
        namespace: String,
        name: String,
    },
    /// Who owns an actor this node got calls for.
    Owner(ActorId),
}

/// An actor owned by another node, as this node knows it.
#[derive(Default)]
pub(super) struct RemoteActor {
    /// Its owner's node, once known.
    pub owner: Option<NodeId>,
    /// The owner is being looked up.
    pub looking_up: bool,
    /// The head does not know it (or its owner's node died): calls fail.
    pub lost: Option<String>,
    /// Calls not yet sent, in submission order.
    pub queue: VecDeque<TaskId>,
}

impl NodeCore {
    fn head_call(&mut self, command: impl FnOnce(u64) -> HeadCommand, wait: HeadWait) -> bool {
        let Some(tx) = &self.head_tx else {
            return false;
        };
        self.next_head_token += 1;
        let token = self.next_head_token;
        if tx.send(command(token)).is_err() {
            return false;
        }
        self.head_waits.insert(token, wait);
        true
    }

    /// The directory record of one of this node's actors.
    fn actor_record(&self, actor_id: ActorId) -> Option<v1::ActorRecord> {
        Some(v1::ActorRecord {
            actor: self.actor_info(actor_id),
            owner_node_id: self.node_id.to_vec().into(),
        })
    }

    /// Tell the head about an actor this node owns (created, or dead).
    pub(super) fn register_actor_at_head(&self, actor_id: ActorId) {
        let Some(tx) = &self.head_tx else { return };
        let Some(a) = self.actors.get(&actor_id) else {
            return;
        };
        if self.conns.get(&a.owner).is_some_and(|c| c.peer.is_some()) {
            return; // hosted for another node, which registers it
        }
        if let Some(record) = self.actor_record(actor_id) {
            let _ = tx.send(HeadCommand::RegisterActor {
                record: Box::new(record),
                token: None,
            });
        }
    }

    /// A named actor is created only once the head has reserved its name
    /// (true: the creation now waits for the head's answer).
    pub(super) fn reserve_actor_name(
        &mut self,
        conn: ConnId,
        req: v1::CreateActor,
        namespace: &str,
    ) -> bool {
        let Some(spec) = &req.spec else { return false };
        let Some(mut creation) = spec.actor_creation.clone() else {
            return false;
        };
        creation.namespace = namespace.to_string();
        let record = v1::ActorRecord {
            actor: Some(v1::ActorInfo {
                actor_id: creation.actor_id.clone(),
                state: v1::ActorState::Pending as i32,
                class_function: spec.function.clone(),
                creation: Some(creation),
                node_id: self.node_id.to_vec().into(),
                ..Default::default()
            }),
            owner_node_id: self.node_id.to_vec().into(),
        };
        self.head_call(
            |token| HeadCommand::RegisterActor {
                record: Box::new(record),
                token: Some(token),
            },
            HeadWait::Create {
                conn,
                req: Box::new(req),
            },
        )
    }

    /// `get_actor` of a name this node does not know: ask the head.
    pub(super) fn get_actor_from_head(
        &mut self,
        conn: ConnId,
        request_id: u64,
        namespace: String,
        name: String,
    ) -> bool {
        let request = v1::GetActorInfoRequest {
            actor_id: Default::default(),
            name: name.clone(),
            namespace: namespace.clone(),
        };
        self.head_call(
            |token| HeadCommand::GetActorInfo { request, token },
            HeadWait::GetActor {
                conn,
                request_id,
                namespace,
                name,
            },
        )
    }

    /// A call to an actor this node does not own. Returns false when there
    /// is no head to ask (the caller fails it).
    pub(super) fn submit_remote_actor_call(&mut self, task_id: TaskId, actor_id: ActorId) -> bool {
        if self.head_tx.is_none() {
            return false;
        }
        let entry = self.remote_actors.entry(actor_id).or_default();
        entry.queue.push_back(task_id);
        let look_up = entry.owner.is_none() && !entry.looking_up && entry.lost.is_none();
        if look_up {
            entry.looking_up = true;
            let request = v1::GetActorInfoRequest {
                actor_id: actor_id.to_vec().into(),
                ..Default::default()
            };
            self.head_call(
                |token| HeadCommand::GetActorInfo { request, token },
                HeadWait::Owner(actor_id),
            );
        }
        self.pump_remote_actor(actor_id);
        true
    }

    /// Send the calls at the front of a remote actor's queue to its
    /// owner's node, in order; or fail them when it cannot be reached.
    pub(super) fn pump_remote_actor(&mut self, actor_id: ActorId) {
        loop {
            let Some(r) = self.remote_actors.get_mut(&actor_id) else {
                return;
            };
            let Some(&task) = r.queue.front() else { return };
            if let Some(why) = r.lost.clone() {
                r.queue.pop_front();
                let err = system_error(v1::ErrorKind::ActorDied, why);
                self.fail_task(task, err);
                continue;
            }
            let Some(owner) = r.owner else { return };
            let next = self.next_call(actor_id, task);
            if matches!(next, NextCall::Wait) {
                return;
            }
            if let Some(r) = self.remote_actors.get_mut(&actor_id) {
                r.queue.pop_front();
            }
            let pins = match next {
                NextCall::Send(pins) => pins,
                NextCall::Cancelled => {
                    self.finish_cancelled(task);
                    continue;
                }
                _ => continue,
            };
            self.send_task(task, owner, pins);
        }
    }

    /// The node that owned actors this node calls is lost: their owner is
    /// looked up again (a detached actor is adopted by the node it runs on).
    pub(super) fn remote_owner_lost(&mut self, node: NodeId) {
        let stale: Vec<ActorId> = self
            .remote_actors
            .iter()
            .filter(|(_, r)| r.owner == Some(node))
            .map(|(id, _)| *id)
            .collect();
        for actor_id in stale {
            if let Some(r) = self.remote_actors.get_mut(&actor_id) {
                r.owner = None;
                r.looking_up = false;
                if r.queue.is_empty() {
                    continue;
                }
                r.looking_up = true;
            }
            let request = v1::GetActorInfoRequest {
                actor_id: actor_id.to_vec().into(),
                ..Default::default()
            };
            self.head_call(
                |token| HeadCommand::GetActorInfo { request, token },
                HeadWait::Owner(actor_id),
            );
        }
    }

    /// `ember.kill` of an actor another node owns: that node kills it.
    pub(super) fn kill_remote_actor(&mut self, req: v1::KillActor) {
        let Ok(actor_id) = ActorId::from_bytes(&req.actor_id) else {
            return;
        };
        if let Some(owner) = self.remote_actors.get(&actor_id).and_then(|r| r.owner) {
            self.send_to_peer(owner, v1::client_op::Op::KillActor(req));
        }
    }

    /// Remember that `record`'s actor is owned by another node.
    fn adopt_remote(&mut self, record: &v1::ActorRecord) {
        let (Ok(owner), Some(Ok(id))) = (
            NodeId::from_bytes(&record.owner_node_id),
            record
                .actor
                .as_ref()
                .map(|a| ActorId::from_bytes(&a.actor_id)),
        ) else {
            return;
        };
        if owner == self.node_id || self.actors.contains_key(&id) {
            return;
        }
        let r = self.remote_actors.entry(id).or_default();
        r.owner = Some(owner);
        r.looking_up = false;
    }

    /// The head answered the call `token`.
    pub fn head_answer(&mut self, token: u64, answer: Result<HeadAnswer, String>) {
        let Some(wait) = self.head_waits.remove(&token) else {
            return;
        };
        match (wait, answer) {
            (HeadWait::Create { conn, req }, Ok(HeadAnswer::Registered(Ok(())))) => {
                self.create_actor_reserved(conn, *req);
            }
            (HeadWait::Create { conn, req }, Ok(HeadAnswer::Registered(Err(existing)))) => {
                let creation = req
                    .spec
                    .as_ref()
                    .and_then(|s| s.actor_creation.clone())
                    .unwrap_or_default();
                if creation.get_if_exists {
                    self.adopt_remote(&existing);
                    self.send(
                        conn,
                        node_op::Op::ActorReply(v1::ActorReply {
                            request_id: req.request_id,
                            actor: existing.actor,
                        }),
                    );
                } else {
                    let namespace = existing
                        .actor
                        .as_ref()
                        .and_then(|a| a.creation.as_ref())
                        .map(|c| c.namespace.clone())
                        .unwrap_or_default();
                    let err = system_error(
                        v1::ErrorKind::AlreadyExists,
                        format!(
                            "The name {} (namespace={namespace}) is already taken.",
                            creation.name
                        ),
                    );
                    self.send_error(conn, req.request_id, err);
                }
            }
            (HeadWait::Create { conn, req }, answer) => {
                let why = match answer {
                    Err(e) => e,
                    Ok(other) => format!("unexpected answer {other:?}"),
                };
                let err = system_error(
                    v1::ErrorKind::Internal,
                    format!("cannot create the named actor: the head could not reserve its name ({why})"),
                );
                self.send_error(conn, req.request_id, err);
            }
            (
                HeadWait::GetActor {
                    conn,
                    request_id,
                    namespace,
                    name,
                },
                answer,
            ) => {
                let live = match answer {
                    Ok(HeadAnswer::Found(Some(record))) => Some(record).filter(|r| {
                        r.actor
                            .as_ref()
                            .is_some_and(|a| a.state != v1::ActorState::Dead as i32)
                    }),
                    _ => None,
                };
                match live {
                    Some(record) => {
                        self.adopt_remote(&record);
                        self.send(
                            conn,
                            node_op::Op::ActorReply(v1::ActorReply {
                                request_id,
                                actor: record.actor,
                            }),
                        );
                    }
                    None => self.send_error(
                        conn,
                        request_id,
                        system_error(
                            v1::ErrorKind::NotFound,
                            format!(
                                "Failed to look up actor with name '{name}' in namespace '{namespace}'"
                            ),
                        ),
                    ),
                }
            }
            (HeadWait::Owner(actor_id), answer) => {
                let found = match answer {
                    Ok(HeadAnswer::Found(Some(record))) => Ok(record),
                    Ok(_) => Err(format!(
                        "no actor {actor_id} is known to this cluster (it was never created, or it died)"
                    )),
                    Err(e) => Err(format!("cannot find the node of actor {actor_id}: {e}")),
                };
                match found {
                    Ok(record)
                        if record
                            .actor
                            .as_ref()
                            .is_some_and(|a| a.state != v1::ActorState::Dead as i32) =>
                    {
                        self.adopt_remote(&record);
                    }
                    Ok(record) => {
                        let cause = record.actor.map(|a| a.death_cause).unwrap_or_default();
                        if let Some(r) = self.remote_actors.get_mut(&actor_id) {
                            r.lost = Some(format!("The actor {actor_id} died: {cause}"));
                        }
                    }
                    Err(why) => {
                        if let Some(r) = self.remote_actors.get_mut(&actor_id) {
                            r.lost = Some(why);
                        }
                    }
                }
                if let Some(r) = self.remote_actors.get_mut(&actor_id) {
                    r.looking_up = false;
                }
                self.pump_remote_actor(actor_id);
            }
        }
    }
}
