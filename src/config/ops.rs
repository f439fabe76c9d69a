//! `server.ops_token`: a second token that reads the operator's views (the `/ops`
//! dashboard's stream, `GET /api/v1/usage`, `/metrics`) and nothing else: for a wall
//! screen, a Prometheus scraper, or a colleague on call.

use super::{ConfigError, MIN_REMOTE_TOKEN_BYTES, ServerConfig, invalid};

/// Checks that `token` (the value of `key`) can be sent as a bearer token.
pub(super) fn check_bearer(key: &str, token: &str) -> Result<(), ConfigError> {
    if token.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if token.trim() != token {
        return Err(invalid(
            key,
            "starts or ends with white space, which no Authorization header can carry",
        ));
    }
    Ok(())
}

/// Checks `server.ops_token`: carried by a header, long enough off loopback, and not the
/// owner's token (which would make it the owner's).
pub(super) fn validate_ops_token(server: &ServerConfig) -> Result<(), ConfigError> {
    let Some(token) = &server.ops_token else {
        return Ok(());
    };
    check_bearer("server.ops_token", token)?;
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
