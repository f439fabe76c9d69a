//! Runs waiting for a person's reply (`wait_reply` steps). A message from someone a run
//! waits for goes to that run instead of the assistant (the oldest waiting run first).
//! Messages that nobody waited for are kept a short while, so a run that starts waiting
//! just after the reply came (a run taken up again after a restart, whose reply was
//! re-delivered from a bridge's journal first) still finds it.
//!
//! In a cluster the person's reply may enter another node than the one running the run: a
//! [`WaitBoard`] tells every node who is awaited by which run, and the node the reply
//! enters offers it to that run's node.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::events::ArrivedMessage;

/// How long a message nobody waited for is kept.
const KEPT_FOR: Duration = Duration::from_secs(600);
/// Most such messages kept.
const KEPT_MOST: usize = 256;

struct Waiter {
    who: String,
    since_ms: i64,
    reply: oneshot::Sender<ArrivedMessage>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiter>,
    recent: VecDeque<ArrivedMessage>,
}

/// The runs waiting for replies, and the messages that came recently.
/// Where a cluster keeps who is awaited by which run.
pub trait WaitBoard: Send + Sync + 'static {
    /// Run `run` waits for `who` from now on.
    fn waiting(&self, who: &str, run: &str);
    /// Run `run` waits for `who` no more.
    fn done(&self, who: &str, run: &str);
    /// A run, on any node, waiting for the sender of `message`.
    fn awaited_by(&self, message: &ArrivedMessage) -> Option<String>;
}

#[derive(Default)]
pub struct ReplyWaiters {
    state: Mutex<State>,
    board: OnceLock<Arc<dyn WaitBoard>>,
}

/// Takes a run's wait off the board however the wait ends.
struct OnBoard<'a> {
    board: Option<&'a Arc<dyn WaitBoard>>,
    who: &'a str,
    run: &'a str,
}

impl Drop for OnBoard<'_> {
    fn drop(&mut self) {
        if let Some(board) = self.board {
            board.done(self.who, self.run);
        }
    }
}

impl std::fmt::Debug for ReplyWaiters {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReplyWaiters")
            .finish_non_exhaustive()
    }
}

/// Whether `message` is from `who` (`person:ada`, or `<platform>:<sender id>`).
pub fn is_from(message: &ArrivedMessage, who: &str) -> bool {
    match who.strip_prefix("person:") {
        Some(person) => message.person.as_deref() == Some(person),
        None => who == format!("{}:{}", message.platform, message.sender_id),
    }
}

impl ReplyWaiters {
    /// From now on, waits are also put on `board` (in a cluster).
    pub fn share(&self, board: Arc<dyn WaitBoard>) {
        let _ = self.board.set(board);
    }

