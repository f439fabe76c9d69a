//! Pictures a person uploads into a conversation, for a vision model to see.
//!
//! A picture is uploaded on its own (`POST /api/v1/conversations/{id}/uploads`) and then
//! named by the message that shows it (an attachment's `upload_id`). The bytes are kept
//! once, beside the conversation, under an id made from their SHA-256 (the same picture
//! twice is one file); the history keeps only [`ImageRef`]s, and a turn reads the pictures
//! of its window back for the model. Deleting the conversation deletes its pictures.
//!
//! What a file calls itself counts for nothing: its type is read from its first bytes, and
//! only PNG, JPEG, GIF and WebP (what both OpenAI's and Anthropic's vision models take) are
//! kept. Reading and base64-encoding a picture of several MiB runs on the blocking pool,
//! never on the async runtime.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::SessionKey;
use crate::provider::{ImagePart, ImageType};

/// The id of an uploaded picture: `up-` and 32 lowercase hex digits of its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(String);

/// Why a text is not an upload id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an upload id (`up-` and 32 lowercase hex digits)")]
pub struct InvalidUploadId(String);

const ID_PREFIX: &str = "up-";
const ID_HEX_DIGITS: usize = 32;

impl UploadId {
    /// The id of these bytes.
    pub fn of(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        Self(format!(
            "{ID_PREFIX}{}",
            hex::encode(&digest[..ID_HEX_DIGITS / 2])
        ))
    }

