//! HMAC-SHA256 signatures, as the platforms use them: Slack (`v0=` over
//! `v0:{timestamp}:{body}`), WhatsApp (`sha256=` over the body), and Troupe's own scheme
//! for signed webhooks and HTTP skills (`v1=` over `{timestamp}.{body}`, in the
//! `X-Troupe-Timestamp` and `X-Troupe-Signature` headers). Comparisons take constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header holding the Unix seconds a Troupe request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-troupe-timestamp";
/// Header holding `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub const SIGNATURE_HEADER: &str = "x-troupe-signature";

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `X-Troupe-Signature` value of `body` signed at `timestamp`.
pub fn sign_v1(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let stamp = timestamp.to_string();
    format!(
        "v1={}",
        hmac_sha256_hex(secret, &[stamp.as_bytes(), b".", body])
    )
}

/// Whether a Troupe-signed request is genuine and fresh (within `window_secs` of `now`).
pub fn verify_v1(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
    window_secs: u64,
) -> bool {
    fresh(timestamp, now, window_secs)
        && verify(
            secret,
            &[timestamp.trim().as_bytes(), b".", body],
            "v1=",
            signature,
        )
}

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

    #[test]
    fn troupe_v1_signatures() {
        let signature = sign_v1(b"s", 1000, b"{}");
        assert!(verify_v1(b"s", "1000", &signature, b"{}", 1100, 300));
        assert!(!verify_v1(b"s", "1000", &signature, b"{ }", 1100, 300));
        assert!(!verify_v1(b"s", "1000", &signature, b"{}", 2000, 300));
        assert!(!verify_v1(b"t", "1000", &signature, b"{}", 1100, 300));
    }
}
