//! `server.ops_token`: a second token that reads the operator's views (the `/ops`
//! dashboard's stream, `GET /api/v1/usage`, `/metrics`) and nothing else: for a wall
//! screen, a Prometheus scraper, or a colleague on call.

use super::{ConfigError, MIN_REMOTE_TOKEN_BYTES, ServerConfig, invalid};

/// Checks `server.ops_token`: carried by a header, long enough off loopback, and not the
/// owner's token (which would make it the owner's).
pub(super) fn validate_ops_token(server: &ServerConfig) -> Result<(), ConfigError> {
    let Some(token) = &server.ops_token else {
        return Ok(());
    };
    if token.trim().is_empty() || token.trim() != token {
        return Err(invalid(
            "server.ops_token",
            "must not be empty, nor start or end with white space",
        ));
    }
    if server.token.is_none() {
        return Err(invalid(
            "server.ops_token",
            "needs server.token: without it every request is the owner's",
        ));
    }
    if server.token.as_deref() == Some(token.as_str()) {
        return Err(invalid(
            "server.ops_token",
            "is the owner's token; give the operator's views a token of their own",
        ));
    }
    if !server.listen.ip().is_loopback() && token.len() < MIN_REMOTE_TOKEN_BYTES {
        return Err(invalid(
            "server.ops_token",
            format!(
                "a node reachable from other machines needs at least {MIN_REMOTE_TOKEN_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}
