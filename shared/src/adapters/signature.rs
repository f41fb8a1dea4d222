//! Meta's webhook signature: `X-Hub-Signature-256: sha256=<lowercase hex HMAC-SHA256 of the raw
//! body, keyed with the app secret>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header Meta signs webhooks with.
pub const HEADER: &str = "x-hub-signature-256";

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    mac
}

/// The header value Meta would send for `body`: `sha256=` and 64 lowercase hex digits.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, body).finalize().into_bytes()))
}

/// Whether `header` is the signature of exactly these bytes. The comparison of the digests is
/// constant-time; a header without `sha256=` or with anything but 64 hex digits is rejected.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(digest) = header.trim().strip_prefix("sha256=") else { return false };
    let Ok(expected) = hex::decode(digest) else { return false };
    expected.len() == 32 && mac(secret, body).verify_slice(&expected).is_ok()
}

/// Compares two secrets in time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_meta_and_verifies() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(verify(b"Jefe", b"what do ya want for nothing?", &sig));
        assert!(verify(b"Jefe", b"what do ya want for nothing?", &sig.to_uppercase().replace("SHA256", "sha256")));
    }

    #[test]
    fn rejects_other_bodies_secrets_and_shapes() {
        let sig = sign(b"secret", b"{\"a\":1}");
        assert!(!verify(b"secret", b"{\"a\":2}", &sig));
        assert!(!verify(b"other", b"{\"a\":1}", &sig));
        assert!(!verify(b"secret", b"{\"a\":1}", sig.trim_start_matches("sha256=")));
        assert!(!verify(b"secret", b"{\"a\":1}", &sig[..sig.len() - 2]));
        assert!(!verify(b"secret", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify(b"secret", b"{\"a\":1}", ""));
    }

    #[test]
    fn compares_secrets() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokeN"));
        assert!(!constant_time_eq(b"token", b"token2"));
    }
}
