//! The room's group commit. While one batch of updates is being stored, the next fills up
//! behind it; it is then stored with one append (one sync to disk) and sent on as one
//! merged update frame per connection, so a busy room costs a store write and a frame per
//! batch rather than per update. Everything a client could only be shown after those
//! updates are stored waits in the same batch, in order: replies that carry the document,
//! awareness that came after them, and the answers the senders wait for.

use ractor::RpcReplyPort;

use super::PatchError;
use crate::protocol::{ConnectionId, Effects, Frame, updates_frame};

/// Who is waiting for a batch to be stored, and what they get once it is.
pub(super) enum Answer {
    /// A connection's frame was handled.
    Frame(RpcReplyPort<bool>),
    /// A patch was applied; the ids of the items it added.
    Patch {
        reply: RpcReplyPort<Result<Vec<String>, PatchError>>,
        added: Vec<String>,
    },
    /// The board as it was when asked, shown once what it holds is stored.
    Items {
        reply: RpcReplyPort<serde_json::Value>,
        items: serde_json::Value,
    },
}

impl Answer {
    pub(super) fn send(self) {
        match self {
            Self::Frame(reply) => {
                let _ = reply.send(true);
            }
            Self::Patch { reply, added } => {
                let _ = reply.send(Ok(added));
            }
            Self::Items { reply, items } => {
                let _ = reply.send(items);
            }
        }
    }

    /// The batch was not stored: a patch is told so; a connection is closed anyway.
    fn refuse(self) {
        if let Self::Patch { reply, .. } = self {
            let _ = reply.send(Err(PatchError::Storage));
        }
    }
}

/// Whose updates a batch holds: its frame need not go back to a sole sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Senders {
    #[default]
    Nobody,
    One(ConnectionId),
    Several,
}

impl Senders {
    fn with(self, sender: Option<ConnectionId>) -> Self {
        match (self, sender) {
            (Self::Nobody, Some(connection)) => Self::One(connection),
            (Self::One(one), Some(connection)) if one == connection => self,
            _ => Self::Several,
        }
    }
}

/// Effects held until the updates before them are stored.
#[derive(Default)]
pub(super) struct Batch {
    updates: Vec<Vec<u8>>,
    senders: Senders,
    /// Frames for one connection, in order.
    pub(super) replies: Vec<(ConnectionId, Frame)>,
    /// Awareness frames from a connection (or from the node: `None`) for the others.
    pub(super) awareness: Vec<(Option<ConnectionId>, Frame)>,
    pub(super) answers: Vec<Answer>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.updates.is_empty()
            && self.replies.is_empty()
            && self.awareness.is_empty()
            && self.answers.is_empty()
    }

    /// The updates to store; the batch keeps the rest.
    pub(super) fn take_updates(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.updates)
    }

    /// The connection that need not get the updates back: the only one that sent any.
    pub(super) fn sole_sender(&self) -> Option<ConnectionId> {
        match self.senders {
            Senders::One(connection) => Some(connection),
            Senders::Nobody | Senders::Several => None,
        }
    }

    /// Tells everyone waiting that the batch was not stored.
    pub(super) fn refuse(self) {
        for answer in self.answers {
            answer.refuse();
        }
    }
}

/// The frames that carry `updates` to the other connections: one merged frame, or one
/// each should merging fail (it cannot for updates the room has applied).
pub(super) fn forwarded_frames(updates: &[Vec<u8>]) -> Vec<Frame> {
    if updates.is_empty() {
        return Vec::new();
    }
    match updates_frame(updates) {
        Ok(frame) => vec![frame],
        Err(error) => {
            tracing::warn!(%error, "updates could not be merged; they go one by one");
            updates
                .iter()
                .filter_map(|update| updates_frame(std::slice::from_ref(update)).ok())
                .collect()
        }
    }
}

/// What the room should do next with its held effects.
pub(super) enum Next {
    /// A batch is being stored; the rest waits for it.
    Wait,
    /// Nothing waits for the store: send these now.
    Release(Batch),
    /// Store these updates, then send the rest of the batch.
    Store(Batch),
}

/// The batch being stored (at most one, so appends stay in order) and the one filling up.
#[derive(Default)]
pub(super) struct Pipeline {
    storing: bool,
    filling: Batch,
}

impl Pipeline {
    /// Whether nothing is held or being stored.
    pub(super) fn is_idle(&self) -> bool {
        !self.storing && self.filling.is_empty()
    }

    pub(super) const fn is_storing(&self) -> bool {
        self.storing
    }

