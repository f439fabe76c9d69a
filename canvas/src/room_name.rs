//! A room's name: 1–128 characters from `[A-Za-z0-9._-]`, so it is safe in a URL path and
//! a database key as it is.

use serde::{Deserialize, Serialize};

/// Longest room name, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 128;

/// A validated room name. Only [`RoomName::parse`] builds one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomName(String);

/// Why a room name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    #[error("a room name cannot be empty")]
    Empty,
    #[error("a room name has at most {MAX_ROOM_NAME_CHARS} characters")]
    TooLong,
    #[error("a room name uses only letters, digits, '.', '_' and '-' (found {0:?})")]
    Character(char),
}

impl RoomName {
    /// Validates `name`.
    pub fn parse(name: &str) -> Result<Self, RoomNameError> {
        if name.is_empty() {
            return Err(RoomNameError::Empty);
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(RoomNameError::Character(bad));
        }
        if name.len() > MAX_ROOM_NAME_CHARS {
            return Err(RoomNameError::TooLong);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RoomName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_letters_digits_dots_underscores_and_dashes_are_accepted() {
        for name in ["a", "Board-1", "team.plan_2026", &"x".repeat(128)] {
            assert_eq!(RoomName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn empty_long_and_odd_names_are_refused_with_the_reason() {
        assert_eq!(RoomName::parse(""), Err(RoomNameError::Empty));
        assert_eq!(
            RoomName::parse(&"x".repeat(129)),
            Err(RoomNameError::TooLong)
        );
        for (name, bad) in [
            ("a/b", '/'),
            ("../x", '/'),
            ("a b", ' '),
            ("é", 'é'),
            ("a\0", '\0'),
        ] {
            assert_eq!(RoomName::parse(name), Err(RoomNameError::Character(bad)));
        }
    }

    #[test]
    fn deserializing_validates_too() {
        assert!(serde_json::from_str::<RoomName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<RoomName>("\"no/slash\"").is_err());
    }
}
