//! When a cluster's sessions may append turn-journal records: only while every live member
//! runs a build that reads them.
//!
//! A build from before the journal reads a session's newest value as a snapshot and cannot
//! decode a record (it reports format version 65535 as unknown), and it refuses to open a
//! sessions bucket that keeps more than one value per key. So during a rolling upgrade the
//! new nodes write whole snapshots, as the old ones do, and leave the bucket as it is. Once
//! every live member's lease says it reads the journal
//! ([`crate::membership::MemberInfo::journal`]), as this node has seen over a whole lease,
//! the bucket is updated to keep [`HISTORY`] values (by whichever node gets there first;
//! the update is idempotent) and sessions start appending. If an older member shows up
//! again, the nodes go back to whole snapshots: each purges the values before it, so the
//! older member reads a snapshot as the newest value of every session written since.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio_util::sync::CancellationToken;

use crate::kv_journal::HISTORY;
use crate::kv_store::{BoxError, JetStreamSnapshotStore};
use crate::membership::Membership;

/// Whether a store may append records, and how to make its bucket keep them.
pub(crate) struct JournalGate {
    jetstream: jetstream::Context,
    /// The bucket's configuration with [`HISTORY`] values per key.
    journaling: kv::Config,
    /// The bucket keeps [`HISTORY`] values per key (once true, it stays true).
    bucket_keeps_records: AtomicBool,
    /// Every live member reads records, as this node last saw.
    members_agree: AtomicBool,
}

impl JournalGate {
    /// A gate for a bucket that keeps `history` values per key. `members_agree` is where a
    /// store with no cluster around it starts: open.
    pub(crate) fn new(
        jetstream: jetstream::Context,
        journaling: kv::Config,
        history: i64,
        members_agree: bool,
    ) -> Self {
        Self {
            jetstream,
            journaling,
            bucket_keeps_records: AtomicBool::new(history >= HISTORY),
            members_agree: AtomicBool::new(members_agree),
        }
    }

    /// Whether a session may append a record now.
    pub(crate) fn is_open(&self) -> bool {
        self.members_agree.load(Ordering::Acquire) && self.bucket_keeps_records()
    }

    /// Whether the bucket keeps more than one value per key (a snapshot then leaves the
    /// values before it to purge).
    pub(crate) fn bucket_keeps_records(&self) -> bool {
        self.bucket_keeps_records.load(Ordering::Acquire)
    }

    /// Every live member reads records: makes the bucket keep them (once) and opens.
    pub(crate) async fn open(&self) -> Result<(), BoxError> {
        if !self.bucket_keeps_records() {
            self.jetstream
                .create_or_update_key_value(self.journaling.clone())
                .await?;
            self.bucket_keeps_records.store(true, Ordering::Release);
        }
        self.members_agree.store(true, Ordering::Release);
        Ok(())
    }

    /// A live member cannot read records: sessions write whole snapshots again.
    pub(crate) fn close(&self) {
        self.members_agree.store(false, Ordering::Release);
    }
}

