//! `[uploads]`: pictures people send to vision models (see `troupe_actors::uploads`).

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// `[uploads]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadsConfig {
    /// Largest picture one upload may be, in bytes.
    #[serde(default = "default_max_image_bytes")]
    pub(crate) max_image_bytes: usize,
    /// Most pictures one message may show.
    #[serde(default = "default_max_images_per_message")]
    pub(crate) max_images_per_message: usize,
}

/// Anthropic's limit for one picture (OpenAI's is larger).
const fn default_max_image_bytes() -> usize {
    5 * 1024 * 1024
}

const fn default_max_images_per_message() -> usize {
    4
}

/// The largest picture either API takes (OpenAI's 20 MB).
const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;
/// Anthropic's most pictures in one request.
const MAX_IMAGES_PER_MESSAGE: usize = 20;

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            max_image_bytes: default_max_image_bytes(),
            max_images_per_message: default_max_images_per_message(),
        }
    }
}

impl UploadsConfig {
    /// Checks every key; the error names the first one out of range.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1024..=MAX_IMAGE_BYTES).contains(&self.max_image_bytes) {
            return Err(invalid(
                "uploads.max_image_bytes",
                format!("must be between 1024 and {MAX_IMAGE_BYTES}"),
            ));
        }
        if !(1..=MAX_IMAGES_PER_MESSAGE).contains(&self.max_images_per_message) {
            return Err(invalid(
                "uploads.max_images_per_message",
                format!("must be between 1 and {MAX_IMAGES_PER_MESSAGE}"),
            ));
        }
        Ok(())
    }
}
