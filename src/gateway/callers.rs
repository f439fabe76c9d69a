//! Who a request speaks for. The owner's token (`server.token`) may speak as any sender
//! that has no token of its own; a sender's own token (`[[server.tokens]]`) speaks only as
//! that sender, in its own conversations, and reaches only the routes that send messages.
//! The platform of a message is always the access path's (`api`, `ws`, `openai`): only a
//! bridge writes as `telegram`, `slack`…

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use troupe_bridges::secrets::Secret;

use super::auth::tokens_match;
use super::error::{ApiCode, ApiError};

/// Who sent a request, once its token was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The shared token, or any request on a node without one.
    Owner,
    /// A sender's own token: speaks only as this sender.
    Sender(Arc<str>),
}

/// The senders that have their own token.
#[derive(Clone, Debug, Default)]
pub(crate) struct SenderTokens {
    by_sender: HashMap<Arc<str>, Secret>,
}

impl SenderTokens {
    pub(crate) fn new(tokens: impl IntoIterator<Item = (String, Secret)>) -> Self {
        Self {
            by_sender: tokens
                .into_iter()
                .map(|(sender, token)| (Arc::from(sender), token))
                .collect(),
        }
    }

    /// The sender whose token `presented` is.
    fn sender_of(&self, presented: &str) -> Option<Arc<str>> {
        // Every token is compared, so the time taken does not tell which one was close.
        self.by_sender.iter().fold(None, |found, (sender, token)| {
            let matches = tokens_match(presented, token.expose());
            found.or_else(|| matches.then(|| Arc::clone(sender)))
        })
    }

    /// Whether `sender` has a token of its own.
    fn is_bound(&self, sender: &str) -> bool {
        self.by_sender.contains_key(sender)
    }

    /// Whether the owner's token may see `sender`'s conversations: not when `sender` has a
    /// token of its own.
    pub(crate) fn check_owner_may_see(&self, sender: &str) -> Result<(), ApiError> {
        if self.is_bound(sender) {
            return Err(refuse(
                ApiCode::SenderNotAllowed,
                format!(
                    "`{sender}` has its own token (server.tokens): only that token sees its conversations"
                ),
            ));
        }
        Ok(())
    }

    /// The bound sender a conversation id belongs to: `ada` and `ada/…` are Ada's.
    fn owner_of(&self, conversation: &str) -> Option<&str> {
        let sender = conversation
            .split_once('/')
            .map_or(conversation, |(sender, _)| sender);
        self.by_sender
            .get_key_value(sender)
            .map(|(sender, _)| &**sender)
    }
}

/// How a request authenticated: `None` when its token is wrong (or missing where one is
/// required).
pub(crate) fn authenticate(
    owner_token: Option<&str>,
    senders: &SenderTokens,
    presented: Option<&str>,
) -> Option<Caller> {
    if let Some(sender) = presented.and_then(|token| senders.sender_of(token)) {
        return Some(Caller::Sender(sender));
    }
    match owner_token {
        None => Some(Caller::Owner),
        Some(expected) => presented
            .is_some_and(|token| tokens_match(token, expected))
            .then_some(Caller::Owner),
    }
}

