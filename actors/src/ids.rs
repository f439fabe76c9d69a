//! Identifiers: the rules every id must follow, and the [`SessionKey`] that names one
//! conversation on one platform (`platform:conversation_id`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id accepted anywhere, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest platform name, in bytes.
pub const MAX_PLATFORM_BYTES: usize = 32;

/// Why an id or a platform name was refused; each reads as the end of a sentence that
/// names the field ("field `sender_id` is invalid: must not be empty").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("must not be empty")]
    Empty,
    #[error("is {bytes} bytes, longer than {MAX_ID_BYTES}")]
    TooLong { bytes: usize },
    #[error("contains the character {0:?}; white space and control characters are not allowed")]
    Character(char),
    #[error("must be 1 to {MAX_PLATFORM_BYTES} bytes long")]
    PlatformLength,
    #[error("may hold only a-z, 0-9, '_' and '-'")]
    PlatformCharacters,
    #[error("`{0}` is reserved for the server's own records")]
    ReservedPlatform(String),
}

/// Checks an id: 1 to 256 bytes of visible characters (no white space, no control characters).
pub fn validate_id(value: &str) -> Result<(), InvalidId> {
    if value.is_empty() {
        return Err(InvalidId::Empty);
    }
    if value.len() > MAX_ID_BYTES {
        return Err(InvalidId::TooLong { bytes: value.len() });
    }
    if let Some(bad) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidId::Character(bad));
    }
    Ok(())
}

/// Platforms whose keys the server uses for its own records (a person's notes live under
/// `notes:<person>` in the session store, conversation titles under
/// `titles:<platform>/<conversation>`) and for a workflow run's own conversation
/// (`workflow:<run>`); no client's message may claim them.
pub const RESERVED_PLATFORMS: [&str; 3] = ["notes", "titles", "workflow"];

/// Checks a platform name: 1 to 32 bytes of `a-z`, `0-9`, `_` and `-`.
pub fn validate_platform(value: &str) -> Result<(), InvalidId> {
    if value.is_empty() || value.len() > MAX_PLATFORM_BYTES {
        return Err(InvalidId::PlatformLength);
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if !value.chars().all(allowed) {
        return Err(InvalidId::PlatformCharacters);
    }
    Ok(())
}

/// Why a session key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSessionKey {
    #[error("platform {0}")]
    Platform(#[source] InvalidId),
    #[error("conversation id {0}")]
    Conversation(#[source] InvalidId),
    #[error("session key `{0}` is not of the form platform:conversation_id")]
    Form(String),
}

/// Names one session: a conversation on a platform. Written `platform:conversation_id`;
/// the platform never holds `:`, so the first `:` splits the two.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionKey {
    platform: String,
    conversation_id: String,
}

impl SessionKey {
    /// Builds a key from parts that were already validated (e.g. from an [`crate::InboundMessage`]).
    pub fn new_unchecked(platform: &str, conversation_id: &str) -> Self {
        Self {
            platform: platform.to_owned(),
            conversation_id: conversation_id.to_owned(),
        }
    }

    /// Builds a key from outside input, checking both parts.
    pub fn new(platform: &str, conversation_id: &str) -> Result<Self, InvalidSessionKey> {
        validate_platform(platform).map_err(InvalidSessionKey::Platform)?;
        validate_id(conversation_id).map_err(InvalidSessionKey::Conversation)?;
        Ok(Self::new_unchecked(platform, conversation_id))
    }

    /// Parses `platform:conversation_id`.
    pub fn parse(text: &str) -> Result<Self, InvalidSessionKey> {
        let (platform, conversation_id) = text
            .split_once(':')
            .ok_or_else(|| InvalidSessionKey::Form(text.to_owned()))?;
        Self::new(platform, conversation_id)
    }

    pub fn platform(&self) -> &str {
        &self.platform
    }

    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.platform, self.conversation_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_at_the_first_colon() {
        let key = SessionKey::parse("matrix:!room:example.org").unwrap();
        assert_eq!(key.platform(), "matrix");
        assert_eq!(key.conversation_id(), "!room:example.org");
        assert_eq!(key.to_string(), "matrix:!room:example.org");
    }

    #[test]
    fn refuses_malformed_keys() {
        assert!(SessionKey::parse("nocolon").is_err());
        assert!(SessionKey::parse(":x").is_err());
        assert!(SessionKey::parse("api:").is_err());
        assert!(SessionKey::parse("API:x").is_err());
    }

    #[test]
    fn ids_allow_unicode_but_not_spaces() {
        assert!(validate_id("@alice:example.org").is_ok());
        assert!(validate_id("用户42").is_ok());
        assert!(validate_id("a\tb").is_err());
    }
}
