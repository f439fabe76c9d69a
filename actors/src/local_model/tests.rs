//! The local model pool with models that count, wait, fail and panic on command.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ractor::Actor;

use super::*;

/// What a test model does with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Double,
    Fail,
    Panic,
}

/// Shared between a test and the model on its thread.
#[derive(Default)]
struct Probe {
    loads: AtomicUsize,
    refuse_loads: AtomicUsize,
    batches: Mutex<Vec<usize>>,
    /// Set: every batch tells it has begun, then waits for a go.
    gate: Mutex<Option<Gate>>,
    next: Mutex<Vec<Behaviour>>,
}

struct Gate {
    begun: mpsc::UnboundedSender<()>,
    go: std::sync::mpsc::Receiver<()>,
}

impl Probe {
    fn batches(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }
}

struct TestModel(Arc<Probe>);

/// An output whose drop panics when it is `Poison`: dropped on the model's thread, it
/// kills that thread outside the model (see the supervision test).
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Value(u32),
    Poison,
}

impl Drop for Out {
    fn drop(&mut self) {
        if matches!(self, Out::Poison) && !std::thread::panicking() {
            panic!("a poisoned output was dropped");
        }
    }
}

impl BatchModel for TestModel {
    type Input = u32;
    type Output = Out;

    fn run(&mut self, batch: Vec<u32>) -> Result<Vec<Out>, ModelFailure> {
        if let Some(gate) = self.0.gate.lock().unwrap().as_ref() {
            let _ = gate.begun.send(());
            let _ = gate.go.recv();
        }
        self.0.batches.lock().unwrap().push(batch.len());
        let behaviour = self
            .0
            .next
            .lock()
            .unwrap()
            .pop()
            .unwrap_or(Behaviour::Double);
        match behaviour {
            Behaviour::Double => Ok(batch
                .into_iter()
                .map(|n| {
                    if n == 666 {
                        Out::Poison
                    } else {
                        Out::Value(n * 2)
                    }
                })
                .collect()),
            Behaviour::Fail => Err(Arc::new(std::io::Error::other("the runtime refused"))),
            Behaviour::Panic => panic!("the model panicked"),
        }
    }
}

struct TestLoader(Arc<Probe>);

impl ModelLoader for TestLoader {
    type Model = TestModel;

    fn load(&self) -> Result<TestModel, ModelFailure> {
        self.0.loads.fetch_add(1, Ordering::SeqCst);
        if self.0.refuse_loads.load(Ordering::SeqCst) > 0 {
            self.0.refuse_loads.fetch_sub(1, Ordering::SeqCst);
            return Err(Arc::new(std::io::Error::other("model.onnx is missing")));
        }
        Ok(TestModel(Arc::clone(&self.0)))
    }
}

async fn pool(probe: &Arc<Probe>, config: PoolConfig) -> LocalModelPool<TestModel> {
    let (pool, _) = LocalModelPool::start("test", TestLoader(Arc::clone(probe)), config, None)
        .await
        .unwrap();
    pool
}

/// Makes every batch wait: answers the signal that a batch began and the go to end it.
fn gate(probe: &Probe) -> (mpsc::UnboundedReceiver<()>, std::sync::mpsc::Sender<()>) {
    let (begun, begun_rx) = mpsc::unbounded_channel();
    let (go_tx, go) = std::sync::mpsc::channel();
    *probe.gate.lock().unwrap() = Some(Gate { begun, go });
    (begun_rx, go_tx)
}

/// `pool.run(inputs)` in a task of its own.
fn running(
    pool: &LocalModelPool<TestModel>,
    inputs: Vec<u32>,
) -> tokio::task::JoinHandle<Result<Vec<Out>, PoolError>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.run(inputs).await })
}

fn values(outputs: Vec<Out>) -> Vec<u32> {
    outputs
        .into_iter()
        .map(|out| match out {
            Out::Value(value) => value,
            Out::Poison => 0,
        })
        .collect()
}

