//! SSH public keys as GitLab's `Key` model sees them: sanitising the pasted
//! text (`Gitlab::SSHPublicKey.sanitize`), fingerprints (SHA256 unpadded
//! base64, and the legacy colon-separated MD5), the validation messages of
//! `validates :key` / `:fingerprint_sha256` in their order, and fingerprint
//! lookups (`KeysFinder`). Parsing uses the `ssh-key` crate. Pure.

use base64ct::Encoding;
use md5::Digest;
use ssh_key::{HashAlg, PublicKey};

/// Algorithms `Gitlab::SSHPublicKey::TECHNOLOGIES` accepts (the `format:` check).
const SUPPORTED_ALGORITHMS: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-ed25519",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
];

/// `SshKeyValidator`'s message for a key whose type cannot be determined:
/// every technology is allowed by default (`*_key_restriction` = 0).
const FORBIDDEN_TYPE: &str =
    "type is forbidden. Must be RSA, DSA, ECDSA, ED25519, ECDSA_SK, or ED25519_SK";

/// Longest key text accepted (`length: { maximum: 5000 }`).
const MAX_KEY_LENGTH: usize = 5000;

/// A parsed, valid public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedKey {
    /// The stored text: `type base64[ comment-word]`.
    pub sanitized: String,
    /// SHA256 fingerprint without the `SHA256:` prefix (unpadded base64).
    pub fingerprint_sha256: String,
    /// MD5 fingerprint, `aa:bb:…` (lower-case hex).
    pub fingerprint_md5: String,
}

fn parse_exact(text: &str) -> Option<PublicKey> {
    let key = PublicKey::from_openssh(text).ok()?;
    SUPPORTED_ALGORITHMS
        .contains(&key.algorithm().as_str())
        .then_some(key)
}

/// `Gitlab::SSHPublicKey.sanitize`: strips the text and rejoins a base64 part
/// that was broken over several words or lines, keeping one comment word.
pub(crate) fn sanitize(text: &str) -> String {
    let trimmed = text.trim();
    let mut words = trimmed.split_whitespace();
    let Some(kind) = words.next() else {
        return trimmed.to_string();
    };
    let parts: Vec<&str> = words.collect();
    if parts.is_empty() {
        return trimmed.to_string();
    }
    let mut content = format!("{kind} ");
    for (i, part) in parts.iter().enumerate() {
        content.push_str(part);
        if parse_exact(&content).is_some() {
            return match parts.get(i + 1) {
                Some(comment) => format!("{content} {comment}"),
                None => content,
            };
        }
    }
    trimmed.to_string()
}

/// Parses a key as GitLab stores it; `None` when it is not a valid public key
/// of a supported type.
pub(crate) fn parse(text: &str) -> Option<ParsedKey> {
    let sanitized = sanitize(text);
    let key = parse_exact(&sanitized)?;
    let sha = key.fingerprint(HashAlg::Sha256).to_string();
    let blob = key.to_bytes().ok()?;
    let md5 = md5::Md5::digest(&blob)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Some(ParsedKey {
        sanitized,
        fingerprint_sha256: sha.trim_start_matches("SHA256:").to_string(),
        fingerprint_md5: md5,
    })
}

/// The `Key` model's validation of `key` (presence, `ssh_key`, length,
/// format) and `fingerprint_sha256` (presence), as `(attribute, message)`
/// pairs in GitLab's order; empty when the key is valid.
pub(crate) fn validation_errors(text: &str) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    let sanitized = sanitize(text);
    let parsed = parse(text);
    if sanitized.is_empty() {
        errors.push(("key", "can't be blank".to_string()));
    }
    if parsed.is_none() {
        errors.push(("key", FORBIDDEN_TYPE.to_string()));
    }
    if sanitized.chars().count() > MAX_KEY_LENGTH {
        errors.push((
            "key",
            format!("is too long (maximum is {MAX_KEY_LENGTH} characters)"),
        ));
    }
    if !SUPPORTED_ALGORITHMS
        .iter()
        .any(|a| sanitized.starts_with(a))
    {
        errors.push(("key", "is invalid".to_string()));
    }
    if parsed.is_none() {
        errors.push(("fingerprint_sha256", "cannot be generated".to_string()));
    }
    errors
}

