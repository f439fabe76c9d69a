//! The durable inbox's JetStream streams.
//!
//! The inbox is spread over `inbox_streams` work-queue streams, stream `i` holding the
//! subjects of the shards `s` with `s % inbox_streams == i`. A NATS server stores each
//! stream's messages on that stream's own goroutine under its own lock, and its work per
//! acknowledged message grows with the consumers of the stream (it asks each one whether
//! it still needs the message), so several streams with a few shard consumers
//! each cost the server less per message than one stream with all of them.
//!
//! Builds before the split kept every shard in one stream, [`subjects::LEGACY_INBOX_STREAM`].
//! When a node finds it, its shard workers drain it beside the new streams, so a rolling
//! upgrade loses nothing that an older node stored.

use async_nats::jetstream::{self, stream};

use crate::config::ClusterConfig;
use crate::kv_store::ClusterError;
use crate::node::{setup_error, storage};
use crate::subjects;

/// The inbox streams of a cluster, as this node opened them.
pub(crate) struct InboxStreams {
    streams: Vec<stream::Stream>,
    legacy: Option<stream::Stream>,
}

impl InboxStreams {
    /// Opens (or creates) every inbox stream, checking that an existing one holds the
    /// shards this node's configuration gives it, and looks for the single stream of older
    /// builds.
    pub(crate) async fn open(
        jetstream: &jetstream::Context,
        config: &ClusterConfig,
    ) -> Result<Self, ClusterError> {
        let opening = (0..config.inbox_streams).map(|index| open_stream(jetstream, config, index));
        let streams = futures_util::future::try_join_all(opening).await?;
        let legacy = find_legacy(jetstream).await?;
        if legacy.is_some() {
            tracing::info!(
                stream = subjects::LEGACY_INBOX_STREAM,
                "found the inbox stream of an older build: draining it beside the new ones; \
                 delete it once every node runs this build and it is empty"
            );
        }
        Ok(Self { streams, legacy })
    }

    /// The stream holding `shard`'s messages.
    pub(crate) fn of(&self, shard: u32) -> &stream::Stream {
        let count = self.streams.len() as u32;
        &self.streams[subjects::inbox_stream_of(shard, count) as usize]
    }

    /// The single inbox stream of older builds, when it exists.
    pub(crate) fn legacy(&self) -> Option<&stream::Stream> {
        self.legacy.as_ref()
    }
}

async fn open_stream(
    jetstream: &jetstream::Context,
    config: &ClusterConfig,
    index: u32,
) -> Result<stream::Stream, ClusterError> {
    let name = subjects::inbox_stream(index);
    let wanted = subjects::inbox_stream_subjects(index, config.inbox_streams, config.shards);
    let opened = jetstream
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: wanted.clone(),
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: config.dedupe_window(),
            storage: storage(config.storage),
            num_replicas: config.replicas,
            ..stream::Config::default()
        })
        .await
        .map_err(|error| setup_error(&name, LayoutError::Refused(error)))?;
    check_subjects(&name, &opened.cached_info().config.subjects, &wanted)?;
    Ok(opened)
}

/// An existing stream made by nodes with another `shards` or `inbox_streams` would leave
/// some shards' messages where no consumer of this node looks: refuse to start instead.
fn check_subjects(name: &str, found: &[String], wanted: &[String]) -> Result<(), ClusterError> {
    let mut found = found.to_vec();
    let mut wanted = wanted.to_vec();
    found.sort();
    wanted.sort();
    if found == wanted {
        return Ok(());
    }
    Err(setup_error(
        name,
        LayoutError::Subjects {
            found: found.len(),
            wanted: wanted.len(),
        },
    ))
}

/// Why an inbox stream does not fit this node's `shards` and `inbox_streams`.
#[derive(Debug, thiserror::Error)]
enum LayoutError {
    #[error("{0} (every node of a cluster needs the same `shards` and `inbox_streams`)")]
    Refused(#[source] jetstream::context::CreateStreamError),
    #[error(
        "the stream holds {found} shard subjects other than the {wanted} this node's `shards` \
         and `inbox_streams` give it; every node of a cluster needs the same values"
    )]
    Subjects { found: usize, wanted: usize },
}

/// The single inbox stream of older builds; `None` when the server says it does not exist.
pub(crate) async fn find_legacy(
    jetstream: &jetstream::Context,
) -> Result<Option<stream::Stream>, ClusterError> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    match jetstream.get_stream(subjects::LEGACY_INBOX_STREAM).await {
        Ok(found) => Ok(Some(found)),
        Err(error) => match error.kind() {
            GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(setup_error(subjects::LEGACY_INBOX_STREAM, error)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_of_another_layout_is_refused() {
        let wanted = subjects::inbox_stream_subjects(1, 8, 64);
        let mut shuffled = wanted.clone();
        shuffled.reverse();
        check_subjects("TROUPE_INBOX_1", &shuffled, &wanted).unwrap();
        let other = subjects::inbox_stream_subjects(1, 4, 64);
        let error = check_subjects("TROUPE_INBOX_1", &other, &wanted).unwrap_err();
        assert!(error.to_string().contains("inbox_streams"), "{error}");
    }
}
