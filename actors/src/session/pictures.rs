//! The pictures of a session's window: the ones a message shows are checked as it arrives,
//! and every turn gives the model those its window still holds, read once from the
//! node's uploads and kept in memory while the session is (see [`crate::uploads`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::ids::SessionKey;
use crate::message::{ContentType, InboundMessage};
use crate::provider::ImagePart;
use crate::snapshot::HistoryEntry;
use crate::turn::{ErrorCode, TurnError};
use crate::uploads::{ImageRef, UploadError, UploadId, UploadStore};

/// A session's pictures, read for the model.
#[derive(Default)]
pub(super) struct Pictures {
    /// The node's uploads; `None` where pictures are not kept (a cluster, for now).
    uploads: Option<Arc<dyn UploadStore>>,
    read: HashMap<UploadId, ImagePart>,
}

impl Pictures {
    pub(super) fn new(uploads: Option<Arc<dyn UploadStore>>) -> Self {
        Self {
            uploads,
            read: HashMap::new(),
        }
    }

    /// The pictures `message` shows (its `image` attachments with an `upload_id`), each
    /// found in `key`'s conversation; a clear error for one that is not there.
    pub(super) async fn shown_by(
        &mut self,
        key: &SessionKey,
        message: &InboundMessage,
    ) -> Result<Vec<ImageRef>, TurnError> {
        let mut shown = Vec::new();
        for attachment in message.attachments() {
            let Some(upload) = &attachment.upload_id else {
                continue;
            };
            if attachment.content_type != ContentType::Image {
                return Err(invalid(format!(
                    "attachment {upload} has content type `{}`; uploads are pictures (`image`)",
                    attachment.content_type
                )));
            }
            let part = self.read(key, upload).await?;
            shown.push(ImageRef {
                upload: upload.clone(),
                media_type: part.media_type,
            });
        }
        Ok(shown)
    }

    /// Reads the pictures of `window` the session does not hold yet, and lets go of those
    /// that left it.
    pub(super) async fn hold<'a>(
        &mut self,
        key: &SessionKey,
        window: impl Iterator<Item = &'a HistoryEntry>,
    ) -> Result<(), TurnError> {
        let wanted: Vec<UploadId> = window
            .flat_map(|entry| entry.images.iter().map(|image| image.upload.clone()))
            .collect();
        self.read.retain(|upload, _| wanted.contains(upload));
        for upload in &wanted {
            self.read(key, upload).await?;
        }
        Ok(())
    }

    /// What the model is given for `entry`'s pictures (those [`Self::hold`] read).
    pub(super) fn parts_of(&self, entry: &HistoryEntry) -> Vec<ImagePart> {
        entry
            .images
            .iter()
            .filter_map(|image| self.read.get(&image.upload).cloned())
            .collect()
    }

    async fn read(&mut self, key: &SessionKey, upload: &UploadId) -> Result<ImagePart, TurnError> {
        if let Some(part) = self.read.get(upload) {
            return Ok(part.clone());
        }
        let Some(uploads) = &self.uploads else {
            return Err(invalid(
                "pictures are not kept on this node (a cluster does not take uploads yet)",
            ));
        };
        let part = uploads
            .image_part(key, upload)
            .await
            .map_err(|error| match error {
                UploadError::NotFound(_) | UploadError::NotAnImage => invalid(error.to_string()),
                other => TurnError::new(
                    ErrorCode::StorageError,
                    format!("could not read a picture: {other}"),
                ),
            })?;
        self.read.insert(upload.clone(), part.clone());
        Ok(part)
    }
}

fn invalid(message: impl Into<String>) -> TurnError {
    TurnError::new(ErrorCode::InvalidMessage, message)
}
