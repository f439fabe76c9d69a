//! A sender linked to a person (`[[identities]]`, or `troupe identity link ws:ada
//! telegram:42 --person ada`) chats in that person's conversation, as a direct message
//! from a linked Telegram account does: the main conversation of `ws:ada` (the web app)
//! or `api:ada` (REST) is kept in the session `person:ada`, so the page shows and
//! continues what was said on every linked platform. The sender's other conversations
//! (`ada/…`) stay their own.
//!
//! Every route that names a conversation by platform and id (messages, stop, history,
//! titles, uploads, delete) finds its session here, so they all agree.

use troupe_actors::bridge::identity::PERSON_PLATFORM;
use troupe_actors::ids::InvalidSessionKey;
use troupe_actors::{InboundMessage, MessageError, SessionKey};

use super::AppState;

/// The person whose conversation `conversation_id` on `platform` is: set when it is a
/// sender's main conversation (its id is the sender's) and `platform:sender` is linked.
pub(crate) fn linked_person(
    state: &AppState,
    platform: &str,
    conversation_id: &str,
) -> Option<String> {
    if conversation_id.contains('/') {
        return None;
    }
    state
        .bridges
        .store()
        .person_of_sender(platform, conversation_id)
}

/// The session that keeps `conversation_id` on `platform`.
pub(crate) fn session_key(
    state: &AppState,
    platform: &str,
    conversation_id: &str,
) -> Result<SessionKey, InvalidSessionKey> {
    let key = SessionKey::new(platform, conversation_id)?;
    match linked_person(state, platform, conversation_id) {
        Some(person) => SessionKey::new(PERSON_PLATFORM, &person),
        None => Ok(key),
    }
}

/// For a linked sender: moves a message written in its main conversation into the
/// conversation of its person, and notes the person on a message in any other (whose
/// turns then use the person's memory).
pub(crate) fn join_linked_person(
    state: &AppState,
    message: &mut InboundMessage,
) -> Result<(), MessageError> {
    let Some(person) = linked_person(state, message.platform(), message.sender_id()) else {
        return Ok(());
    };
    if message.conversation_id() == message.sender_id() {
        message.join_person(person)
    } else {
        message.set_person(&person)
    }
}
