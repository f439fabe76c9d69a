//! Actor tests of a whole node: sessions, registry, model workers and the supervisor,
//! with a scripted provider and an in-memory snapshot store, on tokio's paused clock: a
//! model that takes 200 ms or a timeout of 300 ms costs no wall time, and runs the same
//! way on a loaded machine.

use std::sync::Arc;
use std::time::Duration;

use crate::SessionKey;
use crate::message::{ContentType, InboundMessage, MessageParts};
use crate::model_worker::ProviderPolicy;
use crate::node::{NodeHandle, NodeSetup, ProviderSetup, start_node};
use crate::provider::{ModelProvider, ProviderErrorKind, Role};
use crate::session::SessionConfig;
use crate::snapshot::{MemorySnapshotStore, SnapshotStore};
use crate::supervisor::RestartBudget;
use crate::testing::{Scripted, ScriptedProvider};
use crate::turn::{ErrorCode, TurnEvent};

pub(crate) fn session_config() -> SessionConfig {
    SessionConfig {
        system_prompt: "be kind".into(),
        history_window: 6,
        idle_passivate: Duration::from_secs(600),
        provider: "main".into(),
        turn_timeout: Duration::from_secs(5),
        tools: crate::skill::ToolPolicy::default(),
    }
}

pub(crate) fn quick_policy() -> ProviderPolicy {
    ProviderPolicy {
        timeout: Duration::from_millis(300),
        max_retries: 2,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_concurrency: 8,
        fallbacks: Vec::new(),
    }
}

pub(crate) struct TestNode {
    pub(crate) handle: NodeHandle,
    pub(crate) store: Arc<MemorySnapshotStore>,
}

/// A node with these providers (the session asks `config.provider`).
pub(crate) async fn node_with(
    providers: Vec<(Arc<dyn ModelProvider>, ProviderPolicy)>,
    config: SessionConfig,
    store: Arc<MemorySnapshotStore>,
) -> TestNode {
    let setup = NodeSetup {
        session: config,
        store: Arc::clone(&store) as Arc<dyn SnapshotStore>,
        providers: providers
            .into_iter()
            .map(|(provider, policy)| ProviderSetup { provider, policy })
            .collect(),
        skills: Vec::new(),
        budget: RestartBudget::default(),
        backlog: crate::backlog::BacklogLimits::default(),
        turn_context: None,
        inbox: None,
        uploads: None,
        memories: None,
        usage: None,
    };
    let (handle, _) = start_node(setup, |_| Vec::new()).await.unwrap();
    TestNode { handle, store }
}

pub(crate) async fn scripted_node(script: Vec<Scripted>) -> (TestNode, Arc<ScriptedProvider>) {
    let provider = Arc::new(ScriptedProvider::new("main", script));
    let node = node_with(
        vec![(provider.clone(), quick_policy())],
        session_config(),
        Arc::new(MemorySnapshotStore::new()),
    )
    .await;
    (node, provider)
}

pub(crate) fn text_message(id: &str, conversation: &str, payload: &str) -> InboundMessage {
    message_from(conversation, id, conversation, payload)
}

/// A message `sender` writes into `conversation`.
pub(crate) fn message_from(
    sender: &str,
    id: &str,
    conversation: &str,
    payload: &str,
) -> InboundMessage {
    InboundMessage::new(MessageParts {
        id: id.into(),
        platform: "test".into(),
        sender_id: sender.into(),
        conversation_id: conversation.into(),
        content_type: ContentType::Text,
        payload: payload.into(),
        timestamp: 1,
        reply_to: None,
        attachments: Vec::new(),
        metadata: Default::default(),
    })
    .expect("a valid message")
}

/// Collects a turn's events up to and including the final one.
pub(crate) async fn collect(
    mut events: crate::turn::TurnEventReceiver,
) -> (Vec<String>, TurnEvent) {
    let mut deltas = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("turn finished in time")
            .expect("turn ended with a final event");
        match event {
            TurnEvent::Delta { text, .. } => deltas.push(text),
            last => return (deltas, last),
        }
    }
}

