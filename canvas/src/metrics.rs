//! The canvas's metric names (Prometheus, on `/metrics`).

/// Rooms in memory now.
pub const ROOMS_OPEN: &str = "troupe_canvas_rooms_open";
/// Rooms that left memory after being empty for `canvas.idle_passivate_secs`.
pub const PASSIVATIONS: &str = "troupe_canvas_passivations_total";
/// WebSocket connections in rooms now.
pub const CONNECTIONS: &str = "troupe_canvas_connections";
/// Document updates applied and journaled (clients', REST patches).
pub const UPDATES: &str = "troupe_canvas_updates_total";
/// Bytes of those updates.
pub const UPDATE_BYTES: &str = "troupe_canvas_update_bytes_total";
/// Journals folded into a snapshot.
pub const COMPACTIONS: &str = "troupe_canvas_compactions_total";
