//! Test doubles of the engine's own traits: a [`WorkflowStore`] in memory and [`Effects`]
//! that record every request (by idempotency key) and answer as a test tells them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::effects::{
    Effects, ModelRequest, OutgoingMessage, StepError, StepErrorCode, ToolRequest,
};
use crate::journal::{JournalError, Record, RunSummary, ScheduleState, WorkflowStore};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Journals in memory.
#[derive(Debug, Default)]
pub struct MemoryWorkflowStore {
    journals: Mutex<BTreeMap<String, Vec<Vec<u8>>>>,
    summaries: Mutex<BTreeMap<String, RunSummary>>,
    schedules: Mutex<HashMap<String, ScheduleState>>,
}

#[async_trait::async_trait]
impl WorkflowStore for MemoryWorkflowStore {
    async fn append(
        &self,
        run: &str,
        seq: u32,
        record: Vec<u8>,
        summary: &RunSummary,
    ) -> Result<(), JournalError> {
        // Keyed by (run, seq) like the real stores: a record at a seq that exists replaces it.
        let mut journals = lock(&self.journals);
        let journal = journals.entry(run.to_owned()).or_default();
        let seq = seq as usize;
        if seq < journal.len() {
            journal[seq] = record;
        } else {
            journal.push(record);
        }
        lock(&self.summaries).insert(run.to_owned(), summary.clone());
        Ok(())
    }

    async fn records(&self, run: &str) -> Result<Vec<Record>, JournalError> {
        lock(&self.journals)
            .get(run)
            .map(|records| {
                records
                    .iter()
                    .map(|bytes| serde_json::from_slice(bytes).map_err(JournalError::Corrupt))
                    .collect()
            })
            .unwrap_or(Ok(Vec::new()))
    }

    async fn summaries(&self) -> Result<Vec<RunSummary>, JournalError> {
        Ok(lock(&self.summaries).values().cloned().collect())
    }

    async fn schedule(&self, key: &str) -> Result<ScheduleState, JournalError> {
        Ok(lock(&self.schedules).get(key).cloned().unwrap_or_default())
    }

    async fn prune(&self, before_ms: i64) -> Result<usize, JournalError> {
        let mut summaries = lock(&self.summaries);
        let ended: Vec<String> = summaries
            .values()
            .filter(|summary| summary.status.is_over() && summary.updated_ms < before_ms)
            .map(|summary| summary.run.clone())
            .collect();
        let mut journals = lock(&self.journals);
        for run in &ended {
            summaries.remove(run);
            journals.remove(run);
        }
        Ok(ended.len())
    }

    async fn set_schedule(&self, key: &str, state: &ScheduleState) -> Result<(), JournalError> {
        lock(&self.schedules).insert(key.to_owned(), state.clone());
        Ok(())
    }
}

/// How the recording effects answer a tool.
#[derive(Clone, Debug)]
pub enum ToolScript {
    /// Answer `value` after `delay`.
    Answer { value: Value, delay: Duration },
    /// Fail (retryably) this many times, then answer `value`.
    FailFirst { failures: u32, value: Value },
}

/// Effects that record each request's idempotency key and answer from a script.
#[derive(Debug, Default)]
pub struct RecordingEffects {
    tools: Mutex<HashMap<String, ToolScript>>,
    calls: Mutex<Vec<String>>,
    sent: Mutex<Vec<(String, String)>>,
}

impl RecordingEffects {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// How `tool` answers.
    pub fn script(&self, tool: &str, script: ToolScript) {
        lock(&self.tools).insert(tool.to_owned(), script);
    }

    /// The idempotency keys of every request, in the order they came.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    /// Messages sent: (recipient, text).
    pub fn sent(&self) -> Vec<(String, String)> {
        lock(&self.sent).clone()
    }
}

#[async_trait::async_trait]
impl Effects for RecordingEffects {
    async fn model(&self, request: ModelRequest) -> Result<Value, StepError> {
        lock(&self.calls).push(request.key.as_str().to_owned());
        Ok(Value::String(format!("summary of: {}", request.prompt)))
    }

    async fn tool(&self, request: ToolRequest) -> Result<Value, StepError> {
        let attempt = {
            let mut calls = lock(&self.calls);
            calls.push(request.key.as_str().to_owned());
            let prefix = request
                .key
                .as_str()
                .rsplit_once(':')
                .map_or("", |(head, _)| head);
            calls.iter().filter(|key| key.starts_with(prefix)).count()
        };
        let script = lock(&self.tools).get(&request.tool).cloned();
        match script {
            Some(ToolScript::Answer { value, delay }) => {
                tokio::time::sleep(delay).await;
                Ok(value)
            }
            Some(ToolScript::FailFirst { failures, value }) => {
                if attempt as u32 <= failures {
                    Err(StepError::new(
                        StepErrorCode::Failed,
                        "the service answered 503",
                    ))
                } else {
                    Ok(value)
                }
            }
            None => Ok(json!({"tool": request.tool, "arguments": request.arguments})),
        }
    }

    async fn send(&self, message: OutgoingMessage) -> Result<Value, StepError> {
        lock(&self.calls).push(message.key.as_str().to_owned());
        let to = match &message.to {
            crate::effects::Recipient::Web { sender } => format!("web:{sender}"),
            crate::effects::Recipient::Bridge { bridge, chat } => format!("{bridge}:{chat}"),
        };
        lock(&self.sent).push((to, message.text));
        Ok(json!({"sent": true}))
    }
}
