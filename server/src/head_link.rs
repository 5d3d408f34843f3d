//! The node's link to the head for the actor directory: the core queues
//! [`HeadCommand`]s (it never does IO), [`run_head_link`] makes the calls
//! one after another, in order, and hands the answers back to the core
//! (`NodeCore::head_answer`). Heartbeats do not use it (see `membership`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_proto::v1::{self, head_service_client::HeadServiceClient};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::local::lock;
use crate::membership::Bearer;
use crate::node::NodeCore;

/// A call the core wants made; `token` (when set) identifies the answer.
#[derive(Debug)]
pub enum HeadCommand {
    RegisterActor {
        record: Box<v1::ActorRecord>,
        token: Option<u64>,
    },
    GetActorInfo {
        request: v1::GetActorInfoRequest,
        token: u64,
    },
    /// A driver connected or left.
    RegisterJob(v1::JobInfo),
    /// The job table, for status (answered on `reply`).
    ListJobs(tokio::sync::oneshot::Sender<Result<Vec<v1::JobInfo>, String>>),
}

/// What the head answered.
#[derive(Debug)]
pub enum HeadAnswer {
    /// Registered, or refused with the actor that has the name.
    Registered(Result<(), Box<v1::ActorRecord>>),
    Found(Option<Box<v1::ActorRecord>>),
    /// The job table.
    Jobs(Vec<v1::JobInfo>),
}

/// Serve the core's head commands until `shutdown`.
pub async fn run_head_link(
    core: Arc<Mutex<NodeCore>>,
    address: String,
    token: String,
    mut commands: mpsc::UnboundedReceiver<HeadCommand>,
    shutdown: CancellationToken,
) {
    let mut client = None;
    loop {
        let command = tokio::select! {
            _ = shutdown.cancelled() => return,
            command = commands.recv() => match command {
                Some(c) => c,
                None => return,
            },
        };
        // One retry on a fresh connection: the head may have restarted.
        let mut result = Err(String::new());
        for _ in 0..2 {
            if client.is_none() {
                client = connect(&address, &token).await.ok();
            }
            let Some(c) = client.as_mut() else {
                result = Err(format!("cannot reach the head at {address}"));
                continue;
            };
            result = call(c, &command).await;
            if result.is_ok() {
                break;
            }
            client = None;
        }
        if let Err(message) = &result {
            tracing::warn!(%message, ?command, "a call to the head failed");
        }
        match command {
            HeadCommand::RegisterActor { token: Some(t), .. }
            | HeadCommand::GetActorInfo { token: t, .. } => lock(&core).head_answer(t, result),
            HeadCommand::ListJobs(reply) => {
                let _ = reply.send(result.map(|answer| match answer {
                    HeadAnswer::Jobs(jobs) => jobs,
                    _ => Vec::new(),
                }));
            }
            HeadCommand::RegisterActor { token: None, .. } | HeadCommand::RegisterJob(_) => {}
        }
    }
}

type Client = HeadServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

async fn connect(address: &str, token: &str) -> anyhow::Result<Client> {
    let channel = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let auth = format!("Bearer {token}").parse()?;
    Ok(HeadServiceClient::with_interceptor(channel, Bearer(auth)))
}

async fn call(client: &mut Client, command: &HeadCommand) -> Result<HeadAnswer, String> {
    match command {
        HeadCommand::RegisterActor { record, .. } => {
            let reply = client
                .register_actor(v1::RegisterActorRequest {
                    record: Some((**record).clone()),
                })
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            Ok(HeadAnswer::Registered(if reply.registered {
                Ok(())
            } else {
                Err(Box::new(reply.existing.unwrap_or_default()))
            }))
        }
        HeadCommand::RegisterJob(job) => {
            client
                .register_job(v1::RegisterJobRequest {
                    job: Some(job.clone()),
                })
                .await
                .map_err(|s| s.message().to_string())?;
            Ok(HeadAnswer::Found(None))
        }
        HeadCommand::ListJobs(_) => Ok(HeadAnswer::Jobs(
            client
                .list_jobs(v1::ListJobsRequest {})
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner()
                .jobs,
        )),
        HeadCommand::GetActorInfo { request, .. } => {
            let reply = client
                .get_actor_info(request.clone())
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            Ok(HeadAnswer::Found(
                reply.record.filter(|_| reply.found).map(Box::new),
            ))
        }
    }
}