    /// Reads an id a client sent.
    pub fn parse(text: &str) -> Result<Self, InvalidUploadId> {
        let valid = text.strip_prefix(ID_PREFIX).is_some_and(|digits| {
            digits.len() == ID_HEX_DIGITS
                && digits
                    .bytes()
                    .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        });
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidUploadId(text.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UploadId {
    type Error = InvalidUploadId;

    fn try_from(text: String) -> Result<Self, InvalidUploadId> {
        Self::parse(&text)
    }
}

impl From<UploadId> for String {
    fn from(id: UploadId) -> Self {
        id.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A picture a message showed, as its history entry keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub upload: UploadId,
    pub media_type: ImageType,
}

/// Why an upload was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is not a PNG, JPEG, GIF or WebP picture")]
    NotAnImage,
    #[error("the picture is {actual} bytes, larger than the limit of {limit} bytes")]
    TooLarge { actual: usize, limit: usize },
    #[error("no upload {0} in this conversation")]
    NotFound(UploadId),
    #[error("the uploads store failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("reading an upload stopped: {0}")]
    Stopped(#[source] tokio::task::JoinError),
    /// The store cannot keep pictures now (a cluster member runs an older build).
    #[error("pictures cannot be kept now: {0}")]
    Unavailable(String),
    /// A shared store (the cluster's) failed.
    #[error("the uploads store failed: {0}")]
    Remote(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where a node keeps uploaded pictures.
#[async_trait::async_trait]
pub trait UploadStore: Send + Sync + 'static {
    /// Keeps `bytes` in `key`'s conversation, once they prove to be a picture within the
    /// size limit; the same picture again gets the same id.
    async fn put(&self, key: &SessionKey, bytes: Bytes) -> Result<ImageRef, UploadError>;

    /// The stored bytes of a picture of `key`'s conversation.
    async fn read(&self, key: &SessionKey, id: &UploadId) -> Result<Bytes, UploadError>;

    /// Deletes every picture of `key`'s conversation.
    async fn forget(&self, key: &SessionKey) -> Result<(), UploadError>;

    /// The largest picture it keeps, in bytes.
    fn max_bytes(&self) -> usize;

    /// The picture as it was uploaded, with its type.
    async fn get(
        &self,
        key: &SessionKey,
        id: &UploadId,
    ) -> Result<(ImageType, Bytes), UploadError> {
        let bytes = self.read(key, id).await?;
        let media_type = ImageType::sniff(&bytes).ok_or(UploadError::NotAnImage)?;
        Ok((media_type, bytes))
    }

    /// The picture as a model reads it: its type and its bytes in base64 (encoded on the
    /// blocking pool).
    async fn image_part(&self, key: &SessionKey, id: &UploadId) -> Result<ImagePart, UploadError> {
        let bytes = self.read(key, id).await?;
        tokio::task::spawn_blocking(move || image_part_of(&bytes))
            .await
            .map_err(UploadError::Stopped)?
    }
}

/// Uploads as files under the data directory: `uploads/<conversation>/<id>`, where
/// `<conversation>` is a hash of the session key (keys hold characters a path must not).
#[derive(Debug)]
pub struct LocalUploads {
    root: PathBuf,
    max_bytes: usize,
}

impl LocalUploads {
    pub fn new(data_dir: &Path, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            root: data_dir.join("uploads"),
            max_bytes,
        })
    }

    fn conversation_dir(&self, key: &SessionKey) -> PathBuf {
        self.root.join(conversation_folder(key))
    }

    fn file(&self, key: &SessionKey, id: &UploadId) -> PathBuf {
        self.conversation_dir(key).join(id.as_str())
    }
}

/// Where a conversation's pictures are kept: a hash of its key (keys hold characters a
/// path or an object name must not).
pub fn conversation_folder(key: &SessionKey) -> String {
    let digest = Sha256::digest(key.to_string().as_bytes());
    hex::encode(&digest[..16])
}

/// A stored picture as a model reads it (run it on the blocking pool: it encodes MiBs).
pub fn image_part_of(bytes: &[u8]) -> Result<ImagePart, UploadError> {
    let media_type = ImageType::sniff(bytes).ok_or(UploadError::NotAnImage)?;
    let base64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(ImagePart {
        media_type,
        base64: base64.into(),
    })
}

/// Checks `bytes` against the limit and reads their type.
pub fn admit(bytes: &[u8], limit: usize) -> Result<ImageType, UploadError> {
    if bytes.len() > limit {
        return Err(UploadError::TooLarge {
            actual: bytes.len(),
            limit,
        });
    }
    ImageType::sniff(bytes).ok_or(UploadError::NotAnImage)
}

/// Writes `bytes` to `path` durably: a temporary file, fsync'd, renamed into place.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let directory = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)?;
    let mut temporary = tempfile_in(directory)?;
    temporary.1.write_all(bytes)?;
    temporary.1.sync_all()?;
    std::fs::rename(&temporary.0, path)?;
    std::fs::File::open(directory)?.sync_all()
}

/// A new file beside the final one (so the rename stays on one file system).
fn tempfile_in(directory: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = directory.join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

#[async_trait::async_trait]
impl UploadStore for LocalUploads {
    async fn put(&self, key: &SessionKey, bytes: Bytes) -> Result<ImageRef, UploadError> {
        let media_type = admit(&bytes, self.max_bytes)?;
        let upload = UploadId::of(&bytes);
        let path = self.file(key, &upload);
        tokio::task::spawn_blocking(move || {
            if path.exists() {
                return Ok(());
            }
            write_durably(&path, &bytes)
        })
        .await
        .map_err(UploadError::Stopped)?
        .map_err(UploadError::Io)?;
        Ok(ImageRef { upload, media_type })
    }

    async fn read(&self, key: &SessionKey, id: &UploadId) -> Result<Bytes, UploadError> {
        match tokio::fs::read(self.file(key, id)).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(UploadError::NotFound(id.clone()))
            }
            Err(error) => Err(UploadError::Io(error)),
        }
    }

    async fn forget(&self, key: &SessionKey) -> Result<(), UploadError> {
        match tokio::fs::remove_dir_all(self.conversation_dir(key)).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(UploadError::Io(error))
            }
            _ => Ok(()),
        }
    }

    fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PIXEL_PNG;

    fn key(conversation: &str) -> SessionKey {
        SessionKey::new("ws", conversation).unwrap()
    }

    #[tokio::test]
    async fn a_picture_is_kept_once_per_conversation_read_back_and_forgotten_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = LocalUploads::new(dir.path(), 1024);
        let first = uploads
            .put(&key("ada"), Bytes::from_static(PIXEL_PNG))
            .await
            .unwrap();
        let again = uploads
            .put(&key("ada"), Bytes::from_static(PIXEL_PNG))
            .await
            .unwrap();
        assert_eq!(first, again, "the same picture is one upload");
        assert_eq!(first.media_type, ImageType::Png);
        let (kind, bytes) = uploads.get(&key("ada"), &first.upload).await.unwrap();
        assert_eq!((kind, &bytes[..]), (ImageType::Png, PIXEL_PNG));
        let part = uploads
            .image_part(&key("ada"), &first.upload)
            .await
            .unwrap();
        assert!(part.base64.starts_with("iVBORw0KGgo"), "{}", part.base64);
        // Another conversation does not see it.
        assert!(matches!(
            uploads.get(&key("bob"), &first.upload).await,
            Err(UploadError::NotFound(_))
        ));
        uploads.forget(&key("ada")).await.unwrap();
        assert!(matches!(
            uploads.get(&key("ada"), &first.upload).await,
            Err(UploadError::NotFound(_))
        ));
        uploads.forget(&key("ada")).await.unwrap();
    }

    #[tokio::test]
    async fn what_is_not_a_picture_or_is_too_large_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = LocalUploads::new(dir.path(), PIXEL_PNG.len());
        let text = Bytes::from_static(b"<svg onload=alert(1)>");
        assert!(matches!(
            uploads.put(&key("ada"), text).await,
            Err(UploadError::NotAnImage)
        ));
        let mut large = PIXEL_PNG.to_vec();
        large.push(0);
        assert!(matches!(
            uploads.put(&key("ada"), Bytes::from(large)).await,
            Err(UploadError::TooLarge { .. })
        ));
        assert!(!dir.path().join("uploads").exists(), "nothing was written");
    }

    #[test]
    fn only_well_formed_ids_are_upload_ids() {
        let id = UploadId::of(PIXEL_PNG);
        assert_eq!(UploadId::parse(id.as_str()), Ok(id.clone()));
        for bad in [
            "",
            "up-",
            "up-XYZ",
            "../etc/passwd",
            "up-0123456789abcdef0123456789abcdeF",
        ] {
            assert!(UploadId::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<UploadId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<UploadId>("\"up-../x\"").is_err());
    }
}
