//! `reminders`: the assistant messages the person back on their platform at a set time.
//! Reminders are kept in `reminders.redb` in the data directory, so they survive restarts;
//! the [`Reminders::run`] loop hands each one, when due, to a [`ReminderSink`] (the bridge
//! dispatcher, which journals it in its outbox before delivering).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use troupe_actors::skill::{Skill, SkillCall, SkillError, SkillErrorCode, SkillManifest};
use troupe_actors::storage::Storage;

use super::time::{describe, parse_moment, zone};
use super::{text_argument, tool};

const REMINDERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("reminders");
/// Most reminders waiting per person.
const MAX_PER_PERSON: usize = 200;
/// Longest a reminder may be set ahead.
const MAX_AHEAD_DAYS: i64 = 5 * 366;
/// Longest the loop sleeps without looking again.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Wait before delivering again after the sink failed.
const RETRY_WAIT: Duration = Duration::from_secs(15);
/// redb's page cache for the schedule: a few hundred small rows at most.
const CACHE_BYTES: usize = 2 * 1024 * 1024;

/// One reminder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reminder {
    pub id: String,
    /// Whose it is (`person:ada`, `telegram:42`).
    pub person: String,
    pub text: String,
    /// Unix seconds when it is due.
    pub due: i64,
    /// The zone it was set in (for showing it back).
    pub timezone: String,
    /// Where it goes: what the bridge put in the message (`{"bridge", "destination"}`).
    pub route: Value,
}

/// Why a due reminder did not go out (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum NotDelivered {
    #[error("the reminder's destination is unreadable: {0}")]
    Destination(#[source] serde_json::Error),
    #[error(transparent)]
    Bridge(#[from] troupe_actors::bridge::BridgeError),
    #[error("{0} has no web chat open; it waits until they connect")]
    NotConnected(String),
    #[error("the reminder names no way to reach its person")]
    NoRoute,
}

/// Delivers due reminders.
#[async_trait::async_trait]
pub trait ReminderSink: Send + Sync + 'static {
    /// Returns once the reminder is safely on its way (journaled for delivery).
    async fn deliver(&self, reminder: &Reminder) -> Result<(), NotDelivered>;
}

/// The schedule.
pub struct Reminders {
    /// `reminders.redb`, opened on first use: a node that never had a reminder neither
    /// creates nor opens it (nothing on the start-up path). It recovers by itself after a
    /// failed write (see [`troupe_actors::storage`]).
    storage: Storage,
    changed: Notify,
}

/// Creates the table.
fn prepare(transaction: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    transaction.open_table(REMINDERS).map(drop)
}

fn storage_error(error: impl std::fmt::Display) -> SkillError {
    SkillError::failed(format!("the reminders could not be stored: {error}"))
}