/// A `GET /keys?fingerprint=` query, as `KeysFinder` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FingerprintQuery {
    /// `SHA256:<base64>` (or `sha256:`): the 32 digest bytes.
    Sha256(Vec<u8>),
    /// `aa:bb:…`: compared as given.
    Md5(String),
}

/// Parses the `fingerprint` parameter; `None` is `KeysFinder::InvalidFingerprint`.
pub(crate) fn parse_fingerprint(param: &str) -> Option<FingerprintQuery> {
    if let Some(rest) = param
        .strip_prefix("SHA256:")
        .or_else(|| param.strip_prefix("sha256:"))
    {
        // Ruby's Base64.decode64 skips characters outside the alphabet and
        // tolerates missing padding.
        let cleaned: String = rest
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
            .collect();
        let bytes = base64ct::Base64Unpadded::decode_vec(&cleaned).ok()?;
        return (bytes.len() == 32).then_some(FingerprintQuery::Sha256(bytes));
    }
    // `/^(\h{2}:){15}\h{2}/`
    let bytes = param.as_bytes();
    let valid = bytes.len() >= 47
        && (0..16).all(|i| {
            let at = i * 3;
            bytes[at].is_ascii_hexdigit()
                && bytes[at + 1].is_ascii_hexdigit()
                && (i == 15 || bytes[at + 2] == b':')
        });
    valid.then(|| FingerprintQuery::Md5(param.to_string()))
}

impl FingerprintQuery {
    /// Whether a stored key's fingerprints match.
    pub fn matches(&self, fingerprint_sha256: &str, fingerprint_md5: &str) -> bool {
        match self {
            FingerprintQuery::Sha256(bytes) => {
                base64ct::Base64Unpadded::decode_vec(fingerprint_sha256)
                    .is_ok_and(|stored| stored == *bytes)
            }
            FingerprintQuery::Md5(text) => text == fingerprint_md5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ssh-keygen -t ed25519 (a throwaway test key)
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti foo@bar.com";

    #[test]
    fn fingerprints() {
        let k = parse(ED25519).expect("valid key");
        assert_eq!(
            k.fingerprint_sha256,
            "UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ"
        );
        assert_eq!(
            k.fingerprint_md5,
            "ae:6f:ba:1b:70:2c:ae:c7:5c:ab:6e:4d:5e:d4:c7:23"
        );
        assert_eq!(k.sanitized, ED25519);
        let q = parse_fingerprint(&format!("SHA256:{}", k.fingerprint_sha256)).unwrap();
        assert!(q.matches(&k.fingerprint_sha256, &k.fingerprint_md5));
        let q = parse_fingerprint(&k.fingerprint_md5).unwrap();
        assert!(q.matches(&k.fingerprint_sha256, &k.fingerprint_md5));
        assert_eq!(parse_fingerprint("SHA256:short"), None);
        assert_eq!(parse_fingerprint("nonsense"), None);
    }

    #[test]
    fn sanitize_rejoins_broken_keys() {
        let broken = "  ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN7\n96jTiQfZfG1KaT0PtFDJ/XFSqti foo@bar.com extra words\n";
        assert_eq!(sanitize(broken), ED25519);
    }

    #[test]
    fn invalid_keys_get_gitlabs_messages() {
        assert!(validation_errors(ED25519).is_empty());
        let errors = validation_errors("not a key");
        assert_eq!(
            errors,
            vec![
                ("key", FORBIDDEN_TYPE.to_string()),
                ("key", "is invalid".to_string()),
                ("fingerprint_sha256", "cannot be generated".to_string()),
            ]
        );
        let errors = validation_errors("ssh-ed25519 AAAAbroken");
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
