//! Signed deliveries: `X-Reckon-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.
//!
//! The scheme is Stripe's: the MAC covers `"<t>." ++ body`, so a receiver that knows
//! the shared secret can check that reckon sent the body unchanged, and, by refusing
//! timestamps outside a tolerance, that it is not an old message replayed. Several
//! `v1=` entries may appear in one header (during a secret rotation); one matching is
//! enough.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Reckon-Signature";
/// The header carrying the delivery's number, the same across its retries, so a
/// receiver can drop a retry of a message it already processed.
pub const DELIVERY_HEADER: &str = "X-Reckon-Delivery";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp_unix_s: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long keys are hashed), so this cannot fail;
    // the fallback keeps that promise without a panic path.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()));
    m.update(timestamp_unix_s.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp_unix_s`:
/// `t=<timestamp>,v1=<hex hmac-sha256(secret, "<timestamp>." ++ body)>`.
///
/// ```
/// use reckon_connect::webhook::{signature, verify_signature};
/// use std::time::Duration;
///
/// let header = signature(b"s3cret", 1_700_000_000, b"{}");
/// assert!(header.starts_with("t=1700000000,v1="));
/// assert!(verify_signature(b"s3cret", &header, b"{}", 1_700_000_030, Duration::from_secs(300)));
/// ```
pub fn signature(secret: &[u8], timestamp_unix_s: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp_unix_s, body).finalize().into_bytes();
    format!("t={timestamp_unix_s},v1={}", hex::encode(tag))
}

/// Whether `header` (a [`SIGNATURE_HEADER`] value) is a valid signature of `body`
/// under `secret`, made no more than `tolerance` away from `now_unix_s` (either way,
/// to allow for clock skew). Malformed headers are simply invalid. The MAC is compared
/// in constant time.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix_s: i64,
    tolerance: Duration,
) -> bool {
    let mut timestamp: Option<i64> = None;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            return false;
        };
        match name {
            "t" => match value.parse::<i64>() {
                Ok(t) if timestamp.is_none() => timestamp = Some(t),
                _ => return false,
            },
            "v1" => match hex::decode(value) {
                Ok(tag) => candidates.push(tag),
                Err(_) => return false,
            },
            // Other schemes (a future `v2`) are ignored, as Stripe's receivers do.
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    let skew = now_unix_s.abs_diff(t);
    if skew > tolerance.as_secs() {
        return false;
    }
    candidates
        .iter()
        .any(|tag| mac(secret, t, body).verify_slice(tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN5: Duration = Duration::from_secs(300);

    #[test]
    fn known_vector() {
        // hmac-sha256("key", "0.") computed independently with Python's hmac module.
        assert_eq!(
            signature(b"key", 0, b""),
            "t=0,v1=85841b4efc3cd7776c3c8f9b7cca9e281c550e5d19889d78e9e669c6337f000d"
        );
    }

    #[test]
    fn round_trip_and_rejections() {
        let body = br#"{"text":"hi"}"#;
        let h = signature(b"secret", 1000, body);
        assert!(verify_signature(b"secret", &h, body, 1000, MIN5));
        assert!(verify_signature(b"secret", &h, body, 1300, MIN5));
        assert!(verify_signature(b"secret", &h, body, 700, MIN5));
        assert!(!verify_signature(b"secret", &h, body, 1301, MIN5), "replay");
        assert!(!verify_signature(b"wrong", &h, body, 1000, MIN5));
        assert!(!verify_signature(b"secret", &h, b"{}", 1000, MIN5));
        let forged_time = h.replacen("t=1000", "t=1001", 1);
        assert!(!verify_signature(b"secret", &forged_time, body, 1000, MIN5));
    }

    #[test]
    fn malformed_headers_are_invalid() {
        for h in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "garbage",
            "t=1,t=1,v1=",
        ] {
            assert!(!verify_signature(b"k", h, b"", 1, MIN5), "{h}");
        }
        assert!(!verify_signature(
            b"k",
            "t=-9223372036854775808,v1=00",
            b"",
            i64::MAX,
            MIN5
        ));
    }

    #[test]
    fn any_of_several_v1_is_enough() {
        let good = signature(b"new", 5, b"x");
        let tag = good.split_once("v1=").map(|(_, t)| t).unwrap_or_default();
        let rotated = format!("t=5,v1={},v1={tag}", "00".repeat(32));
        assert!(verify_signature(b"new", &rotated, b"x", 5, MIN5));
    }
}