pub(crate) async fn reply_text(
    node: &NodeHandle,
    id: &str,
    conversation: &str,
    payload: &str,
) -> String {
    let (_, last) = collect(node.route(text_message(id, conversation, payload)).unwrap()).await;
    match last {
        TurnEvent::Reply { reply, .. } => reply.payload,
        other => panic!("expected a reply, got {other:?}"),
    }
}

pub(crate) fn key(conversation: &str) -> SessionKey {
    SessionKey::new_unchecked("test", conversation)
}

#[tokio::test(start_paused = true)]
async fn streams_deltas_then_the_full_reply_and_keeps_history() {
    let (node, provider) =
        scripted_node(vec![Scripted::Text(vec!["Hel".into(), "lo".into()])]).await;
    let (deltas, last) = collect(
        node.handle
            .route(text_message("c1", "alice", "hi"))
            .unwrap(),
    )
    .await;
    assert_eq!(deltas, ["Hel", "lo"]);
    let TurnEvent::Reply { reply, .. } = last else {
        panic!("{last:?}")
    };
    assert_eq!(reply.payload, "Hello");
    assert_eq!(reply.in_reply_to, "c1");
    assert_eq!(reply.recipient_id, "alice");
    let request = &provider.requests()[0];
    assert_eq!(request.system_prompt.as_deref(), Some("be kind"));
    let view = node.handle.history(key("alice")).await.unwrap().unwrap();
    let roles: Vec<Role> = view.history.iter().map(|entry| entry.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant]);
    assert!(
        node.store.load(&key("alice")).await.unwrap().is_some(),
        "saved before the reply"
    );
}

#[tokio::test(start_paused = true)]
async fn history_window_is_bounded_and_sent_to_the_model() {
    let (node, provider) = scripted_node(Vec::new()).await;
    for turn in 0..5 {
        reply_text(
            &node.handle,
            &format!("m{turn}"),
            "bob",
            &format!("q{turn}"),
        )
        .await;
    }
    let view = node.handle.history(key("bob")).await.unwrap().unwrap();
    assert_eq!(view.history.len(), 6);
    assert_eq!(view.history[0].content, "q2");
    let last_request = provider.requests().pop().unwrap();
    // The window [a1, q2, a2, q3, a3, q4] is sent from its first question: a prompt never
    // starts with an answer (Anthropic refuses that, and a cut tool round would be orphaned).
    assert_eq!(last_request.messages.len(), 5);
    assert_eq!(&*last_request.messages[0].content, "q2");
    assert_eq!(&*last_request.messages.last().unwrap().content, "q4");
}

#[tokio::test(start_paused = true)]
async fn one_session_is_ordered_and_sessions_never_wait_on_each_other() {
    let (node, _) = scripted_node(vec![
        Scripted::Delayed(Duration::from_millis(200), "slow".into()),
        Scripted::Text(vec!["fast".into()]),
    ])
    .await;
    let slow = node
        .handle
        .route(text_message("s1", "slowpoke", "first"))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let same_session = node
        .handle
        .route(text_message("s2", "slowpoke", "second"))
        .unwrap();
    let other_session = node
        .handle
        .route(text_message("o1", "other", "hi"))
        .unwrap();
    let (_, other) = collect(other_session).await;
    let TurnEvent::Reply { reply, .. } = other else {
        panic!("{other:?}")
    };
    assert_eq!(
        reply.payload, "fast",
        "the other session answered while the slow one waited"
    );
    let (_, first) = collect(slow).await;
    let (_, second) = collect(same_session).await;
    assert!(matches!(first, TurnEvent::Reply { ref reply, .. } if reply.payload == "slow"));
    assert!(
        matches!(second, TurnEvent::Reply { ref reply, .. } if reply.payload == "echo: second")
    );
}

