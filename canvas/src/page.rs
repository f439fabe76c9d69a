//! The canvas page (`GET /canvas/{room}`): a whiteboard on one room, with live cursors and a
//! chat panel bound to the room. Its script is bundled from npm by
//! `scripts/build-canvas-page` into `canvas/web/dist` and committed, so building the crate
//! never needs npm; this module only holds the files.

/// The page itself (the same for every room; the script reads the room from the URL).
pub const PAGE_HTML: &str = include_str!("../web/page.html");
/// The page's script: canvas/web/src with yjs and y-websocket, minified.
pub const PAGE_SCRIPT: &str = include_str!("../web/dist/board.js");
/// The licenses of the npm packages inside [`PAGE_SCRIPT`].
pub const PAGE_LICENSES: &str = include_str!("../web/dist/LICENSES.txt");