    /// In a cluster: a run waiting for the sender of `message`, on any node.
    pub fn awaited_by(&self, message: &ArrivedMessage) -> Option<String> {
        self.board.get()?.awaited_by(message)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands `message` to the oldest run waiting for its sender; answers whether one took
    /// it. A message no run takes is kept a while for runs that start waiting late.
    pub fn offer(&self, message: &ArrivedMessage) -> bool {
        let mut state = self.state();
        state.waiting.retain(|waiter| !waiter.reply.is_closed());
        let taker = state
            .waiting
            .iter()
            .position(|waiter| waiter.since_ms <= message.at_ms && is_from(message, &waiter.who));
        if let Some(index) = taker {
            let waiter = state.waiting.remove(index);
            if waiter.reply.send(message.clone()).is_ok() {
                return true;
            }
        }
        let oldest = message.at_ms - crate::clock::millis(KEPT_FOR);
        state.recent.retain(|kept| kept.at_ms >= oldest);
        if state.recent.len() == KEPT_MOST {
            state.recent.pop_front();
        }
        state.recent.push_back(message.clone());
        false
    }

    /// Whether some run waits for `message`'s sender now.
    pub fn is_awaited(&self, message: &ArrivedMessage) -> bool {
        self.state()
            .waiting
            .iter()
            .any(|waiter| !waiter.reply.is_closed() && is_from(message, &waiter.who))
    }

    /// The first message from `who` since `since_ms`, or `None` at `due_ms`; `run` is
    /// the run that waits (for the board).
    pub async fn wait(
        &self,
        who: &str,
        run: &str,
        since_ms: i64,
        due_ms: i64,
        clock: &Clock,
    ) -> Option<ArrivedMessage> {
        let receiver = {
            let mut state = self.state();
            let kept = state
                .recent
                .iter()
                .position(|message| message.at_ms >= since_ms && is_from(message, who));
            if let Some(index) = kept {
                return state.recent.remove(index);
            }
            let (reply, receiver) = oneshot::channel();
            state.waiting.push(Waiter {
                who: who.to_owned(),
                since_ms,
                reply,
            });
            receiver
        };
        let board = self.board.get();
        if let Some(board) = board {
            board.waiting(who, run);
        }
        let _on_board = OnBoard { board, who, run };
        tokio::select! {
            reply = receiver => reply.ok(),
            () = clock.sleep_until(due_ms) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sender: &str, at_ms: i64) -> ArrivedMessage {
        ArrivedMessage {
            id: format!("m{at_ms}"),
            platform: "telegram".into(),
            sender_id: sender.into(),
            conversation_id: sender.into(),
            person: None,
            text: "yes".into(),
            at_ms,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_run_takes_its_senders_message_and_others_pass() {
        let waiters = std::sync::Arc::new(ReplyWaiters::default());
        let clock = Clock::starting_at(1_000);
        let waiting = {
            let waiters = std::sync::Arc::clone(&waiters);
            tokio::spawn(async move {
                waiters
                    .wait("telegram:42", "r", 1_000, 60_000, &clock)
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiters.offer(&message("7", 2_000)), "someone else");
        assert!(waiters.is_awaited(&message("42", 2_000)));
        assert!(waiters.offer(&message("42", 2_000)));
        assert_eq!(waiting.await.unwrap().unwrap().id, "m2000");
        assert!(!waiters.is_awaited(&message("42", 3_000)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_that_came_first_is_found_and_none_at_the_due_time() {
        let waiters = ReplyWaiters::default();
        let clock = Clock::starting_at(10_000);
        assert!(!waiters.offer(&message("42", 9_000)));
        let found = waiters
            .wait("telegram:42", "r", 8_000, 20_000, &clock)
            .await;
        assert_eq!(found.unwrap().id, "m9000");
        let none = waiters
            .wait("telegram:42", "r", 8_000, 20_000, &clock)
            .await;
        assert!(none.is_none(), "each message is taken once");
    }

    /// A board that keeps its waits in memory, as the cluster's copy does.
    #[derive(Default)]
    struct MemoryBoard {
        waits: Mutex<Vec<(String, String)>>,
    }

    impl WaitBoard for MemoryBoard {
        fn waiting(&self, who: &str, run: &str) {
            self.waits.lock().unwrap().push((who.into(), run.into()));
        }

        fn done(&self, who: &str, run: &str) {
            self.waits
                .lock()
                .unwrap()
                .retain(|wait| wait != &(who.to_owned(), run.to_owned()));
        }

        fn awaited_by(&self, message: &ArrivedMessage) -> Option<String> {
            let waits = self.waits.lock().unwrap();
            waits
                .iter()
                .find(|(who, _)| is_from(message, who))
                .map(|(_, run)| run.clone())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_on_the_board_while_it_lasts_however_it_ends() {
        let board = Arc::new(MemoryBoard::default());
        let waiters = Arc::new(ReplyWaiters::default());
        waiters.share(Arc::clone(&board) as Arc<dyn WaitBoard>);
        let clock = Clock::starting_at(1_000);
        let timed_out = {
            let waiters = Arc::clone(&waiters);
            tokio::spawn(
                async move { waiters.wait("telegram:42", "a", 1_000, 5_000, &clock).await },
            )
        };
        let dropped = {
            let waiters = Arc::clone(&waiters);
            tokio::spawn(
                async move { waiters.wait("telegram:7", "b", 1_000, 60_000, &clock).await },
            )
        };
        tokio::task::yield_now().await;
        assert_eq!(
            waiters.awaited_by(&message("42", 2_000)).as_deref(),
            Some("a")
        );
        assert_eq!(
            waiters.awaited_by(&message("7", 2_000)).as_deref(),
            Some("b")
        );
        assert_eq!(waiters.awaited_by(&message("8", 2_000)), None);
        assert!(timed_out.await.unwrap().is_none());
        assert_eq!(waiters.awaited_by(&message("42", 6_000)), None, "timed out");
        // A run that stops (its partition moved) takes its wait off the board too.
        dropped.abort();
        let _ = dropped.await;
        assert_eq!(waiters.awaited_by(&message("7", 6_000)), None, "stopped");
    }
}
