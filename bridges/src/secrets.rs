//! Secrets of a bridge (tokens, signing secrets): read from an environment variable or a
//! file named in the config, never written in it, never logged.

use std::path::{Path, PathBuf};

/// A secret value. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(…)")
    }
}

/// Where a secret comes from: exactly one of an environment variable and a file.
pub struct SecretSource<'a> {
    env: Option<&'a str>,
    file: Option<&'a Path>,
}

impl<'a> SecretSource<'a> {
    pub const fn new(env: Option<&'a str>, file: Option<&'a Path>) -> Self {
        Self { env, file }
    }

    pub fn read(&self) -> Result<Secret, SecretError> {
        let value = match (self.env, self.file) {
            (Some(_), Some(_)) => return Err(SecretError::TwoPlaces),
            (None, None) => return Err(SecretError::NotNamed),
            (Some(name), None) => std::env::var(name).map_err(|source| SecretError::Unset {
                name: name.to_owned(),
                source,
            })?,
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
                    path: path.to_owned(),
                    source,
                })?
            }
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(value.to_owned()))
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("give the variable or the file, not both")]
    TwoPlaces,
    #[error("is required (the name of an environment variable)")]
    NotNamed,
    #[error("the environment variable {name} is not set")]
    Unset {
        name: String,
        #[source]
        source: std::env::VarError,
    },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret is empty")]
    Empty,
}

pub use troupe_actors::signing::constant_time_eq;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_exactly_one_place() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "  s3cret\n").unwrap();
        let secret = SecretSource::new(None, Some(file.path())).read().unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(format!("{secret:?}"), "Secret(…)");
        assert!(SecretSource::new(None, None).read().is_err());
        assert!(
            SecretSource::new(Some("X"), Some(file.path()))
                .read()
                .is_err()
        );
        let missing = SecretSource::new(Some("TROUPE_TEST_SURELY_UNSET_VARIABLE"), None).read();
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("TROUPE_TEST_SURELY_UNSET_VARIABLE")
        );
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
