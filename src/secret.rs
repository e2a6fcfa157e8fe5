//! Secret values: a type that cannot be printed, serialised or logged, and keyed fingerprints
//! that let plans show *that* a secret changes without showing it.
//!
//! Must never: implement Display or Serialize for [`SecretValue`], or fingerprint without a key.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A secret value (a Secrets Manager value, or a GitLab variable's live value when masked).
/// `Debug` prints `SecretValue(***)`; there is no `Display` and no `Serialize`.
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The value itself, for the one place that sends it (an API request body).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

/// The key of fingerprints. From `RECONCILE_FINGERPRINT_KEY` when set; otherwise derived from
/// the GitLab token, which every run that may see the secrets already holds. Without the key a
/// fingerprint cannot be checked against guesses.
#[derive(Clone)]
pub struct FingerprintKey(SecretString);

impl FingerprintKey {
    pub fn new(material: &str) -> Self {
        let derived = Sha256::new()
            .chain_update(b"reconcile fingerprint key\0")
            .chain_update(material.as_bytes())
            .finalize();
        Self(SecretString::from(hex::encode(derived)))
    }

    /// Fingerprint of `value`: `hmac-sha256:` and the first 16 hex digits of the HMAC.
    pub fn fingerprint(&self, value: &SecretValue) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(value.expose().as_bytes());
        let digest = hex::encode(mac.finalize().into_bytes());
        format!("hmac-sha256:{}", &digest[..16])
    }
}

/// Whether `s` has the form of a fingerprint (`hmac-sha256:` and 16 lowercase hex digits).
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("hmac-sha256:").is_some_and(|hex| {
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl FingerprintKey {
    /// An attestation: HMAC-SHA256 of `message` under a key derived from this one for
    /// `purpose` (so an attestation of one kind is never valid as another, nor as a
    /// fingerprint). Hex, 64 digits.
    pub fn attest(&self, purpose: &str, message: &[u8]) -> String {
        let mut derive = Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        derive.update(b"reconcile attestation\0");
        derive.update(purpose.as_bytes());
        let subkey = derive.finalize().into_bytes();
        let mut mac = Hmac::<Sha256>::new_from_slice(&subkey).expect("HMAC takes any key length");
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `attestation` is this key's attestation of `message` for `purpose` (constant
    /// time).
    pub fn verify(&self, purpose: &str, message: &[u8], attestation: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.attest(purpose, message);
        expected.len() == attestation.len()
            && bool::from(expected.as_bytes().ct_eq(attestation.as_bytes()))
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_have_one_form() {
        let key = FingerprintKey::new("k");
        assert!(is_fingerprint(&key.fingerprint(&SecretValue::new("v"))));
        for not in [
            "",
            "whatever",
            "hmac-sha256:",
            "hmac-sha256:0123456789abcde",
            "hmac-sha256:0123456789abcdef0",
            "hmac-sha256:0123456789ABCDEF",
            "sha256:0123456789abcdef",
        ] {
            assert!(!is_fingerprint(not), "{not}");
        }
    }

    #[test]
    fn debug_never_shows_the_value() {
        let v = SecretValue::new("hunter2-hunter2");
        assert_eq!(format!("{v:?}"), "SecretValue(***)");
        assert!(!format!("{:?}", FingerprintKey::new("k")).contains('k'));
    }

    #[test]
    fn fingerprints_are_keyed_and_stable() {
        let v = SecretValue::new("hunter2-hunter2");
        let a = FingerprintKey::new("token-a");
        assert_eq!(
            a.fingerprint(&v),
            FingerprintKey::new("token-a").fingerprint(&v)
        );
        assert_ne!(
            a.fingerprint(&v),
            FingerprintKey::new("token-b").fingerprint(&v)
        );
        assert_ne!(
            a.fingerprint(&v),
            a.fingerprint(&SecretValue::new("hunter3-hunter3"))
        );
        assert!(!a.fingerprint(&v).contains("hunter2"));
    }

    #[test]
    fn attestations_are_bound_to_key_purpose_and_message() {
        let a = FingerprintKey::new("token-a");
        let att = a.attest("approval", b"plan x by bob");
        assert!(a.verify("approval", b"plan x by bob", &att));
        assert!(!a.verify("approval", b"plan x by eve", &att));
        assert!(!a.verify("author", b"plan x by bob", &att));
        assert!(!FingerprintKey::new("token-b").verify("approval", b"plan x by bob", &att));
        assert!(!a.verify("approval", b"plan x by bob", ""));
    }
}