#[tokio::test(start_paused = true)]
async fn a_repeated_id_gets_the_first_reply_without_asking_the_model_again() {
    let (node, provider) = scripted_node(vec![Scripted::Text(vec!["once".into()])]).await;
    let first = reply_text(&node.handle, "same", "carol", "hello").await;
    let second = reply_text(&node.handle, "same", "carol", "hello").await;
    assert_eq!(first, "once");
    assert_eq!(second, "once");
    assert_eq!(provider.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_passivate_and_come_back_with_their_history() {
    let provider = Arc::new(ScriptedProvider::new("main", Vec::new()));
    let config = SessionConfig {
        idle_passivate: Duration::from_millis(40),
        ..session_config()
    };
    let node = node_with(
        vec![(provider.clone(), quick_policy())],
        config,
        Arc::new(MemorySnapshotStore::new()),
    )
    .await;
    reply_text(&node.handle, "p1", "dave", "remember me").await;
    let mut waited = Duration::ZERO;
    while !node.handle.active_sessions().await.unwrap().is_empty() {
        assert!(waited < Duration::from_secs(5), "session never passivated");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    reply_text(&node.handle, "p2", "dave", "and now?").await;
    let last_request = provider.requests().pop().unwrap();
    let contents: Vec<&str> = last_request.messages.iter().map(|m| &*m.content).collect();
    assert_eq!(contents, ["remember me", "echo: remember me", "and now?"]);
}

#[tokio::test(start_paused = true)]
async fn a_new_node_on_the_same_store_continues_every_conversation() {
    let store = Arc::new(MemorySnapshotStore::new());
    let first = node_with(
        vec![(
            Arc::new(ScriptedProvider::new("main", Vec::new())),
            quick_policy(),
        )],
        session_config(),
        Arc::clone(&store),
    )
    .await;
    reply_text(&first.handle, "k1", "erin", "before restart").await;
    first.handle.shutdown().await;
    let provider = Arc::new(ScriptedProvider::new("main", Vec::new()));
    let second = node_with(
        vec![(provider.clone(), quick_policy())],
        session_config(),
        store,
    )
    .await;
    reply_text(&second.handle, "k2", "erin", "after restart").await;
    assert_eq!(provider.requests()[0].messages.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn provider_errors_reach_the_user_and_leave_no_trace_in_history() {
    let (node, _) =
        scripted_node(vec![Scripted::Fail(ProviderErrorKind::Unauthorized, None)]).await;
    let (_, last) = collect(
        node.handle
            .route(text_message("e1", "frank", "hi"))
            .unwrap(),
    )
    .await;
    let TurnEvent::Failed { in_reply_to, error } = last else {
        panic!("{last:?}")
    };
    assert_eq!(in_reply_to, "e1");
    assert_eq!(error.code, ErrorCode::ProviderUnauthorized);
    assert!(node.handle.history(key("frank")).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn rate_limits_are_retried_after_the_requested_wait() {
    let (node, provider) = scripted_node(vec![
        Scripted::Fail(
            ProviderErrorKind::RateLimited,
            Some(Duration::from_millis(30)),
        ),
        Scripted::Fail(ProviderErrorKind::Server, None),
        Scripted::Text(vec!["third time".into()]),
    ])
    .await;
    assert_eq!(
        reply_text(&node.handle, "r1", "gina", "hi").await,
        "third time"
    );
    assert_eq!(provider.requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_times_out_and_the_fallback_answers() {
    let main = Arc::new(ScriptedProvider::new("main", vec![Scripted::Hang]));
    let backup = Arc::new(ScriptedProvider::new(
        "backup",
        vec![Scripted::Text(vec!["from backup".into()])],
    ));
    let main_policy = ProviderPolicy {
        max_retries: 0,
        fallbacks: vec!["backup".into()],
        ..quick_policy()
    };
    let node = node_with(
        vec![(main, main_policy), (backup.clone(), quick_policy())],
        session_config(),
        Arc::new(MemorySnapshotStore::new()),
    )
    .await;
    assert_eq!(
        reply_text(&node.handle, "f1", "hank", "hi").await,
        "from backup"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_without_fallback_gives_a_timeout_error() {
    let main = Arc::new(ScriptedProvider::new("main", vec![Scripted::Hang]));
    let policy = ProviderPolicy {
        max_retries: 0,
        ..quick_policy()
    };
    let node = node_with(
        vec![(main, policy)],
        session_config(),
        Arc::new(MemorySnapshotStore::new()),
    )
    .await;
    let (_, last) = collect(node.handle.route(text_message("h1", "ivy", "hi")).unwrap()).await;
    let TurnEvent::Failed { error, .. } = last else {
        panic!("{last:?}")
    };
    assert_eq!(error.code, ErrorCode::ProviderTimeout);
}

#[tokio::test(start_paused = true)]
async fn reset_forgets_the_conversation() {
    let (node, _) = scripted_node(Vec::new()).await;
    reply_text(&node.handle, "x1", "jack", "hi").await;
    assert!(node.handle.reset(key("jack")).await.unwrap());
    assert!(node.handle.history(key("jack")).await.unwrap().is_none());
    assert!(node.store.load(&key("jack")).await.unwrap().is_none());
    assert!(!node.handle.reset(key("jack")).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn shutdown_refuses_new_messages() {
    let (node, _) = scripted_node(Vec::new()).await;
    reply_text(&node.handle, "z1", "kim", "hi").await;
    node.handle.shutdown().await;
    let refused = node
        .handle
        .route(text_message("z2", "kim", "late"))
        .err()
        .unwrap();
    assert_eq!(refused.code, ErrorCode::ShuttingDown);
}

#[tokio::test(start_paused = true)]
async fn a_session_whose_snapshot_failed_stays_in_memory_until_it_is_saved() {
    // Every write may go ahead, and fails until the store works again.
    let store = Arc::new(GatedStore::default());
    store.gate.add_permits(tokio::sync::Semaphore::MAX_PERMITS);
    store.set_failing(true);
    let config = SessionConfig {
        idle_passivate: Duration::from_millis(20),
        ..session_config()
    };
    let setup = NodeSetup {
        session: config,
        store: Arc::clone(&store) as Arc<dyn SnapshotStore>,
        providers: vec![ProviderSetup {
            provider: Arc::new(ScriptedProvider::new("main", Vec::new())),
            policy: quick_policy(),
        }],
        skills: Vec::new(),
        budget: RestartBudget::default(),
        backlog: crate::backlog::BacklogLimits::default(),
        turn_context: None,
        inbox: None,
        uploads: None,
        memories: None,
        usage: None,
    };
    let (handle, _) = start_node(setup, |_| Vec::new()).await.unwrap();
    let (_, last) = collect(handle.route(text_message("d1", "lena", "keep me")).unwrap()).await;
    let TurnEvent::Failed { error, .. } = last else {
        panic!("a turn that could not be stored is not answered: {last:?}")
    };
    assert_eq!(error.code, ErrorCode::StorageError);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        handle.active_sessions().await.unwrap(),
        [key("lena")],
        "not passivated unsaved"
    );
    store.set_failing(false);
    let mut waited = Duration::ZERO;
    while !handle.active_sessions().await.unwrap().is_empty() {
        assert!(
            waited < Duration::from_secs(5),
            "never passivated once saving worked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    assert_eq!(
        store
            .inner
            .load(&key("lena"))
            .await
            .unwrap()
            .unwrap()
            .history
            .len(),
        2
    );
    assert_eq!(
        reply_text(&handle, "d1", "lena", "keep me").await,
        "echo: keep me",
        "the resend gets the stored turn's reply"
    );
}

/// A store whose writes wait for a permit each (or fail while `failing`), recording how
/// many history entries each write held.
struct GatedStore {
    inner: MemorySnapshotStore,
    gate: tokio::sync::Semaphore,
    failing: std::sync::atomic::AtomicBool,
    /// History length of each write, in the order the writes began.
    writes: std::sync::Mutex<Vec<usize>>,
}

impl Default for GatedStore {
    fn default() -> Self {
        Self {
            inner: MemorySnapshotStore::new(),
            gate: tokio::sync::Semaphore::new(0),
            failing: std::sync::atomic::AtomicBool::new(false),
            writes: std::sync::Mutex::default(),
        }
    }
}

impl GatedStore {
    fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    fn writes(&self) -> Vec<usize> {
        self.writes.lock().unwrap().clone()
    }

    async fn wait_for_writes(&self, count: usize) {
        for _ in 0..500 {
            if self.writes().len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("expected {count} writes, saw {:?}", self.writes());
    }
}

#[async_trait::async_trait]
impl SnapshotStore for GatedStore {
    async fn load(
        &self,
        key: &SessionKey,
    ) -> Result<Option<crate::snapshot::SessionSnapshot>, crate::snapshot::StoreError> {
        self.inner.load(key).await
    }

    async fn save(
        &self,
        snapshot: crate::snapshot::EncodedSnapshot,
    ) -> Result<(), crate::snapshot::StoreError> {
        let history = crate::snapshot::SessionSnapshot::decode(&snapshot.key, &snapshot.bytes)
            .expect("a session writes readable snapshots")
            .history
            .len();
        self.writes.lock().unwrap().push(history);
        self.gate.acquire().await.expect("gate open").forget();
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::snapshot::StoreError::Io("disk full".into()));
        }
        self.inner.save(snapshot).await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, crate::snapshot::StoreError> {
        self.inner.delete(key).await
    }

    async fn list(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionKey>, crate::snapshot::StoreError> {
        self.inner.list(after, limit).await
    }

    fn count(&self) -> u64 {
        self.inner.count()
    }
}

async fn gated_node(store: &Arc<GatedStore>) -> NodeHandle {
    gated_node_with(store, Vec::new()).await
}

async fn gated_node_with(store: &Arc<GatedStore>, script: Vec<Scripted>) -> NodeHandle {
    let setup = NodeSetup {
        session: SessionConfig {
            history_window: 40,
            ..session_config()
        },
        store: Arc::clone(store) as Arc<dyn SnapshotStore>,
        providers: vec![ProviderSetup {
            provider: Arc::new(ScriptedProvider::new("main", script)),
            policy: ProviderPolicy {
                timeout: Duration::from_secs(10),
                ..quick_policy()
            },
        }],
        skills: Vec::new(),
        budget: RestartBudget::default(),
        backlog: crate::backlog::BacklogLimits::default(),
        turn_context: None,
        inbox: None,
        uploads: None,
        memories: None,
        usage: None,
    };
    start_node(setup, |_| Vec::new()).await.unwrap().0
}

#[tokio::test(start_paused = true)]
async fn a_slow_next_turn_does_not_hold_back_the_stored_reply_before_it() {
    let store = Arc::new(GatedStore::default());
    let script = vec![
        Scripted::Text(vec!["first".into()]),
        Scripted::Delayed(Duration::from_secs(3), "second".into()),
    ];
    let handle = gated_node_with(&store, script).await;
    let first = handle.route(text_message("s0", "sol", "one")).unwrap();
    store.wait_for_writes(1).await;
    let second = handle.route(text_message("s1", "sol", "two")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // the slow model call runs
    store.gate.add_permits(1);
    let (_, last) = tokio::time::timeout(Duration::from_secs(1), collect(first))
        .await
        .expect("the first reply goes out once stored, not after the second turn");
    assert!(matches!(last, TurnEvent::Reply { .. }), "{last:?}");
    store.gate.add_permits(1);
    let (_, last) = collect(second).await;
    let TurnEvent::Reply { reply, .. } = last else {
        panic!("expected a reply, got {last:?}")
    };
    assert_eq!(reply.payload, "second");
}

/// Whether any event (a delta included) reached `events` yet.
async fn got_nothing(events: &mut crate::turn::TurnEventReceiver) -> bool {
    tokio::time::sleep(Duration::from_millis(50)).await;
    events.try_recv().is_none()
}

#[tokio::test(start_paused = true)]
async fn queued_turns_share_one_snapshot_write_and_no_reply_precedes_its_write() {
    let store = Arc::new(GatedStore::default());
    let handle = gated_node(&store).await;
    let mut first = handle.route(text_message("q0", "quinn", "one")).unwrap();
    store.wait_for_writes(1).await;
    // While the first turn's write is held, four more turns run and wait behind it.
    let mut queued = Vec::new();
    for index in 1..5 {
        let message = text_message(&format!("q{index}"), "quinn", &format!("m{index}"));
        queued.push(handle.route(message).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.writes(), [2], "one write in flight, nothing else yet");
    // The first turn streamed its deltas live; its reply waits for the write.
    tokio::time::sleep(Duration::from_millis(50)).await;
    while let Some(event) = first.try_recv() {
        assert!(!event.is_final(), "no reply before its write: {event:?}");
    }
    for events in &mut queued {
        assert!(got_nothing(events).await, "later turns wait, deltas too");
    }
    store.gate.add_permits(1);
    let last = tokio::time::timeout(Duration::from_secs(5), first.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(last, TurnEvent::Reply { .. }), "{last:?}");
    // One write holds the four turns that ran meanwhile.
    store.wait_for_writes(2).await;
    assert_eq!(store.writes(), [2, 10]);
    for events in &mut queued {
        assert!(
            got_nothing(events).await,
            "still waiting for the second write"
        );
    }
    store.gate.add_permits(1);
    for (index, events) in queued.into_iter().enumerate() {
        let (deltas, last) = collect(events).await;
        let TurnEvent::Reply { reply, .. } = last else {
            panic!("expected a reply, got {last:?}")
        };
        assert_eq!(reply.payload, format!("echo: m{}", index + 1));
        assert_eq!(deltas.concat(), reply.payload, "deltas kept, in order");
    }
    assert_eq!(
        store
            .inner
            .load(&key("quinn"))
            .await
            .unwrap()
            .unwrap()
            .history
            .len(),
        10
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_group_write_fails_every_turn_it_held_and_a_resend_is_answered() {
    let store = Arc::new(GatedStore::default());
    let handle = gated_node(&store).await;
    let first = handle.route(text_message("f0", "fay", "one")).unwrap();
    store.wait_for_writes(1).await;
    let second = handle.route(text_message("f1", "fay", "two")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.gate.add_permits(1);
    collect(first).await;
    store.wait_for_writes(2).await;
    store.set_failing(true);
    store.gate.add_permits(1);
    let (_, last) = collect(second).await;
    let TurnEvent::Failed { error, .. } = last else {
        panic!("a turn whose write failed is not answered: {last:?}")
    };
    assert_eq!(error.code, ErrorCode::StorageError);
    store.set_failing(false);
    store.gate.add_permits(10);
    assert_eq!(
        reply_text(&handle, "f1", "fay", "two").await,
        "echo: two",
        "the resend gets the reply of the turn kept in memory"
    );
    assert_eq!(
        store
            .inner
            .load(&key("fay"))
            .await
            .unwrap()
            .unwrap()
            .history
            .len(),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_of_an_id_still_in_flight_gets_that_turns_reply_once_it_is_stored() {
    let store = Arc::new(GatedStore::default());
    let script = vec![Scripted::Delayed(
        Duration::from_millis(200),
        "slow answer".into(),
    )];
    let handle = gated_node_with(&store, script).await;
    let first = handle.route(text_message("r0", "rita", "one")).unwrap();
    // Two retries of the same id while the model is still answering the first.
    let retries: Vec<_> = (0..2)
        .map(|_| handle.route(text_message("r0", "rita", "one")).unwrap())
        .collect();
    store.wait_for_writes(1).await;
    store.gate.add_permits(1);
    for events in std::iter::once(first).chain(retries) {
        let (_, last) = collect(events).await;
        let TurnEvent::Reply { reply, .. } = last else {
            panic!("expected the first turn's reply, got {last:?}")
        };
        assert_eq!(
            (reply.in_reply_to.as_str(), reply.payload.as_str()),
            ("r0", "slow answer")
        );
    }
    assert_eq!(
        store.writes(),
        [2],
        "one turn, one write: the retries changed nothing"
    );
}
