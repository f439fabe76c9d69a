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
use troupe_actors::uploads::{
    ImageRef, UploadError, UploadId, UploadStore, admit, conversation_folder,
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
}

fn object_name(key: &SessionKey, id: &UploadId) -> String {
    format!("{}/{id}", conversation_folder(key))
}

#[async_trait::async_trait]
impl UploadStore for ObjectUploads {
    async fn put(&self, key: &SessionKey, bytes: Bytes) -> Result<ImageRef, UploadError> {
        let media_type = admit(&bytes, self.max_bytes)?;
        match self.membership.members_without_pictures() {
            None => {
                return Err(UploadError::Unavailable(
                    "this node does not know every member of the cluster yet; try again in a moment"
                        .to_owned(),
                ));
            }
            Some(older) if !older.is_empty() => {
                return Err(UploadError::Unavailable(format!(
                    "{} run an older build that cannot read pictures; upgrade every node first",
                    older.join(", ")
                )));
            }
            Some(_) => {}
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use troupe_actors::provider::ImageType;
    use troupe_actors::testing::PIXEL_PNG;

    #[tokio::test]
    async fn no_upload_is_taken_while_a_member_of_an_older_build_is_alive() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let jetstream = jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let members = crate::membership::short_lease_bucket(&jetstream).await;
        // An older build's lease: no `pictures` field.
        let old_lease = r#"{"node_id":"old","address":null,"state":"active","epoch":3,
            "sessions":0,"shards":0,"in_flight":0,"started_at":1,"version":"0.1.0","journal":true}"#;
        members.put("old", old_lease.into()).await.unwrap();
        let membership = crate::membership::joined_with_short_lease(&members, "new").await;
        let stop = CancellationToken::new();
        let (_reconnects, watching) = tokio::sync::watch::channel(0u64);
        tokio::spawn(Arc::clone(&membership).run_watch(watching, stop.clone()));
        let uploads = ObjectUploads::open(
            &jetstream,
            jetstream::stream::StorageType::Memory,
            1,
            Arc::clone(&membership),
            1024,
        )
        .await
        .unwrap();
        let key = SessionKey::new_unchecked("ws", "ada");
        let picture = Bytes::from_static(PIXEL_PNG);
        // Until it has watched a whole lease, the node does not know who is there.
        assert!(matches!(
            uploads.put(&key, picture.clone()).await,
            Err(UploadError::Unavailable(_))
        ));
        tokio::spawn(Arc::clone(&membership).run_heartbeats(stop.clone()));
        let older = Some(vec!["old".to_owned()]);
        for _ in 0..200 {
            members.put("old", old_lease.into()).await.unwrap();
            if membership.members_without_pictures() == older {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let refused = uploads.put(&key, picture.clone()).await;
        assert!(
            matches!(&refused, Err(UploadError::Unavailable(reason)) if reason.contains("old")),
            "{refused:?}"
        );

        // It leaves: pictures are kept, read back, and forgotten with the conversation.
        members.delete("old").await.unwrap();
        for _ in 0..200 {
            if membership.members_without_pictures() == Some(Vec::new()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kept = uploads.put(&key, picture.clone()).await.unwrap();
        let (kind, bytes) = uploads.get(&key, &kept.upload).await.unwrap();
        assert_eq!((kind, bytes), (ImageType::Png, picture));
        uploads.forget(&key).await.unwrap();
        assert!(matches!(
            uploads.get(&key, &kept.upload).await,
            Err(UploadError::NotFound(_))
        ));
        stop.cancel();
    }
}
