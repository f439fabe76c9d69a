//! Pictures uploaded into conversations, kept in the cluster's JetStream object store
//! (bucket [`UPLOADS_BUCKET`]) so that whichever node runs a session reads them: objects
//! are named `<conversation folder>/<upload id>` (see `troupe_actors::uploads`).
//!
//! A build from before pictures cannot read a snapshot that keeps them, so no member takes
//! uploads while a member of such a build is alive (its lease lacks
//! [`crate::membership::MemberInfo::pictures`]).

use std::sync::Arc;

use async_nats::jetstream::{self, object_store};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use troupe_actors::SessionKey;
use troupe_actors::provider::{ImagePart, ImageType};
use troupe_actors::uploads::{
    ImageRef, UploadError, UploadId, UploadStore, admit, conversation_folder, image_part_of,
};

use crate::ClusterError;
use crate::membership::Membership;
use crate::node::setup_error;

/// The object store bucket of uploaded pictures.
pub const UPLOADS_BUCKET: &str = "troupe_uploads";

/// The cluster's uploads.
pub struct ObjectUploads {
    bucket: object_store::ObjectStore,
    membership: Arc<Membership>,
    max_bytes: usize,
}

impl ObjectUploads {
    /// Opens (or creates) the bucket.
    pub(crate) async fn open(
        jetstream: &jetstream::Context,
        storage: jetstream::stream::StorageType,
        replicas: usize,
        membership: Arc<Membership>,
        max_bytes: usize,
    ) -> Result<Arc<Self>, ClusterError> {
        let bucket = jetstream
            .create_object_store(object_store::Config {
                bucket: UPLOADS_BUCKET.to_owned(),
                description: Some("pictures uploaded into conversations".to_owned()),
                storage,
                num_replicas: replicas,
                ..object_store::Config::default()
            })
            .await
            .map_err(|error| setup_error(UPLOADS_BUCKET, error))?;
        Ok(Arc::new(Self {
            bucket,
            membership,
            max_bytes,
        }))
    }

    async fn read(&self, key: &SessionKey, id: &UploadId) -> Result<Bytes, UploadError> {
        let name = object_name(key, id);
        let mut object = match self.bucket.get(&name).await {
            Ok(object) => object,
            Err(error) if error.kind() == object_store::GetErrorKind::NotFound => {
                return Err(UploadError::NotFound(id.clone()));
            }
            Err(error) => return Err(UploadError::Remote(Box::new(error))),
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(UploadError::Io)?;
        Ok(Bytes::from(bytes))
    }
}

fn object_name(key: &SessionKey, id: &UploadId) -> String {
    format!("{}/{id}", conversation_folder(key))
}

#[async_trait::async_trait]
impl UploadStore for ObjectUploads {
    async fn put(&self, key: &SessionKey, bytes: Bytes) -> Result<ImageRef, UploadError> {
        let media_type = admit(&bytes, self.max_bytes)?;
        let older = self.membership.members_without_pictures();
        if !older.is_empty() {
            return Err(UploadError::Unavailable(format!(
                "{} run an older build that cannot read pictures; upgrade every node first",
                older.join(", ")
            )));
        }
        let upload = UploadId::of(&bytes);
        let name = object_name(key, &upload);
        if self.bucket.info(&name).await.is_err() {
            self.bucket
                .put(name.as_str(), &mut bytes.as_ref())
                .await
                .map_err(|error| UploadError::Remote(Box::new(error)))?;
        }
        Ok(ImageRef { upload, media_type })
    }

    async fn get(
        &self,
        key: &SessionKey,
        id: &UploadId,
    ) -> Result<(ImageType, Bytes), UploadError> {
        let bytes = self.read(key, id).await?;
        let media_type = ImageType::sniff(&bytes).ok_or(UploadError::NotAnImage)?;
        Ok((media_type, bytes))
    }

    async fn image_part(&self, key: &SessionKey, id: &UploadId) -> Result<ImagePart, UploadError> {
        let bytes = self.read(key, id).await?;
        tokio::task::spawn_blocking(move || image_part_of(&bytes))
            .await
            .map_err(UploadError::Stopped)?
    }

    async fn forget(&self, key: &SessionKey) -> Result<(), UploadError> {
        let prefix = format!("{}/", conversation_folder(key));
        let mut objects = self
            .bucket
            .list()
            .await
            .map_err(|error| UploadError::Remote(Box::new(error)))?;
        let mut names = Vec::new();
        while let Some(object) = objects.next().await {
            let object = object.map_err(|error| UploadError::Remote(Box::new(error)))?;
            if object.name.starts_with(&prefix) && !object.deleted {
                names.push(object.name);
            }
        }
        for name in names {
            self.bucket
                .delete(&name)
                .await
                .map_err(|error| UploadError::Remote(Box::new(error)))?;
        }
        Ok(())
    }

    fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}