fn refuse(code: ApiCode, message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

impl Caller {
    /// The sender a message is from, given the sender and conversation the client asked
    /// for: a sender's token speaks only as itself, in `sender` or `sender/…`; the owner's
    /// token may not speak as, or into the conversations of, a sender with its own token.
    pub(crate) fn sender_for(
        &self,
        senders: &SenderTokens,
        asked: Option<&str>,
        conversation: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        match self {
            Self::Sender(sender) => {
                if asked.is_some_and(|asked| asked != &**sender) {
                    return Err(refuse(
                        ApiCode::SenderNotAllowed,
                        format!("this token speaks only as `{sender}`"),
                    ));
                }
                if conversation.is_some_and(|id| senders.owner_of(id) != Some(&**sender)) {
                    return Err(refuse(
                        ApiCode::ConversationNotAllowed,
                        format!(
                            "this token may use only the conversations `{sender}` and `{sender}/…`"
                        ),
                    ));
                }
                Ok(Some(sender.to_string()))
            }
            Self::Owner => {
                if let Some(asked) = asked.filter(|asked| senders.is_bound(asked)) {
                    return Err(refuse(
                        ApiCode::SenderNotAllowed,
                        format!(
                            "`{asked}` has its own token (server.tokens): only that token speaks as it"
                        ),
                    ));
                }
                if let Some(owner) = conversation.and_then(|id| senders.owner_of(id)) {
                    return Err(refuse(
                        ApiCode::ConversationNotAllowed,
                        format!("the conversation belongs to `{owner}`, who has its own token"),
                    ));
                }
                Ok(asked.map(str::to_owned))
            }
        }
    }
}

/// The refusal of a message that names a platform other than its access path's.
pub(crate) fn check_platform(asked: Option<&str>, path: &str) -> Result<(), ApiError> {
    match asked {
        Some(asked) if asked != path => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ApiCode::InvalidMessage,
            format!(
                "`platform` is set by the access path (`{path}` here); only a bridge writes as `{asked}`"
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn senders() -> SenderTokens {
        SenderTokens::new([
            ("ada".to_owned(), Secret::new("ada-token-0123456789")),
            ("bob".to_owned(), Secret::new("bob-token-0123456789")),
        ])
    }

    #[test]
    fn a_token_names_its_caller_and_a_wrong_one_names_nobody() {
        let senders = senders();
        let owner = Some("owner-token-0123456");
        assert_eq!(
            authenticate(owner, &senders, Some("owner-token-0123456")),
            Some(Caller::Owner)
        );
        assert_eq!(
            authenticate(owner, &senders, Some("ada-token-0123456789")),
            Some(Caller::Sender("ada".into()))
        );
        assert_eq!(authenticate(owner, &senders, Some("guess")), None);
        assert_eq!(authenticate(owner, &senders, None), None);
        assert_eq!(authenticate(None, &senders, None), Some(Caller::Owner));
        assert_eq!(
            authenticate(None, &senders, Some("bob-token-0123456789")),
            Some(Caller::Sender("bob".into()))
        );
    }

    #[test]
    fn a_senders_token_speaks_only_as_that_sender_in_its_own_conversations() {
        let senders = senders();
        let ada = Caller::Sender("ada".into());
        assert_eq!(
            ada.sender_for(&senders, None, None).unwrap().as_deref(),
            Some("ada")
        );
        assert!(
            ada.sender_for(&senders, Some("ada"), Some("ada/work"))
                .is_ok()
        );
        for (asked, conversation) in [
            (Some("bob"), None),
            (Some("telegram:42"), None),
            (None, Some("bob")),
            (None, Some("adam")),
            (None, Some("shared")),
        ] {
            let refused = ada.sender_for(&senders, asked, conversation).unwrap_err();
            assert_eq!(
                refused.status,
                StatusCode::FORBIDDEN,
                "{asked:?} {conversation:?}"
            );
        }
    }

    #[test]
    fn the_owners_token_cannot_claim_a_sender_that_has_its_own() {
        let senders = senders();
        let owner = Caller::Owner;
        assert_eq!(
            owner
                .sender_for(&senders, Some("carol"), None)
                .unwrap()
                .as_deref(),
            Some("carol")
        );
        assert_eq!(
            owner.sender_for(&senders, None, Some("team")).unwrap(),
            None
        );
        assert!(owner.sender_for(&senders, Some("ada"), None).is_err());
        assert!(
            owner
                .sender_for(&senders, Some("carol"), Some("bob/notes"))
                .is_err()
        );
    }

    #[test]
    fn only_a_bridge_writes_as_its_platform() {
        assert!(check_platform(None, "api").is_ok());
        assert!(check_platform(Some("api"), "api").is_ok());
        let refused = check_platform(Some("telegram"), "api").unwrap_err();
        assert_eq!(refused.code, ApiCode::InvalidMessage);
    }
}