#[tokio::test]
async fn requests_waiting_together_run_as_one_batch_and_each_gets_its_own_outputs() {
    let probe = Arc::new(Probe::default());
    let (mut begun, go) = gate(&probe);
    let pool = pool(&probe, PoolConfig::default()).await;
    let first = running(&pool, vec![1]);
    begun.recv().await.unwrap();
    // These three wait while the first batch runs, and then run together.
    let waiting: Vec<_> = [vec![2, 3], vec![4], vec![5, 6, 7]]
        .into_iter()
        .map(|inputs| running(&pool, inputs))
        .collect();
    tokio::task::yield_now().await;
    while pool.jobs.capacity() > PoolConfig::default().queue - 3 {
        tokio::task::yield_now().await;
    }
    go.send(()).unwrap();
    begun.recv().await.unwrap();
    go.send(()).unwrap();
    assert_eq!(values(first.await.unwrap().unwrap()), [2]);
    let mut answers = Vec::new();
    for job in waiting {
        answers.push(values(job.await.unwrap().unwrap()));
    }
    assert_eq!(answers, [vec![4, 6], vec![8], vec![10, 12, 14]]);
    assert_eq!(probe.batches(), [1, 6], "two model calls for four requests");
    assert_eq!(probe.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_full_queue_answers_busy_at_once() {
    let probe = Arc::new(Probe::default());
    let (mut begun, go) = gate(&probe);
    let pool = pool(
        &probe,
        PoolConfig {
            queue: 2,
            max_batch: 1,
        },
    )
    .await;
    let first = running(&pool, vec![1]);
    begun.recv().await.unwrap();
    let queued: Vec<_> = (2..4).map(|n| running(&pool, vec![n])).collect();
    while pool.jobs.capacity() > 0 {
        tokio::task::yield_now().await;
    }
    let refused = pool.run(vec![9]).await;
    assert!(
        matches!(refused, Err(PoolError::Busy { queued: 2, .. })),
        "{refused:?}"
    );
    for _ in 0..3 {
        go.send(()).unwrap();
    }
    assert!(first.await.unwrap().is_ok());
    for job in queued {
        assert!(job.await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn a_model_that_panics_or_fails_fails_its_callers_and_is_loaded_again() {
    let probe = Arc::new(Probe::default());
    let pool = pool(&probe, PoolConfig::default()).await;
    probe.next.lock().unwrap().push(Behaviour::Panic);
    let crashed = pool.run(vec![1, 2]).await;
    assert!(
        matches!(crashed, Err(PoolError::Crashed { .. })),
        "{crashed:?}"
    );
    assert_eq!(values(pool.run(vec![3]).await.unwrap()), [6]);
    assert_eq!(probe.loads.load(Ordering::SeqCst), 2, "loaded again");

    probe.next.lock().unwrap().push(Behaviour::Fail);
    let failed = pool.run(vec![4]).await;
    match failed {
        Err(PoolError::Failed { source, .. }) => {
            assert_eq!(source.to_string(), "the runtime refused");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(values(pool.run(vec![5]).await.unwrap()), [10]);
    assert_eq!(probe.loads.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_model_that_cannot_load_says_why_and_is_not_tried_again_at_once() {
    let probe = Arc::new(Probe::default());
    probe.refuse_loads.store(1, Ordering::SeqCst);
    let pool = pool(&probe, PoolConfig::default()).await;
    for _ in 0..2 {
        let refused = pool.run(vec![1]).await;
        match refused {
            Err(error @ PoolError::Unavailable { .. }) => assert_eq!(
                error.to_string(),
                "the local model `test` could not be loaded: model.onnx is missing"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        probe.loads.load(Ordering::SeqCst),
        1,
        "within the reload pause"
    );
}

#[tokio::test]
async fn a_thread_that_dies_outside_the_model_is_started_again_by_its_actor() {
    let probe = Arc::new(Probe::default());
    let (mut begun, go) = gate(&probe);
    let pool = pool(&probe, PoolConfig::default()).await;
    // The caller gives up while its batch runs: its poisoned output is dropped on the
    // model's thread, whose loop panics (not the model).
    let abandoned = running(&pool, vec![666]);
    begun.recv().await.unwrap();
    abandoned.abort();
    let _ = abandoned.await;
    let after = running(&pool, vec![21]);
    go.send(()).unwrap();
    begun.recv().await.unwrap();
    go.send(()).unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(10), after)
        .await
        .expect("the queue is served again")
        .unwrap();
    assert_eq!(
        values(answered.unwrap()),
        [42],
        "answered by the new thread"
    );
}

#[tokio::test]
async fn a_pool_whose_handles_are_gone_stops_its_actor() {
    let probe = Arc::new(Probe::default());
    let (pool, actor) = LocalModelPool::start(
        "test",
        TestLoader(Arc::clone(&probe)),
        PoolConfig::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(values(pool.run(vec![1]).await.unwrap()), [2]);
    drop(pool);
    tokio::time::timeout(Duration::from_secs(10), async {
        while actor.get_status() != ractor::ActorStatus::Stopped {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the actor stops");
}

#[tokio::test]
async fn a_restarted_actor_leaves_the_running_thread_be_and_replaces_it_when_it_dies() {
    let probe = Arc::new(Probe::default());
    let (pool, child) = LocalModelPool::new(
        "test",
        TestLoader(Arc::clone(&probe)),
        PoolConfig::default(),
    );
    let first = child.start(None).await.unwrap();
    assert_eq!(values(pool.run(vec![1]).await.unwrap()), [2]);
    // As the supervisor does after a failure: a new actor, while the thread still runs.
    first.kill();
    let second = child.start(None).await.unwrap();
    assert_eq!(
        values(pool.run(vec![2]).await.unwrap()),
        [4],
        "the same thread"
    );
    assert_eq!(probe.loads.load(Ordering::SeqCst), 1);
    // The thread dies outside the model: the new actor starts another.
    let (mut begun, go) = gate(&probe);
    let abandoned = running(&pool, vec![666]);
    begun.recv().await.unwrap();
    abandoned.abort();
    let _ = abandoned.await;
    go.send(()).unwrap();
    *probe.gate.lock().unwrap() = None;
    let answered = tokio::time::timeout(Duration::from_secs(10), pool.run(vec![3]))
        .await
        .expect("the queue is served again");
    assert_eq!(values(answered.unwrap()), [6]);
    assert_eq!(second.get_status(), ractor::ActorStatus::Running);
}

#[tokio::test]
async fn under_the_node_supervisor_the_pool_is_one_of_its_children() {
    use crate::supervisor::{NodeSupervisor, NodeSupervisorArgs, RestartBudget};
    let probe = Arc::new(Probe::default());
    let (pool, child) = LocalModelPool::new(
        "test",
        TestLoader(Arc::clone(&probe)),
        PoolConfig::default(),
    );
    let spec = child.spec();
    assert_eq!(spec.name, "local-model:test");
    let args = NodeSupervisorArgs {
        children: vec![spec],
        budget: RestartBudget::default(),
    };
    let (supervisor, join) = Actor::spawn(None, NodeSupervisor, args).await.unwrap();
    assert_eq!(values(pool.run(vec![5]).await.unwrap()), [10]);
    assert_eq!(supervisor.get_children().len(), 1);
    supervisor.stop(None);
    join.await.unwrap();
}
