//! `[canvas]`: the collaborative rooms served at `/yjs/{room}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_canvas::{RoomLimits, RoomSettings};

use super::{ConfigError, invalid};

/// `[canvas]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CanvasConfig {
    /// An open room with no client leaves memory after this long.
    #[serde(default = "default_idle_passivate_secs")]
    pub(crate) idle_passivate_secs: u64,
    /// Largest document update one message may carry.
    #[serde(default = "default_max_update_bytes")]
    pub(crate) max_update_bytes: usize,
    /// Largest a room's stored document may grow.
    #[serde(default = "default_max_document_bytes")]
    pub(crate) max_document_bytes: usize,
    /// Frames (updates, presence) one connection may send a second, in bursts of one
    /// second's worth; more closes the connection.
    #[serde(default = "default_max_updates_per_second")]
    pub(crate) max_updates_per_second: u32,
}

const fn default_idle_passivate_secs() -> u64 {
    60
}

const fn default_max_update_bytes() -> usize {
    8 * 1024 * 1024
}

const fn default_max_document_bytes() -> usize {
    64 * 1024 * 1024
}

const fn default_max_updates_per_second() -> u32 {
    500
}

/// Smallest `max_update_bytes`: a Yjs client's ordinary edits must fit.
const MIN_UPDATE_BYTES: usize = 1024;

impl Default for CanvasConfig {
    fn default() -> Self {
        Self {
            idle_passivate_secs: default_idle_passivate_secs(),
            max_update_bytes: default_max_update_bytes(),
            max_document_bytes: default_max_document_bytes(),
            max_updates_per_second: default_max_updates_per_second(),
        }
    }
}

impl CanvasConfig {
    /// Checks every key; the error names the first one out of range.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.idle_passivate_secs == 0 {
            return Err(invalid("canvas.idle_passivate_secs", "must be at least 1"));
        }
        if self.max_update_bytes < MIN_UPDATE_BYTES {
            return Err(invalid(
                "canvas.max_update_bytes",
                format!("must be at least {MIN_UPDATE_BYTES}"),
            ));
        }
        if self.max_updates_per_second == 0 {
            return Err(invalid(
                "canvas.max_updates_per_second",
                "must be at least 1",
            ));
        }
        if self.max_document_bytes < self.max_update_bytes {
            return Err(invalid(
                "canvas.max_document_bytes",
                "must be at least canvas.max_update_bytes",
            ));
        }
        Ok(())
    }

    pub(crate) fn settings(&self) -> RoomSettings {
        RoomSettings {
            limits: RoomLimits {
                max_update_bytes: self.max_update_bytes,
                max_document_bytes: self.max_document_bytes,
            },
            idle_passivate: Duration::from_secs(self.idle_passivate_secs),
            max_updates_per_second: self.max_updates_per_second,
            ..RoomSettings::default()
        }
    }
}
