//! The pages, compiled into the binary (no external CDN):
//! - `GET /` (Chat) and `GET /rooms` (Canvas rooms): the web app's shell, one page for its
//!   sections. Its script and styles (`/app/app.js`, `/app/app.css`) are built from
//!   `src/gateway/web/src` by `scripts/build-web-app` and committed in `web/dist`. The chat
//!   talks to `/ws`, sending the token in the `hello` frame (never in the URL).
//! - `GET /canvas/{room}`: the whiteboard on a room ([`troupe_canvas::page`]), with its
//!   script at `/canvas/assets/board.js`. It mints a room token with the owner's token (as
//!   the chat page keeps it) and joins `/yjs/{room}` with it.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use troupe_canvas::RoomName;
use troupe_canvas::page::{PAGE_HTML, PAGE_LICENSES, PAGE_SCRIPT};

use super::error::{ApiCode, ApiError};

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_SCRIPT: &str = include_str!("web/dist/app.js");
const APP_STYLES: &str = include_str!("web/dist/app.css");
/// Plain JavaScript the browser loads as its own module (no build step).
const MICROPHONE_WORKLET: &str = include_str!("web/worklet/microphone.js");
const APP_LICENSES: &str = include_str!("web/dist/LICENSES.txt");

/// Only the app's own script, styles and connections, and images from this node or inline
/// data: nothing inline runs, and nothing from elsewhere loads.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) async fn index() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, CSP),
            (CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// The canvas page: only its own script (no inline script), inline styles, and its own
/// connections.
const CANVAS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                          connect-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) async fn canvas_page(Path(room): Path<String>) -> Response {
    if let Err(error) = RoomName::parse(&room) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ApiCode::InvalidRoom,
            error.to_string(),
        )
        .into_response();
    }
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, CANVAS_CSP),
            (CACHE_CONTROL, "no-cache"),
        ],
        PAGE_HTML,
    )
        .into_response()
}

/// A script or stylesheet compiled into the binary, checked again on every load.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

pub(crate) async fn canvas_script() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_SCRIPT)
}

pub(crate) async fn canvas_licenses() -> Response {
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], PAGE_LICENSES).into_response()
}

pub(crate) async fn app_script() -> Response {
    asset("text/javascript; charset=utf-8", APP_SCRIPT)
}

/// The microphone's audio worklet, which the page loads as its own module.
pub(crate) async fn microphone_worklet() -> Response {
    asset("text/javascript; charset=utf-8", MICROPHONE_WORKLET)
}

pub(crate) async fn app_styles() -> Response {
    asset("text/css; charset=utf-8", APP_STYLES)
}

pub(crate) async fn app_licenses() -> Response {
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], APP_LICENSES).into_response()
}
