//! Long-term memory in a cluster: each person's memories live in one JetStream stream, so
//! memory follows the person to whichever node runs their conversation, and survives any
//! node.
//!
//! - **One message per memory.** A memory is one message (the memory in bincode) on its own
//!   subject of `TROUPE_MEMORY`: `troupe.v1.memory.<person as hex>.<memory id>`. The stream
//!   keeps one message a subject, so forgetting a memory publishes an empty message on its
//!   subject, which replaces it: its text and vector leave the stream and its replicas, and
//!   the empty marker (a subject and no body) tells every node to drop it.
//! - **Held where used.** A node holds the memories of the people whose conversations it
//!   ran, since search is over them. It loads a person by reading their subjects once.
//! - **Kept current.** From the moment it opens, a node follows the whole stream with one
//!   ordered consumer and applies what any node keeps and forgets to the people it holds.
//!   Each person's memories know the last stream sequence they include, so every change is
//!   applied once and in stream order, whether the load or the follower met it first.
//! - **Read your writes.** A change made on this node returns once the follower has
//!   applied it here.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::{Context, stream};
use dashmap::DashMap;
use futures_util::StreamExt;
use tokio::sync::{Mutex, watch};
use troupe_actors::memory::{
    Memory, MemoryError, MemoryId, MemoryStore, NewMemory, PersonMemories, overflow,
};

use crate::stream_read::{BoxError, StreamError};
use crate::subjects::{self, MEMORY as SUBJECTS, MEMORY_STREAM as STREAM};
/// The longest a person's load waits for the stream.
const LOAD_LIMIT: Duration = Duration::from_secs(30);
/// The longest a change waits for the follower to apply it here.
const APPLY_LIMIT: Duration = Duration::from_secs(10);

fn failed(what: &'static str, source: impl Into<BoxError>) -> MemoryError {
    MemoryError::store(StreamError {
        what,
        source: source.into(),
    })
}

/// A person's part of the subject: their id in lowercase hex (any id is a valid token).
fn person_token(person: &str) -> String {
    subjects::hex_token(person)
}

