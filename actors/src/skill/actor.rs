//! `SkillActor`: one per configured skill. It reads the skill's manifest (again, with
//! backoff, while the skill cannot be reached), runs each call in its own task within the
//! skill's time limit, and marks the skill unavailable when a call finds it gone.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;

use super::directory::{SkillDirectory, timed_out};
use super::{Skill, SkillCall, SkillError, SkillErrorCode};

/// First wait before reading an unreachable skill's manifest again; doubled up to the max.
const FIRST_REFRESH_WAIT: Duration = Duration::from_millis(500);
const MAX_REFRESH_WAIT: Duration = Duration::from_secs(30);

/// Messages of a [`SkillActor`].
pub enum SkillMsg {
    /// Run one call; the result comes on `reply`.
    Execute {
        call: Box<SkillCall>,
        timeout: Duration,
        reply: RpcReplyPort<Result<Value, SkillError>>,
    },
    /// Read the manifest again.
    Refresh,
    /// A manifest read ended (`true`: the skill answered).
    Refreshed(bool),
    /// A call found the skill unreachable.
    Lost(String),
}

/// Start-up arguments of a [`SkillActor`].
pub struct SkillActorArgs {
    pub name: String,
    pub skill: Arc<dyn Skill>,
    pub directory: Arc<SkillDirectory>,
}

/// State of a [`SkillActor`].
pub struct SkillActorState {
    name: String,
    skill: Arc<dyn Skill>,
    directory: Arc<SkillDirectory>,
    refreshing: bool,
    wait: Duration,
}

/// The actor.
#[derive(Debug, Default)]
pub struct SkillActor;

impl Actor for SkillActor {
    type Msg = SkillMsg;
    type State = SkillActorState;
    type Arguments = SkillActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SkillActorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        args.directory.attach(&args.name, myself.clone());
        myself.send_message(SkillMsg::Refresh)?;
        Ok(SkillActorState {
            name: args.name,
            skill: args.skill,
            directory: args.directory,
            refreshing: false,
            wait: FIRST_REFRESH_WAIT,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.skill.close().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SkillMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SkillMsg::Execute {
                call,
                timeout,
                reply,
            } => {
                let skill = Arc::clone(&state.skill);
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(timeout, skill.execute(*call)).await {
                        Ok(result) => result,
                        Err(_) => Err(timed_out(timeout)),
                    };
                    if let Err(error) = &result
                        && error.code == SkillErrorCode::Unavailable
                    {
                        let _ = myself.cast(SkillMsg::Lost(error.message.clone()));
                    }
                    let _ = reply.send(result);
                });
            }
            SkillMsg::Refresh => state.refresh(&myself),
            SkillMsg::Refreshed(true) => {
                state.refreshing = false;
                state.wait = FIRST_REFRESH_WAIT;
            }
            SkillMsg::Refreshed(false) => {
                state.refreshing = false;
                myself.send_after(state.wait, || SkillMsg::Refresh);
                state.wait = (state.wait * 2).min(MAX_REFRESH_WAIT);
            }
            SkillMsg::Lost(error) => {
                state.directory.mark_unavailable(&state.name, &error);
                state.refresh(&myself);
            }
        }
        Ok(())
    }
}

impl SkillActorState {
    /// Reads the manifest in a task, so calls keep flowing meanwhile.
    fn refresh(&mut self, myself: &ActorRef<SkillMsg>) {
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let (skill, directory, name) = (
            Arc::clone(&self.skill),
            Arc::clone(&self.directory),
            self.name.clone(),
        );
        let myself = myself.clone();
        let limit = directory.time_limit(&name).unwrap_or(MAX_REFRESH_WAIT);
        tokio::spawn(async move {
            let read = tokio::time::timeout(limit, skill.manifest()).await;
            let answered = match read {
                Ok(Ok(manifest)) => {
                    directory.publish(&name, &manifest);
                    true
                }
                Ok(Err(error)) => {
                    tracing::warn!(skill = %name, %error, "skill unavailable; retrying");
                    directory.mark_unavailable(&name, &error.to_string());
                    false
                }
                Err(_) => {
                    let error = format!("it sent no manifest within {limit:?}");
                    tracing::warn!(skill = %name, %error, "skill did not answer; retrying");
                    directory.mark_unavailable(&name, &error);
                    false
                }
            };
            let _ = myself.cast(SkillMsg::Refreshed(answered));
        });
    }
}