    /// Holds the effects of something `from` sent (or the node did: `None`), and who waits.
    pub(super) fn hold(
        &mut self,
        from: Option<ConnectionId>,
        effects: Effects,
        answer: Option<Answer>,
    ) {
        let batch = &mut self.filling;
        if !effects.journal.is_empty() {
            batch.senders = batch.senders.with(from);
            batch.updates.extend(effects.journal);
        }
        if let Some(from) = from {
            batch
                .replies
                .extend(effects.reply.into_iter().map(|frame| (from, frame)));
        }
        batch
            .awareness
            .extend(effects.awareness.into_iter().map(|frame| (from, frame)));
        batch.answers.extend(answer);
    }

    pub(super) fn next(&mut self) -> Next {
        if self.storing || self.filling.is_empty() {
            return Next::Wait;
        }
        let batch = std::mem::take(&mut self.filling);
        if batch.updates.is_empty() {
            Next::Release(batch)
        } else {
            self.storing = true;
            Next::Store(batch)
        }
    }

    /// The batch in the store came back (stored or not).
    pub(super) fn stored(&mut self) {
        self.storing = false;
    }

    /// Drops what is held (the room closes); whoever waits is told it was not stored.
    pub(super) fn discard(&mut self) {
        std::mem::take(&mut self.filling).refuse();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn frame(byte: u8) -> Frame {
        Arc::from([byte].as_slice())
    }

    fn update_from(journal: &[u8]) -> Effects {
        Effects {
            journal: vec![journal.to_vec()],
            reply: vec![frame(journal[0])],
            awareness: Vec::new(),
        }
    }

    #[test]
    fn effects_without_updates_go_out_at_once_when_nothing_is_stored() {
        let mut pipeline = Pipeline::default();
        pipeline.hold(
            Some(1),
            Effects {
                awareness: vec![frame(7)],
                ..Effects::default()
            },
            None,
        );
        let Next::Release(batch) = pipeline.next() else {
            panic!("awareness alone needs no store");
        };
        assert_eq!(batch.awareness, [(Some(1), frame(7))]);
        assert!(pipeline.is_idle());
    }

    #[test]
    fn updates_behind_a_batch_in_the_store_wait_and_then_go_as_one() {
        let mut pipeline = Pipeline::default();
        pipeline.hold(Some(1), update_from(&[1]), None);
        let Next::Store(mut first) = pipeline.next() else {
            panic!("an update is stored first");
        };
        assert_eq!(first.take_updates(), [vec![1]]);
        assert_eq!(first.sole_sender(), Some(1));

        pipeline.hold(Some(2), update_from(&[2]), None);
        pipeline.hold(
            Some(3),
            Effects {
                awareness: vec![frame(9)],
                ..Effects::default()
            },
            None,
        );
        pipeline.hold(Some(3), update_from(&[3]), None);
        assert!(matches!(pipeline.next(), Next::Wait), "one batch at a time");

        pipeline.stored();
        let Next::Store(mut second) = pipeline.next() else {
            panic!("the waiting updates are stored together");
        };
        assert_eq!(second.take_updates(), [vec![2], vec![3]]);
        assert_eq!(second.sole_sender(), None, "two senders: everyone gets it");
        assert_eq!(second.replies, [(2, frame(2)), (3, frame(3))]);
        assert_eq!(second.awareness, [(Some(3), frame(9))]);
    }

    #[test]
    fn a_discarded_batch_tells_a_waiting_patch_it_was_not_stored() {
        let mut pipeline = Pipeline::default();
        let (reply, answer) = tokio::sync::oneshot::channel();
        pipeline.hold(
            None,
            update_from(&[1]),
            Some(Answer::Patch {
                reply: reply.into(),
                added: vec!["n1".into()],
            }),
        );
        pipeline.discard();
        assert!(pipeline.is_idle());
        assert!(matches!(
            answer.blocking_recv(),
            Ok(Err(PatchError::Storage))
        ));
    }

    #[test]
    fn several_updates_are_forwarded_as_one_frame() {
        use yrs::{ReadTxn, Text, Transact};
        let doc = yrs::Doc::with_client_id(5);
        let text = doc.get_or_insert_text("t");
        let updates: Vec<Vec<u8>> = ["a", "b", "c"]
            .iter()
            .map(|chunk| {
                let before = doc.transact().state_vector();
                text.push(&mut doc.transact_mut(), chunk);
                doc.transact().encode_state_as_update_v1(&before)
            })
            .collect();
        assert_eq!(forwarded_frames(&updates).len(), 1);
        assert_eq!(forwarded_frames(&updates[..1]).len(), 1);
        assert!(forwarded_frames(&[]).is_empty());
    }
}
