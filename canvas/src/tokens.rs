//! Room tokens: short-lived, room-scoped client tokens for the canvas (y-sweet's model). A
//! browser cannot send an `Authorization` header on a WebSocket, so the owner (or an app
//! acting for them) mints a token for one room, `read` or `write`, and the client passes it
//! as `?token=`. The node's own token is never accepted in a URL.
//!
//! Tokens live in this node's memory: a restart forgets them (they are short-lived), and
//! revoking one, or its expiry, closes the connections that use it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::room_name::RoomName;

/// Longest a token may live.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a token lives when the request does not say.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Most tokens alive at once on a node.
const MAX_LIVE_TOKENS: usize = 10_000;
/// Every token starts so, to be told from the node's own token at a glance.
const TOKEN_PREFIX: &str = "rt_";

/// What a room token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

/// Why a token could not be minted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("ttl_secs must be between 1 and {}", MAX_TOKEN_TTL.as_secs())]
    Ttl,
    #[error("{MAX_LIVE_TOKENS} room tokens are alive; revoke some or wait for them to expire")]
    TooMany,
}

/// A minted token, as its owner is told once.
#[derive(Clone, Debug, Serialize)]
pub struct MintedToken {
    /// Names the token for revocation; not a secret.
    pub id: String,
    pub token: String,
    pub room: RoomName,
    pub access: Access,
    /// Unix seconds.
    pub expires_at: u64,
}

/// What a valid token lets its holder do, and until when.
#[derive(Clone, Debug)]
pub struct RoomGrant {
    pub access: Access,
    pub expires_at: Instant,
    /// Cancelled when the token is revoked.
    pub revoked: CancellationToken,
}

struct Entry {
    id: String,
    room: RoomName,
    grant: RoomGrant,
}

/// The live room tokens. Cheap to clone.
#[derive(Clone, Default)]
pub struct RoomTokens {
    by_token: Arc<DashMap<String, Entry>>,
}

impl std::fmt::Debug for RoomTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RoomTokens")
            .field("live", &self.by_token.len())
            .finish()
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl RoomTokens {
    /// Mints a token for `room`.
    pub fn mint(
        &self,
        room: RoomName,
        access: Access,
        ttl: Duration,
    ) -> Result<MintedToken, MintError> {
        if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
            return Err(MintError::Ttl);
        }
        let now = Instant::now();
        self.by_token
            .retain(|_, entry| entry.grant.expires_at > now);
        if self.by_token.len() >= MAX_LIVE_TOKENS {
            return Err(MintError::TooMany);
        }
        let token = format!("{TOKEN_PREFIX}{}", random_hex(32));
        let id = random_hex(8);
        let grant = RoomGrant {
            access,
            expires_at: now + ttl,
            revoked: CancellationToken::new(),
        };
        let expires_at = SystemTime::now()
            .checked_add(ttl)
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_secs());
        self.by_token.insert(
            token.clone(),
            Entry {
                id: id.clone(),
                room: room.clone(),
                grant,
            },
        );
        Ok(MintedToken {
            id,
            token,
            room,
            access,
            expires_at,
        })
    }

    /// What `token` allows in `room`: `None` when it is unknown, expired, or for another room.
    pub fn check(&self, token: &str, room: &RoomName) -> Option<RoomGrant> {
        let entry = self.by_token.get(token)?;
        (entry.room == *room && entry.grant.expires_at > Instant::now())
            .then(|| entry.grant.clone())
    }

    /// Revokes the token `id`: its connections close. Answers whether it was alive.
    pub fn revoke(&self, id: &str) -> bool {
        let token = self
            .by_token
            .iter()
            .find(|entry| entry.id == id)
            .map(|entry| entry.key().clone());
        let Some((_, entry)) = token.and_then(|token| self.by_token.remove(&token)) else {
            return false;
        };
        entry.grant.revoked.cancel();
        entry.grant.expires_at > Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_opens_only_its_room_and_only_until_it_expires() {
        let tokens = RoomTokens::default();
        let minted = tokens
            .mint(room("a"), Access::Read, Duration::from_secs(60))
            .unwrap();
        assert!(minted.token.starts_with("rt_") && minted.token.len() == 67);
        let grant = tokens.check(&minted.token, &room("a")).unwrap();
        assert_eq!(grant.access, Access::Read);
        assert!(tokens.check(&minted.token, &room("b")).is_none());
        assert!(tokens.check("rt_guess", &room("a")).is_none());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(tokens.check(&minted.token, &room("a")).is_none());
    }

    #[tokio::test]
    async fn revoking_a_token_cancels_its_grant_and_forgets_it() {
        let tokens = RoomTokens::default();
        let minted = tokens
            .mint(room("a"), Access::Write, DEFAULT_TOKEN_TTL)
            .unwrap();
        let grant = tokens.check(&minted.token, &room("a")).unwrap();
        assert!(tokens.revoke(&minted.id));
        assert!(grant.revoked.is_cancelled());
        assert!(tokens.check(&minted.token, &room("a")).is_none());
        assert!(!tokens.revoke(&minted.id));
    }

    #[test]
    fn lifetimes_out_of_range_are_refused() {
        let tokens = RoomTokens::default();
        for ttl in [Duration::ZERO, MAX_TOKEN_TTL + Duration::from_secs(1)] {
            assert_eq!(
                tokens.mint(room("a"), Access::Read, ttl).unwrap_err(),
                MintError::Ttl
            );
        }
    }
}