fn person_of_token(token: &str) -> Option<String> {
    let bytes = (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(token.get(at..at + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

fn memory_subject(person: &str, id: &MemoryId) -> String {
    format!("{SUBJECTS}.{}.{id}", person_token(person))
}

/// The person and memory a subject names.
fn parse_subject(subject: &str) -> Option<(String, MemoryId)> {
    let rest = subject.strip_prefix(SUBJECTS)?.strip_prefix('.')?;
    let (person, id) = rest.split_once('.')?;
    Some((person_of_token(person)?, MemoryId::parse(id)?))
}

/// One person's memories as this node holds them.
struct Held {
    /// Whether `memories` were read from the stream (else they are to be loaded).
    loaded: bool,
    memories: PersonMemories,
    /// The last stream sequence `memories` include.
    through: u64,
}

impl Held {
    fn empty() -> Self {
        Self {
            loaded: false,
            memories: Arc::new([]),
            through: 0,
        }
    }

    /// Applies the message at `sequence` on memory `id`: a memory kept (or kept again), or
    /// forgotten when `payload` is empty. Older messages than those included are skipped.
    fn apply(&mut self, id: &MemoryId, payload: &[u8], sequence: u64) -> Result<(), MemoryError> {
        if sequence <= self.through {
            return Ok(());
        }
        let mut memories: Vec<Arc<Memory>> = self
            .memories
            .iter()
            .filter(|memory| memory.id != *id)
            .cloned()
            .collect();
        if !payload.is_empty() {
            memories.push(Arc::new(Memory::decode(payload)?));
        }
        self.memories = memories.into();
        self.through = sequence;
        Ok(())
    }
}

type People = Arc<DashMap<String, Arc<Mutex<Held>>>>;

/// Memories in the cluster's JetStream, shared live by every node. Cheap to clone.
#[derive(Clone)]
pub struct JetStreamMemoryStore {
    jetstream: Context,
    stream: stream::Stream,
    people: People,
    /// The last stream sequence the follower applied.
    applied: watch::Receiver<u64>,
    /// One change at a time on this node, so that room is made for each memory once.
    writer: Arc<Mutex<()>>,
}

impl JetStreamMemoryStore {
    /// Prepares the stream (created if missing) and starts following it.
    pub(crate) async fn open(
        jetstream: &Context,
        storage: stream::StorageType,
        replicas: usize,
    ) -> Result<Self, MemoryError> {
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec![format!("{SUBJECTS}.>")],
                max_messages_per_subject: 1,
                storage,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|error| failed("prepare the memory stream", error))?;
        let changes = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{SUBJECTS}.>"),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|error| failed("follow the memory stream", error))?
            .messages()
            .await
            .map_err(|error| failed("follow the memory stream", error))?;
        let people = People::default();
        let (applied_sender, applied) = watch::channel(0);
        tokio::spawn(follow(changes, Arc::clone(&people), applied_sender));
        Ok(Self {
            jetstream: jetstream.clone(),
            stream,
            people,
            applied,
            writer: Arc::default(),
        })
    }

    /// Publishes `payload` on memory `id` of `person`; answers its stream sequence.
    async fn publish(
        &self,
        person: &str,
        id: &MemoryId,
        payload: Vec<u8>,
    ) -> Result<u64, MemoryError> {
        let acknowledged = self
            .jetstream
            .publish(memory_subject(person, id), payload.into())
            .await
            .map_err(|error| failed("store a memory", error))?
            .await
            .map_err(|error| failed("store a memory", error))?;
        Ok(acknowledged.sequence)
    }

    /// Waits until the follower has applied the stream up to `sequence` here.
    async fn applied(&self, sequence: u64) {
        let mut applied = self.applied.clone();
        let waited =
            tokio::time::timeout(APPLY_LIMIT, applied.wait_for(|seen| *seen >= sequence)).await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::warn!(
                sequence,
                "a memory change is stored but this node has not seen it yet; it may read older memories for a while"
            );
        }
    }

    /// Reads `person`'s memories from the stream: every memory kept and not forgotten,
    /// oldest first, with the last sequence read.
    async fn load(&self, person: &str) -> Result<Held, MemoryError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{SUBJECTS}.{}.>", person_token(person)),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|error| failed("read a person's memories", error))?;
        let mut held = Held {
            loaded: true,
            ..Held::empty()
        };
        crate::stream_read::read_to_end(
            consumer,
            LOAD_LIMIT,
            |message, sequence| match parse_subject(&message.subject) {
                Some((_, id)) => held.apply(&id, &message.payload, sequence),
                None => Ok(()),
            },
            |error| failed("read a person's memories", error),
        )
        .await?;
        Ok(held)
    }
}

/// Applies every change to the memory stream, in order, to the people held here.
async fn follow(mut changes: pull::Ordered, people: People, applied: watch::Sender<u64>) {
    while let Some(change) = changes.next().await {
        let message = match change {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "following the memory stream failed; retrying");
                continue;
            }
        };
        let Ok(sequence) = message.info().map(|info| info.stream_sequence) else {
            continue;
        };
        if let Some((person, id)) = parse_subject(&message.subject) {
            let slot = people.get(&person).map(|slot| Arc::clone(&slot));
            if let Some(slot) = slot {
                let mut held = slot.lock().await;
                // One not yet loaded reads this change when it loads.
                if held.loaded
                    && let Err(error) = held.apply(&id, &message.payload, sequence)
                {
                    tracing::warn!(%error, %person, "a memory from the cluster could not be read");
                    held.through = sequence;
                }
            }
        }
        if applied.send(sequence).is_err() {
            return;
        }
    }
    tracing::warn!("the memory stream's follower stopped; memories held here no longer change");
}

#[async_trait::async_trait]
impl MemoryStore for JetStreamMemoryStore {
    async fn add(&self, person: &str, memory: NewMemory) -> Result<Memory, MemoryError> {
        let _writing = self.writer.lock().await;
        let current = self.all(person).await?;
        let kept = Memory::kept(memory);
        let mut last = self.publish(person, &kept.id, kept.encode()?).await?;
        for dropped in overflow(&current) {
            last = self.publish(person, &dropped, Vec::new()).await?;
        }
        self.applied(last).await;
        Ok(kept)
    }

    async fn all(&self, person: &str) -> Result<PersonMemories, MemoryError> {
        let held = self.people.get(person).map(|slot| Arc::clone(&slot));
        let slot = held.unwrap_or_else(|| {
            Arc::clone(
                &self
                    .people
                    .entry(person.to_owned())
                    .or_insert_with(|| Arc::new(Mutex::new(Held::empty()))),
            )
        });
        let mut held = slot.lock().await;
        if !held.loaded {
            // Under the lock, so that the follower applies what it meets meanwhile after.
            *held = self.load(person).await?;
        }
        Ok(Arc::clone(&held.memories))
    }

    async fn forget(&self, person: &str, ids: &[MemoryId]) -> Result<usize, MemoryError> {
        let _writing = self.writer.lock().await;
        let current = self.all(person).await?;
        let mut forgotten = 0;
        let mut last = None;
        for memory in current.iter().filter(|memory| ids.contains(&memory.id)) {
            last = Some(self.publish(person, &memory.id, Vec::new()).await?);
            forgotten += 1;
        }
        if let Some(last) = last {
            self.applied(last).await;
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