/// Opens or closes `store`'s journal every `period`, as `membership` sees the members,
/// until `stop`.
pub(crate) async fn run(
    membership: Arc<Membership>,
    store: Arc<JetStreamSnapshotStore>,
    period: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let gate = store.journal_gate();
        let was_open = gate.is_open();
        match membership.older_members() {
            // Not watched for a whole lease yet: the view may miss a member.
            None => {}
            Some(older) if older.is_empty() => {
                if let Err(error) = gate.open().await {
                    tracing::warn!(%error, "cannot make the sessions bucket keep journal records; retrying");
                } else if !was_open {
                    tracing::info!("every member reads the turn journal; sessions append records");
                }
            }
            Some(older) => {
                gate.close();
                if was_open {
                    tracing::warn!(
                        ?older,
                        "a member cannot read the turn journal; sessions write whole snapshots until it leaves"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{MemberInfo, MemberState};
    use async_nats::jetstream::stream::StorageType;
    use troupe_actors::SessionKey;
    use troupe_actors::snapshot::{SessionSnapshot, SnapshotStore};

    fn member(node_id: &str, journal: bool) -> MemberInfo {
        MemberInfo {
            node_id: node_id.into(),
            address: None,
            state: MemberState::Active,
            epoch: 1,
            sessions: 0,
            shards: 0,
            in_flight: 0,
            started_at: 0,
            version: "0.1.0".into(),
            journal,
            pictures: journal,
        }
    }

    #[test]
    fn a_lease_from_a_build_before_the_journal_reads_as_not_journaling() {
        let old = r#"{"node_id":"a","address":null,"state":"active","epoch":3,"sessions":0,
            "shards":2,"in_flight":0,"started_at":1,"version":"0.1.0"}"#;
        let info: MemberInfo = serde_json::from_str(old).unwrap();
        assert!(!info.journal);
        assert!(!info.pictures, "nor as keeping pictures");
        let new = serde_json::to_value(member("b", true)).unwrap();
        assert_eq!(new["journal"], true);
        assert_eq!(new["pictures"], true);
    }

    /// Polls `done` every 20 ms for up to 10 s.
    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what} did not happen within 10 s");
    }

    fn old_build_bucket(name: &str) -> kv::Config {
        kv::Config {
            bucket: name.into(),
            history: 1,
            storage: StorageType::File,
            ..kv::Config::default()
        }
    }

    #[tokio::test]
    async fn an_older_member_keeps_the_bucket_as_it_was_until_it_leaves() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let client = async_nats::connect(server.url()).await.unwrap();
        let jetstream = jetstream::new(client);
        jetstream
            .create_key_value(old_build_bucket("sessions"))
            .await
            .unwrap();
        let members = crate::membership::short_lease_bucket(&jetstream).await;
        // An older build's lease: no `journal` field.
        let old_lease = r#"{"node_id":"old","address":null,"state":"active","epoch":3,
            "sessions":0,"shards":0,"in_flight":0,"started_at":1,"version":"0.1.0"}"#;
        members.put("old", old_lease.into()).await.unwrap();
        let store = Arc::new(
            JetStreamSnapshotStore::open_for_cluster(
                jetstream.clone(),
                "sessions",
                StorageType::File,
                1,
            )
            .await
            .unwrap(),
        );
        let membership = crate::membership::joined_with_short_lease(&members, "new").await;
        let stop = CancellationToken::new();
        let (_reconnects, watching) = tokio::sync::watch::channel(0u64);
        tokio::spawn(Arc::clone(&membership).run_heartbeats(stop.clone()));
        tokio::spawn(Arc::clone(&membership).run_watch(watching, stop.clone()));
        tokio::spawn(run(
            Arc::clone(&membership),
            Arc::clone(&store),
            Duration::from_millis(250),
            stop.clone(),
        ));

        // The older member renews its lease; meanwhile the journal stays shut, and the
        // bucket keeps one value per key, so that an older build still opens it.
        let older_seen =
            |membership: &Membership| membership.older_members() == Some(vec!["old".to_owned()]);
        for _ in 0..200 {
            members.put("old", old_lease.into()).await.unwrap();
            if older_seen(&membership) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(older_seen(&membership), "the older member is named");
        assert!(Arc::clone(&store).journal().is_none());
        jetstream
            .create_key_value(old_build_bucket("sessions"))
            .await
            .expect("an older build still opens the bucket");

        // It leaves: the bucket is made to keep records, and sessions append them.
        members.delete("old").await.unwrap();
        eventually("the journal opening", || store.journal_gate().is_open()).await;
        let info = jetstream.get_stream("KV_sessions").await.unwrap();
        assert_eq!(info.cached_info().config.max_messages_per_subject, HISTORY);
        let key = SessionKey::new_unchecked("ws", "dana");
        store
            .save(SessionSnapshot::empty(key.clone()).encode())
            .await
            .unwrap();
        let journal = Arc::clone(&store).journal().expect("the journal is open");
        journal
            .append(crate::kv_store::tests::record_of(&key, &["kept"], 3))
            .await
            .unwrap();
        assert_eq!(store.load(&key).await.unwrap().unwrap().history.len(), 1);

        // An older member again: whole snapshots until it leaves.
        members.put("old", old_lease.into()).await.unwrap();
        eventually("the journal shutting", || !store.journal_gate().is_open()).await;
        stop.cancel();
    }
}
