//! Collaborative documents the assistant and its user edit together (yrs/Yjs), as sans-IO
//! logic with a thin WebSocket adapter.
//!
//! Nothing here yet.
