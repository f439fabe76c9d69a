//! Edits made the way a Yjs client makes them, for the tests.

use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, Text, Transact};

/// Appends `text` to the shared text `t` of `doc`; answers the update frame y-websocket
/// would send for it.
pub(crate) fn edit(doc: &Doc, text: &str) -> Vec<u8> {
    let before = doc.transact().state_vector();
    let shared = doc.get_or_insert_text("t");
    {
        let mut transaction = doc.transact_mut();
        let end = shared.len(&transaction);
        shared.insert(&mut transaction, end, text);
    }
    let update = doc.transact().encode_state_as_update_v1(&before);
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}
