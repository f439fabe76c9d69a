//! One run as an actor. [`RunActor`] owns the run's control (run, pause, cancel) and the
//! task that drives the interpreter; it journals the end of the run however it ends, and
//! stops when the run is over.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::effects::{Effects, StepError, StepErrorCode};
use crate::engine::{Control, RunContext, RunLimits};
use crate::journal::{Record, Replayed, RunJournal, RunStatus, RunSummary};
use crate::metrics as names;
use crate::plan::Workflow;
use crate::template::Scope;

/// What a run actor needs.
pub struct RunArgs {
    pub run: String,
    pub journal: RunJournal,
    /// The journal so far, beginning with `Started`.
    pub records: Vec<Record>,
    pub effects: Arc<dyn Effects>,
    pub replies: Arc<crate::replies::ReplyWaiters>,
    /// Cancelled when the `Runs` actor that started the run is replaced: the run stops
    /// where it is, journaling nothing, to be taken up by the new one.
    pub stop: tokio_util::sync::CancellationToken,
    pub clock: Clock,
    pub limits: RunLimits,
}

pub enum RunMessage {
    /// Pause, resume (`Control::Run`) or cancel; answers the run's summary after it.
    Control {
        control: Control,
        reply: RpcReplyPort<Result<RunSummary, StepError>>,
    },
    /// The interpreter ended.
    Ended,
}

pub struct RunState {
    journal: RunJournal,
    control: watch::Sender<Control>,
    task: tokio::task::JoinHandle<()>,
}

pub struct RunActor;

/// What `Started` fixed for the run.
struct Fixed {
    workflow: Workflow,
    workflows: HashMap<String, Workflow>,
    input: Map<String, Value>,
    started_at: i64,
}

fn fixed(records: &[Record]) -> Result<Fixed, StepError> {
    let Some(Record::Started {
        workflow,
        input,
        definitions,
        at,
        ..
    }) = records.first()
    else {
        return Err(StepError::new(
            StepErrorCode::Storage,
            "the journal does not begin with the run's start",
        ));
    };
    let mut workflows = HashMap::new();
    for definition in definitions {
        let compiled = Workflow::compile(definition.clone())
            .map_err(|error| StepError::new(StepErrorCode::Invalid, error.to_string()))?;
        workflows.insert(compiled.name().to_owned(), compiled);
    }
    let main = workflows.get(workflow).cloned().ok_or_else(|| {
        StepError::new(
            StepErrorCode::Invalid,
            format!("the journal lacks `{workflow}`"),
        )
    })?;
    Ok(Fixed {
        workflow: main,
        workflows,
        input: input.clone(),
        started_at: *at,
    })
}

/// The control the journal left the run in.
fn journaled_control(records: &[Record]) -> Control {
    records
        .iter()
        .rev()
        .find_map(|record| match record {
            Record::Paused { .. } => Some(Control::Pause),
            Record::Resumed { .. } => Some(Control::Run),
            _ => None,
        })
        .unwrap_or(Control::Run)
}

impl Actor for RunActor {
    type Msg = RunMessage;
    type State = RunState;
    type Arguments = RunArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RunArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (control, watcher) = watch::channel(journaled_control(&args.records));
        let journal = args.journal.clone();
        let task = tokio::spawn(async move {
            drive(args, watcher).await;
            let _ = myself.cast(RunMessage::Ended);
        });
        metrics::gauge!(names::RUNS_ACTIVE).increment(1.0);
        Ok(RunState {
            journal,
            control,
            task,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.task.abort();
        metrics::gauge!(names::RUNS_ACTIVE).decrement(1.0);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: RunMessage,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RunMessage::Ended => myself.stop(None),
            RunMessage::Control { control, reply } => {
                let _ = reply.send(state.apply(control).await);
            }
        }
        Ok(())
    }
}

