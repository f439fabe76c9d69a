//! HMAC-SHA256 signatures, as the platforms use them: Slack (`v0=` over
//! `v0:{timestamp}:{body}`), WhatsApp (`sha256=` over the body), and Troupe's own signed
//! webhooks (`v1=` over `{timestamp}.{body}`). Comparisons take constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::constant_time_eq;

/// Lowercase hex HMAC-SHA256 of `parts` (concatenated) under `secret`.
pub fn hmac_sha256_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `given` (e.g. `sha256=ab12…`) is `prefix` + the HMAC of `parts`.
pub fn verify(secret: &[u8], parts: &[&[u8]], prefix: &str, given: &str) -> bool {
    let expected = format!("{prefix}{}", hmac_sha256_hex(secret, parts));
    constant_time_eq(expected.as_bytes(), given.trim().as_bytes())
}

/// Whether a signed timestamp (Unix seconds, as text) is within `window_secs` of `now`.
pub fn fresh(timestamp: &str, now: u64, window_secs: u64) -> bool {
    timestamp
        .trim()
        .parse::<u64>()
        .is_ok_and(|sent| sent.abs_diff(now) <= window_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_4231_test_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verification_and_freshness() {
        let signature = format!("v0={}", hmac_sha256_hex(b"k", &[b"v0:1:", b"body"]));
        assert!(verify(b"k", &[b"v0:1:", b"body"], "v0=", &signature));
        assert!(!verify(b"k", &[b"v0:1:", b"bodY"], "v0=", &signature));
        assert!(!verify(b"other", &[b"v0:1:", b"body"], "v0=", &signature));
        assert!(fresh("1000", 1200, 300));
        assert!(!fresh("1000", 1400, 300));
        assert!(!fresh("soon", 1000, 300));
    }
}