impl Reminders {
    /// The schedule kept in `reminders.redb` in `data_dir` (created with the first reminder).
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        Ok(Self {
            storage: Storage::lazy(
                "reminders",
                &data_dir.join("reminders.redb"),
                CACHE_BYTES,
                prepare,
            ),
            changed: Notify::new(),
        })
    }

    /// The schedule's database, for health reports next to the other stores.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Runs `work` on the database off the async runtime (redb waits on the disk); answers
    /// `absent` when there is no database and `create` is false.
    async fn blocking<T: Send + 'static>(
        &self,
        create: bool,
        absent: T,
        work: impl FnOnce(&Database) -> Result<T, SkillError> + Send + 'static,
    ) -> Result<T, SkillError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            if create {
                return storage.run(work).map_err(storage_error)?;
            }
            match storage.run_existing(work).map_err(storage_error)? {
                Some(done) => done,
                None => Ok(absent),
            }
        })
        .await
        .map_err(storage_error)?
    }

    /// Every reminder, soonest first.
    pub async fn all(&self) -> Result<Vec<Reminder>, SkillError> {
        let mut reminders = self
            .blocking(false, Vec::new(), |db| {
                let read = db.begin_read().map_err(storage_error)?;
                let table = read.open_table(REMINDERS).map_err(storage_error)?;
                let mut all = Vec::new();
                for row in table.iter().map_err(storage_error)? {
                    let (_, value) = row.map_err(storage_error)?;
                    match serde_json::from_slice::<Reminder>(value.value()) {
                        Ok(reminder) => all.push(reminder),
                        Err(error) => tracing::error!(%error, "an unreadable reminder is skipped"),
                    }
                }
                Ok(all)
            })
            .await?;
        reminders.sort_by_key(|reminder| reminder.due);
        Ok(reminders)
    }

    async fn insert(&self, reminder: Reminder) -> Result<(), SkillError> {
        self.blocking(true, (), move |db| {
            let bytes = serde_json::to_vec(&reminder).map_err(storage_error)?;
            let write = db.begin_write().map_err(storage_error)?;
            write
                .open_table(REMINDERS)
                .map_err(storage_error)?
                .insert(reminder.id.as_str(), bytes.as_slice())
                .map_err(storage_error)?;
            write.commit().map_err(storage_error)
        })
        .await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Removes a reminder; whether it was there.
    pub async fn remove(&self, id: &str) -> Result<bool, SkillError> {
        let id = id.to_owned();
        self.blocking(false, false, move |db| {
            let write = db.begin_write().map_err(storage_error)?;
            let existed = write
                .open_table(REMINDERS)
                .map_err(storage_error)?
                .remove(id.as_str())
                .map_err(storage_error)?
                .is_some();
            write.commit().map_err(storage_error)?;
            Ok(existed)
        })
        .await
    }

    /// Looks at the schedule now (someone who was unreachable may be reachable again).
    pub fn wake(&self) {
        self.changed.notify_one();
    }

    /// Delivers reminders as they fall due, until `shutdown` completes. A reminder that
    /// fell due while the node was down is delivered at start.
    pub async fn run(
        self: Arc<Self>,
        sink: Arc<dyn ReminderSink>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let wait = match self.deliver_due(sink.as_ref()).await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::error!(%error, "reminders could not be read");
                    RETRY_WAIT
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.changed.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Hands every due reminder to `sink`; returns how long until the next one.
    async fn deliver_due(&self, sink: &dyn ReminderSink) -> Result<Duration, SkillError> {
        let now = Timestamp::now().as_second();
        let mut wait = MAX_SLEEP;
        for reminder in self.all().await? {
            if reminder.due > now {
                let until = Duration::from_secs(u64::try_from(reminder.due - now).unwrap_or(0));
                return Ok(wait.min(until));
            }
            match sink.deliver(&reminder).await {
                Ok(()) => {
                    self.remove(&reminder.id).await?;
                    tracing::info!(id = %reminder.id, person = %reminder.person, "reminder sent");
                }
                Err(error) => {
                    tracing::warn!(id = %reminder.id, %error, "reminder not delivered yet; retrying");
                    wait = RETRY_WAIT;
                }
            }
        }
        Ok(wait)
    }
}

/// The skill over the schedule.
pub(super) struct RemindersSkill {
    reminders: Arc<Reminders>,
}

impl RemindersSkill {
    pub(super) fn new(reminders: Arc<Reminders>) -> Self {
        Self { reminders }
    }

    async fn set(&self, call: &SkillCall) -> Result<Value, SkillError> {
        let route = call.session.reply_route.clone().ok_or_else(|| {
            SkillError::failed(format!(
                "reminders are delivered through a messaging platform (Telegram, Slack, …) or \
                 the web chat; this conversation came through `{}`, which cannot be messaged later",
                call.session.platform
            ))
        })?;
        let arguments = &call.arguments;
        let text = text_argument(arguments, "text")?.trim().to_owned();
        let zone_name = arguments["timezone"].as_str().unwrap_or("UTC").to_owned();
        let zone = zone(Some(&zone_name))?;
        let now = Timestamp::now();
        let due = match (arguments["at"].as_str(), arguments["in_minutes"].as_f64()) {
            (Some(at), None) => parse_moment(at, &zone)?.timestamp(),
            (None, Some(minutes)) if minutes > 0.0 => {
                let seconds = (minutes * 60.0).round() as i64;
                now.checked_add(seconds.seconds())
                    .map_err(|error| SkillError::invalid(error.to_string()))?
            }
            _ => {
                return Err(SkillError::invalid(
                    "give either `at` (a date and time) or `in_minutes` (a positive number)",
                ));
            }
        };
        if due <= now {
            return Err(SkillError::invalid(
                "that time has passed; give a time in the future",
            ));
        }
        if due.as_second() - now.as_second() > MAX_AHEAD_DAYS * 86_400 {
            return Err(SkillError::invalid(
                "reminders may be set at most five years ahead",
            ));
        }
        let mine = self.reminders.all().await?;
        if mine
            .iter()
            .filter(|r| r.person == call.session.person)
            .count()
            >= MAX_PER_PERSON
        {
            return Err(SkillError::failed(format!(
                "you already have {MAX_PER_PERSON} reminders; cancel some first"
            )));
        }
        let reminder = Reminder {
            id: format!("rem-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            person: call.session.person.clone(),
            text,
            due: due.as_second(),
            timezone: zone_name,
            route,
        };
        self.reminders.insert(reminder.clone()).await?;
        Ok(
            json!({"id": reminder.id, "text": reminder.text, "due": describe(&due.to_zoned_datetime(zone))}),
        )
    }

    async fn list(&self, person: &str) -> Result<Value, SkillError> {
        let listed: Vec<Value> = self
            .reminders
            .all()
            .await?
            .into_iter()
            .filter(|reminder| reminder.person == person)
            .map(|reminder| {
                let zone = zone(Some(&reminder.timezone)).unwrap_or(jiff::tz::TimeZone::UTC);
                let due = Timestamp::from_second(reminder.due)
                    .unwrap_or_default()
                    .to_zoned_datetime(zone);
                json!({"id": reminder.id, "text": reminder.text, "due": describe(&due)})
            })
            .collect();
        Ok(json!({"count": listed.len(), "reminders": listed}))
    }

    async fn cancel(&self, person: &str, id: &str) -> Result<Value, SkillError> {
        let owned = self
            .reminders
            .all()
            .await?
            .into_iter()
            .any(|reminder| reminder.id == id && reminder.person == person);
        if !owned || !self.reminders.remove(id).await? {
            return Err(SkillError::new(
                SkillErrorCode::NotFound,
                format!("no reminder `{id}`"),
            ));
        }
        Ok(json!({"cancelled": id}))
    }
}

#[async_trait::async_trait]
impl Skill for RemindersSkill {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        Ok(SkillManifest {
            name: "reminders".into(),
            description: "Messages the person at a set time, on the platform they asked from."
                .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            tools: vec![
                tool(
                    "set",
                    "Sets a reminder: the text is sent to the person at the time. Give `at` \
                     (e.g. 2026-11-28 09:00, in `timezone`) or `in_minutes`.",
                    json!({"type": "object", "properties": {
                        "text": {"type": "string", "minLength": 1, "maxLength": 2000},
                        "at": {"type": "string"},
                        "in_minutes": {"type": "number", "exclusiveMinimum": 0},
                        "timezone": {"type": "string", "description": "IANA zone of `at`; UTC if omitted"}},
                        "required": ["text"], "additionalProperties": false}),
                ),
                tool(
                    "list",
                    "Lists the person's pending reminders.",
                    json!({"type": "object", "properties": {}, "additionalProperties": false}),
                ),
                tool(
                    "cancel",
                    "Cancels a pending reminder by id.",
                    json!({"type": "object", "properties": {"id": {"type": "string"}},
                        "required": ["id"], "additionalProperties": false}),
                ),
            ],
            permissions: Default::default(),
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        match call.action.as_str() {
            "set" => self.set(&call).await,
            "list" => self.list(&call.session.person).await,
            "cancel" => {
                self.cancel(&call.session.person, text_argument(&call.arguments, "id")?)
                    .await
            }
            other => Err(SkillError::invalid(format!("no tool `{other}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use troupe_actors::skill::SkillSession;

    use super::*;

    #[derive(Default)]
    struct Collected(Mutex<Vec<Reminder>>);

    #[async_trait::async_trait]
    impl ReminderSink for Collected {
        async fn deliver(&self, reminder: &Reminder) -> Result<(), NotDelivered> {
            self.0.lock().unwrap().push(reminder.clone());
            Ok(())
        }
    }

    fn call(action: &str, arguments: Value, routed: bool) -> SkillCall {
        SkillCall {
            call_id: "c".into(),
            action: action.into(),
            arguments,
            session: SkillSession {
                platform: "telegram".into(),
                person: "telegram:7".into(),
                reply_route: routed
                    .then(|| json!({"bridge": "tg", "destination": {"chat_id": "7"}})),
                ..SkillSession::default()
            },
        }
    }

    #[tokio::test]
    async fn a_reminder_survives_a_restart_and_fires_once() {
        let dir = tempfile::tempdir().unwrap();
        let skill = RemindersSkill::new(Arc::new(Reminders::open(dir.path()).unwrap()));
        let set = skill
            .execute(call(
                "set",
                json!({"text": "stretch", "in_minutes": 0.02}),
                true,
            ))
            .await
            .unwrap();
        let later = skill
            .execute(call(
                "set",
                json!({"text": "later", "at": "2030-01-01 09:00", "timezone": "Europe/Paris"}),
                true,
            ))
            .await
            .unwrap();
        assert_eq!(later["due"]["datetime"], "2030-01-01T09:00:00+01:00");
        let listed = skill.execute(call("list", json!({}), true)).await.unwrap();
        assert_eq!(listed["count"], 2);
        drop(skill);

        // Reopened, as after a restart: the due one is delivered, the later one waits.
        let reminders = Arc::new(Reminders::open(dir.path()).unwrap());
        let sink = Arc::new(Collected::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(Arc::clone(&reminders).run(sink.clone(), async move {
            let _ = stopped.await;
        }));
        for _ in 0..100 {
            if !sink.0.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        running.await.unwrap();
        let delivered = sink.0.lock().unwrap().clone();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].id, set["id"].as_str().unwrap());
        assert_eq!(delivered[0].route["bridge"], "tg");
        let left = reminders.all().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].text, "later");
    }

    #[tokio::test]
    async fn a_node_without_reminders_never_creates_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let reminders = Reminders::open(dir.path()).unwrap();
        assert!(reminders.all().await.unwrap().is_empty());
        assert!(!reminders.remove("rem-x").await.unwrap());
        assert!(!dir.path().join("reminders.redb").exists());
    }

    #[tokio::test]
    async fn refuses_the_past_unroutable_and_strangers_reminders() {
        let dir = tempfile::tempdir().unwrap();
        let skill = RemindersSkill::new(Arc::new(Reminders::open(dir.path()).unwrap()));
        let past = skill
            .execute(call(
                "set",
                json!({"text": "x", "at": "2001-01-01T00:00:00Z"}),
                true,
            ))
            .await
            .unwrap_err();
        assert!(past.message.contains("passed"));
        let unroutable = skill
            .execute(call("set", json!({"text": "x", "in_minutes": 5}), false))
            .await
            .unwrap_err();
        assert!(unroutable.message.contains("cannot be messaged later"));
        let set = skill
            .execute(call("set", json!({"text": "x", "in_minutes": 5}), true))
            .await
            .unwrap();
        let mut stranger = call("cancel", json!({"id": set["id"]}), true);
        stranger.session.person = "telegram:8".into();
        assert_eq!(
            skill.execute(stranger).await.unwrap_err().code,
            SkillErrorCode::NotFound
        );
        let mine = call("cancel", json!({"id": set["id"]}), true);
        assert!(skill.execute(mine).await.is_ok());
    }
}