impl RunState {
    async fn apply(&mut self, control: Control) -> Result<RunSummary, StepError> {
        let now = *self.control.borrow();
        let summary = self.journal.summary().await;
        if summary.status.is_over() || now == control || now == Control::Cancel {
            return Ok(summary);
        }
        match control {
            Control::Pause => {
                self.journal
                    .append(&Record::Paused {
                        at: jiff::Timestamp::now().as_millisecond(),
                    })
                    .await?;
            }
            Control::Run => {
                self.journal
                    .append(&Record::Resumed {
                        at: jiff::Timestamp::now().as_millisecond(),
                    })
                    .await?;
            }
            // The task journals the cancellation when it sees it.
            Control::Cancel => {}
        }
        self.control.send_replace(control);
        if control == Control::Cancel {
            // Wait for the task to journal it, so the caller sees the run cancelled.
            let _ = (&mut self.task).await;
        }
        Ok(self.journal.summary().await)
    }
}

/// Runs the interpreter to the end and journals how it ended.
async fn drive(args: RunArgs, control: watch::Receiver<Control>) {
    let RunArgs {
        run,
        journal,
        records,
        effects,
        replies,
        stop,
        clock,
        limits,
    } = args;
    let fixed = match fixed(&records) {
        Ok(fixed) => fixed,
        Err(error) => {
            end(&journal, &run, "", Err(error), &clock).await;
            return;
        }
    };
    let context = RunContext {
        run: run.clone(),
        owner: fixed.workflow.owner().to_owned(),
        workflows: fixed.workflows,
        journal: journal.clone(),
        replayed: Replayed::new(&records),
        effects,
        replies,
        clock,
        control: control.clone(),
        limits,
        entered: AtomicU32::new(0),
    };
    let scope = Scope {
        input: fixed.input,
        steps: Map::new(),
        run: Map::from_iter([
            ("id".to_owned(), Value::String(run.clone())),
            (
                "started_at".to_owned(),
                Value::String(
                    jiff::Timestamp::from_millisecond(fixed.started_at)
                        .map(|at| at.to_string())
                        .unwrap_or_default(),
                ),
            ),
        ]),
        workflow: Map::from_iter([(
            "name".to_owned(),
            Value::String(fixed.workflow.name().to_owned()),
        )]),
    };
    let deadline = fixed
        .workflow
        .deadline()
        .map(|limit| fixed.started_at + crate::clock::millis(limit));
    let mut cancelled = control.clone();
    let outcome = tokio::select! {
        outcome = context.workflow(&fixed.workflow, scope, String::new(), 0) => Some(outcome),
        () = async {
            match deadline {
                Some(deadline) => clock.sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        } => Some(Err(StepError::new(
            StepErrorCode::DeadlineExceeded,
            format!("the run passed its deadline of {}", fixed.workflow.definition().deadline.as_deref().unwrap_or_default()),
        ))),
        _ = cancelled.wait_for(|now| *now == Control::Cancel) => None,
        () = stop.cancelled() => {
            tracing::info!(run = %run, "the run stops with the engine that ran it; it is taken up again");
            return;
        }
    };
    let name = fixed.workflow.name().to_owned();
    match outcome {
        Some(outcome) => end(&journal, &run, &name, outcome, &clock).await,
        None => {
            if let Err(error) = journal
                .append(&Record::Cancelled { at: clock.now_ms() })
                .await
            {
                tracing::error!(run = %run, %error, "could not journal a cancelled run");
            }
            metrics::counter!(names::RUNS_ENDED, "workflow" => name, "status" => "cancelled")
                .increment(1);
            tracing::info!(run = %run, "workflow run cancelled");
        }
    }
}

async fn end(
    journal: &RunJournal,
    run: &str,
    workflow: &str,
    outcome: Result<Value, StepError>,
    clock: &Clock,
) {
    let at = clock.now_ms();
    let (record, status) = match outcome {
        Ok(output) => (Record::Finished { at, output }, RunStatus::Finished),
        Err(error) => {
            tracing::warn!(run = %run, code = ?error.code, %error, "workflow run failed");
            (Record::Failed { at, error }, RunStatus::Failed)
        }
    };
    if let Err(error) = journal.append(&record).await {
        // The run stays unfinished in the store and is taken up again at the next start.
        tracing::error!(run = %run, %error, "could not journal the end of a run");
        return;
    }
    let status = if status == RunStatus::Finished {
        "finished"
    } else {
        "failed"
    };
    metrics::counter!(names::RUNS_ENDED, "workflow" => workflow.to_owned(), "status" => status)
        .increment(1);
    tracing::info!(run = %run, status, "workflow run ended");
}
