//! The pictures of history entries in the stored formats.
//!
//! A history entry keeps the pictures its message showed ([`HistoryEntry::images`]), but
//! the entry's own encoding stays as older builds read it: the pictures of a snapshot or
//! journal record follow its body, as a list of (message id, pictures), and only then is
//! the newer format version written (snapshot 3, journal record 2). A conversation without
//! pictures is stored exactly as before, so a node of an older build reads it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::HistoryEntry;
use crate::uploads::ImageRef;

/// The pictures of one entry, named by its message id.
#[derive(Serialize, Deserialize)]
struct EntryPictures<'a> {
    message_id: Cow<'a, str>,
    images: Cow<'a, [ImageRef]>,
}

/// Appends the pictures of `entries` after a body encoded into `bytes`; answers whether
/// there were any (nothing is written when there were none).
pub(super) fn append<'a>(
    entries: impl Iterator<Item = &'a HistoryEntry>,
    bytes: &mut Vec<u8>,
) -> bool {
    let pictures: Vec<EntryPictures<'_>> = entries
        .filter(|entry| !entry.images.is_empty())
        .filter_map(|entry| {
            Some(EntryPictures {
                message_id: Cow::Borrowed(entry.message_id.as_deref()?),
                images: Cow::Borrowed(&entry.images),
            })
        })
        .collect();
    if pictures.is_empty() {
        return false;
    }
    bincode::serde::encode_into_std_write(&pictures, bytes, bincode::config::standard())
        .expect("pictures hold only bincode-encodable types");
    true
}

/// Reads the pictures that follow a body and gives each to the entry of its message id.
pub(super) fn attach(entries: &mut [HistoryEntry], rest: &[u8]) -> Result<(), String> {
    let (pictures, _): (Vec<EntryPictures<'static>>, _) =
        bincode::serde::decode_from_slice(rest, bincode::config::standard())
            .map_err(|error| format!("pictures: {error}"))?;
    for picture in pictures {
        let entry = entries
            .iter_mut()
            .find(|entry| entry.message_id.as_deref() == Some(&*picture.message_id));
        if let Some(entry) = entry {
            entry.images = picture.images.into_owned();
        }
    }
    Ok(())
}
