//! Conversation titles: what the sidebar calls a conversation. The assistant writes one
//! after the first exchange (`POST /api/v1/conversations/{id}/title`, which the web app
//! calls when a new conversation gets its first answer), and the person can rename it
//! (`PATCH /api/v1/conversations/{id}` `{"title"}`).
//!
//! A title is kept in the session store under the reserved platform `titles`
//! (`titles:<platform>/<conversation>`, one history entry), like a person's notes: on disk
//! for a single node, in JetStream KV in a cluster, so every node lists the same titles and
//! the session snapshots keep their format.

use std::sync::Arc;

use troupe_actors::SessionKey;
use troupe_actors::message::unix_now;
use troupe_actors::provider::{ChatMessage, ChatRequest, Role};
use troupe_actors::snapshot::{HistoryEntry, SessionSnapshot, SnapshotStore, StoreError};

/// The platform part of a title's key (reserved: no message can claim it).
const TITLES_PLATFORM: &str = troupe_actors::ids::RESERVED_PLATFORMS[1];
/// Longest title, in characters.
pub(crate) const MAX_TITLE_CHARS: usize = 80;
/// Attempts when another node wrote the same title at the same time.
const WRITE_ATTEMPTS: usize = 4;
/// What the model is asked.
const TITLE_INSTRUCTION: &str = "Write a title of at most six words for a conversation \
    that starts with the person's message below. Answer with the title only: no quotes, \
    no punctuation at the end.";

/// A title: one line of 1 to [`MAX_TITLE_CHARS`] characters, built only by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Title(String);

/// Why a title is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("title: 1 to {MAX_TITLE_CHARS} characters on one line")]
pub(crate) struct InvalidTitle;

impl Title {
    pub(crate) fn parse(text: &str) -> Result<Self, InvalidTitle> {
        let text = text.trim();
        let fits = !text.is_empty()
            && text.chars().count() <= MAX_TITLE_CHARS
            && !text.chars().any(char::is_control);
        fits.then(|| Self(text.to_owned())).ok_or(InvalidTitle)
    }

