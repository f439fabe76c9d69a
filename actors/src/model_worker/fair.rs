//! A provider's call slots, shared fairly: when every slot is busy, waiting calls queue
//! per requester (one person, `platform:sender_id`) and a freed slot goes to the next
//! requester in turn, not to the oldest call. A requester with a hundred calls waiting gets
//! one slot in turn like everyone else: a flooder slows only itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The slots of one provider.
#[derive(Debug)]
pub(super) struct FairSlots {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Requesters with calls waiting, in the order they get the next slots.
    turn: VecDeque<Arc<str>>,
    waiting: HashMap<Arc<str>, VecDeque<oneshot::Sender<Slot>>>,
}

/// One slot, held for a call; dropping it hands it to the next requester in turn.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Option<Arc<FairSlots>>,
}

impl FairSlots {
    pub(super) fn new(count: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: count.max(1),
                ..State::default()
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for `requester`: at once if one is free and nobody waits, else in turn.
    /// Dropping the future gives up the place (and a slot handed over meanwhile).
    pub(super) async fn acquire(self: &Arc<Self>, requester: &str) -> Slot {
        let handed = {
            let mut state = self.state();
            if state.free > 0 && state.turn.is_empty() {
                state.free -= 1;
                return Slot {
                    slots: Some(Arc::clone(self)),
                };
            }
            let (sender, handed) = oneshot::channel();
            let requester: Arc<str> = Arc::from(requester);
            let queue = state.waiting.entry(Arc::clone(&requester)).or_default();
            let first_of_requester = queue.is_empty();
            queue.push_back(sender);
            if first_of_requester {
                state.turn.push_back(requester);
            }
            handed
        };
        // The sender is dropped only after a slot was sent (or on release, which sends).
        handed.await.unwrap_or(Slot { slots: None })
    }

    /// A slot came free: to the next requester in turn whose caller still waits, else back
    /// to the free count.
    fn release(self: &Arc<Self>) {
        let mut state = self.state();
        while let Some(requester) = state.turn.pop_front() {
            let Some(queue) = state.waiting.get_mut(&requester) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&requester);
            } else {
                state.turn.push_back(requester);
            }
            let Some(next) = next else { continue };
            let slot = Slot {
                slots: Some(Arc::clone(self)),
            };
            match next.send(slot) {
                Ok(()) => return,
                // That caller gave up: defuse the slot and try the next one.
                Err(mut slot) => slot.slots = None,
            }
        }
        state.free += 1;
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.state().free
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_the_next_requester_not_the_oldest_call() {
        let slots = FairSlots::new(1);
        let held = slots.acquire("api:flooder").await;
        let (order, mut served) = tokio::sync::mpsc::unbounded_channel();
        let mut waiting = Vec::new();
        for (index, requester) in ["api:flooder", "api:flooder", "api:flooder", "api:ada"]
            .into_iter()
            .enumerate()
        {
            let (slots, order) = (Arc::clone(&slots), order.clone());
            waiting.push(tokio::spawn(async move {
                let slot = slots.acquire(requester).await;
                order.send((index, requester)).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(slot);
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for task in waiting {
            task.await.unwrap();
        }
        drop(order);
        let mut seen = Vec::new();
        while let Some((_, requester)) = served.recv().await {
            seen.push(requester);
        }
        assert_eq!(
            seen,
            ["api:flooder", "api:ada", "api:flooder", "api:flooder"],
            "Ada waits for one of the flooder's calls, not for all three"
        );
        assert_eq!(slots.free(), 1, "every slot came back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_does_not_lose_the_slot() {
        let slots = FairSlots::new(1);
        let held = slots.acquire("api:a").await;
        let gives_up = tokio::time::timeout(Duration::from_millis(5), slots.acquire("api:b"));
        assert!(gives_up.await.is_err(), "no slot within 5 ms");
        let waits = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { drop(slots.acquire("api:c").await) }
        });
        tokio::task::yield_now().await;
        drop(held);
        waits.await.unwrap();
        assert_eq!(slots.free(), 1);
    }
}