    /// The title in what a model answered: its first line, without quotes, markdown
    /// emphasis or a final full stop, cut to length on a word.
    fn from_answer(answer: &str) -> Option<Self> {
        let line = answer
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())?;
        let line = line
            .trim_start_matches('#')
            .trim_matches(|c: char| matches!(c, '"' | '\'' | '*' | '`' | '“' | '”' | ' '))
            .trim_end_matches('.');
        Self::parse(&shorten(line)).ok()
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// `text` cut to [`MAX_TITLE_CHARS`] on a word where one ends close enough.
fn shorten(text: &str) -> String {
    let Some((cut, _)) = text.char_indices().nth(MAX_TITLE_CHARS - 1) else {
        return text.to_owned();
    };
    let head = &text[..cut];
    let at_word = head
        .rfind(' ')
        .filter(|space| *space > cut / 2)
        .unwrap_or(cut);
    format!("{}…", head[..at_word].trim_end())
}

/// Why a title could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TitleStoreError {
    #[error("the title could not be stored: {0}")]
    Store(#[from] StoreError),
    #[error("the title kept changing elsewhere; try again")]
    Contended,
    #[error("no title for that conversation: {0}")]
    Key(#[from] troupe_actors::ids::InvalidSessionKey),
}

/// The titles of conversations, in the session store.
#[derive(Clone)]
pub(crate) struct ConversationTitles {
    store: Arc<dyn SnapshotStore>,
}

impl ConversationTitles {
    pub(crate) fn new(store: Arc<dyn SnapshotStore>) -> Self {
        Self { store }
    }

    /// Where the title of `conversation` is kept (`titles:<platform>/<conversation>`).
    pub(crate) fn key(conversation: &SessionKey) -> Result<SessionKey, TitleStoreError> {
        let name = format!(
            "{}/{}",
            conversation.platform(),
            conversation.conversation_id()
        );
        Ok(SessionKey::new(TITLES_PLATFORM, &name)?)
    }

    pub(crate) async fn get(
        &self,
        conversation: &SessionKey,
    ) -> Result<Option<Title>, TitleStoreError> {
        let key = Self::key(conversation)?;
        let stored = self.store.load(&key).await?;
        self.store.forget(&key);
        Ok(stored
            .and_then(|snapshot| snapshot.history.into_iter().next())
            .and_then(|entry| Title::parse(&entry.content).ok()))
    }

    pub(crate) async fn set(
        &self,
        conversation: &SessionKey,
        title: &Title,
    ) -> Result<(), TitleStoreError> {
        let key = Self::key(conversation)?;
        for _ in 0..WRITE_ATTEMPTS {
            let mut snapshot = self
                .store
                .load(&key)
                .await?
                .unwrap_or_else(|| SessionSnapshot::empty(key.clone()));
            let now = unix_now();
            snapshot.history = vec![HistoryEntry {
                role: Role::System,
                content: title.as_str().into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
                message_id: None,
                timestamp: now,
                images: Vec::new(),
            }];
            snapshot.updated_at = now;
            let saved = self.store.save(snapshot.encode()).await;
            self.store.forget(&key);
            match saved {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(TitleStoreError::Contended)
    }

    pub(crate) async fn forget(&self, conversation: &SessionKey) -> Result<(), TitleStoreError> {
        let key = Self::key(conversation)?;
        self.store.delete(&key).await?;
        self.store.forget(&key);
        Ok(())
    }
}

/// The request that asks the model for a title of a conversation that starts with `first`.
pub(crate) fn title_request(first: &str) -> ChatRequest {
    ChatRequest {
        system_prompt: Some(TITLE_INSTRUCTION.into()),
        messages: vec![ChatMessage::new(Role::User, first)],
        tools: Arc::new([]),
        stream: false,
    }
}

/// The title in the model's `answer`, else one made of the person's first message.
pub(crate) fn title_of(answer: Option<&str>, first: &str) -> Option<Title> {
    answer
        .and_then(Title::from_answer)
        .or_else(|| Title::from_answer(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_one_short_line() {
        assert_eq!(
            Title::parse("  Trip to Lisbon "),
            Ok(Title("Trip to Lisbon".into()))
        );
        assert_eq!(Title::parse(""), Err(InvalidTitle));
        assert_eq!(Title::parse("two\nlines"), Err(InvalidTitle));
        assert_eq!(
            Title::parse(&"x".repeat(MAX_TITLE_CHARS + 1)),
            Err(InvalidTitle)
        );
    }

    #[test]
    fn a_model_answer_becomes_a_clean_title() {
        let title = |answer: &str| Title::from_answer(answer).map(|title| title.0);
        assert_eq!(
            title("\"Planning a trip to Lisbon.\"\n"),
            Some("Planning a trip to Lisbon".into())
        );
        assert_eq!(title("**Budget review**"), Some("Budget review".into()));
        assert_eq!(
            title("\n\n# Garden plans\nmore"),
            Some("Garden plans".into())
        );
        assert_eq!(title("   "), None);
        let long = "word ".repeat(40);
        let cut = title(&long).unwrap();
        assert!(
            cut.chars().count() <= MAX_TITLE_CHARS && cut.ends_with('…'),
            "{cut}"
        );
        assert!(!cut.contains("wor…"), "cut on a word: {cut}");
    }

    #[test]
    fn without_a_usable_answer_the_first_message_is_the_title() {
        assert_eq!(
            title_of(Some(""), "How do I repot a fern?\nIt is big.").map(|t| t.0),
            Some("How do I repot a fern?".into())
        );
        assert_eq!(
            title_of(Some("Repotting ferns"), "x").map(|t| t.0),
            Some("Repotting ferns".into())
        );
    }

    #[tokio::test]
    async fn a_title_is_kept_renamed_and_forgotten_in_the_session_store() {
        let titles = ConversationTitles::new(Arc::new(
            troupe_actors::snapshot::MemorySnapshotStore::default(),
        ));
        let conversation = SessionKey::new("ws", "web-1/abc").unwrap();
        assert_eq!(titles.get(&conversation).await.unwrap(), None);
        titles
            .set(&conversation, &Title::parse("First").unwrap())
            .await
            .unwrap();
        titles
            .set(&conversation, &Title::parse("Renamed").unwrap())
            .await
            .unwrap();
        assert_eq!(
            titles.get(&conversation).await.unwrap(),
            Some(Title("Renamed".into()))
        );
        titles.forget(&conversation).await.unwrap();
        assert_eq!(titles.get(&conversation).await.unwrap(), None);
    }
}
