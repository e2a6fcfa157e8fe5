//! Proofs of identity that GitLab vouches for, and their checks (pure except
//! [`sign_with_key_file`], which may run `ssh-keygen` for an agent or an encrypted key).
//!
//! An approval counts only with one of these proofs:
//! - **SSH signature** (SSHSIG, namespace `reconcile-plan`) of [`payload`]: the signer is the
//!   GitLab user who registered the signing key (`GET /keys?fingerprint=`). Compatible with
//!   `ssh-keygen -Y sign -n reconcile-plan` and `ssh-keygen -Y verify`.
//! - **GitLab CI job**: the approval was made inside a job of the plan's pipeline; GitLab says
//!   who ran the job, that it succeeded, and its log shows [`ci_approval_line`].
//! - **GitLab sign-in on the daemon**: the daemon asked GitLab (`GET /user`) who the approver's
//!   token belongs to and attested the approval with the reconcile key ([`attestation_message`]).
//!
//! Must never: accept a name without a proof, or a proof made for another plan.

use std::path::Path;

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The SSHSIG namespace of plan approvals: a signature made for git or another tool is never
/// valid here.
pub const NAMESPACE: &str = "reconcile-plan";

/// Purpose of the attestation of a daemon-verified approval.
pub const APPROVAL_ATTESTATION: &str = "approval";
/// Purpose of the attestation of a plan's author.
pub const AUTHOR_ATTESTATION: &str = "plan-author";

/// The bytes an SSH signature of an approval covers.
pub fn payload(plan_sha256: &str, promotion_override: bool) -> String {
    format!(
        "reconcile plan approval\nplan: sha256:{plan_sha256}\noverride: {}\n",
        if promotion_override { "yes" } else { "no" }
    )
}

/// The line `reconcile approve` prints in CI job `job_id`; apply looks for it, whole, in that
/// job's log (naming the job, a line copied from another job's log never matches).
pub fn ci_approval_line(plan_sha256: &str, promotion_override: bool, job_id: u64) -> String {
    format!(
        "reconcile: job {job_id} approved plan sha256:{plan_sha256}{}",
        if promotion_override {
            " with its promotion overrides"
        } else {
            ""
        }
    )
}

/// The line `reconcile plan --out` prints in CI job `job_id`; apply looks for it in that job's
/// log to know that the job made this plan.
pub fn ci_plan_line(plan_sha256: &str, job_id: u64) -> String {
    format!("reconcile: job {job_id} wrote plan sha256:{plan_sha256}")
}

/// What the daemon attests for an approval it verified with GitLab.
pub fn attestation_message(
    plan_sha256: &str,
    user_id: u64,
    username: &str,
    promotion_override: bool,
) -> Vec<u8> {
    format!("{plan_sha256}\n{user_id}\n{username}\n{promotion_override}").into_bytes()
}

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("cannot read the key `{path}`: {reason}")]
    Key { path: String, reason: String },
    #[error("ssh-keygen could not sign: {0}")]
    Keygen(String),
    #[error("not an SSH signature: {0}")]
    Malformed(String),
    #[error("the signature is for namespace `{0}`, not `{NAMESPACE}`")]
    Namespace(String),
    #[error("the signature does not match this plan (it signs another plan or was altered)")]
    Mismatch,
}

/// The SHA256 fingerprint of the key that made `signature`, after checking that it signs
/// `payload` in [`NAMESPACE`].
pub fn verify_signature(signature: &str, payload: &str) -> Result<String, ProofError> {
    let sig = SshSig::from_pem(signature).map_err(|e| ProofError::Malformed(e.to_string()))?;
    if sig.namespace() != NAMESPACE {
        return Err(ProofError::Namespace(sig.namespace().to_string()));
    }
    let key = PublicKey::from(sig.public_key().clone());
    key.verify(NAMESPACE, payload.as_bytes(), &sig)
        .map_err(|_| ProofError::Mismatch)?;
    Ok(key.fingerprint(HashAlg::Sha256).to_string())
}

/// The SHA256 fingerprint of an OpenSSH public key line.
pub fn public_key_fingerprint(line: &str) -> Option<String> {
    PublicKey::from_openssh(line.trim())
        .ok()
        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
}

/// Signs `payload` with the key at `path`: an unencrypted OpenSSH private key is used
/// directly; an encrypted one, or a public key whose private half is in ssh-agent, is handed
/// to `ssh-keygen -Y sign` (which asks for the passphrase or uses the agent).
pub fn sign_with_key_file(path: &Path, payload: &str) -> Result<String, ProofError> {
    let key_error = |reason: String| ProofError::Key {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| key_error(e.to_string()))?;
    if let Ok(private) = PrivateKey::from_openssh(&text)
        && !private.is_encrypted()
    {
        let sig = private
            .sign(NAMESPACE, HashAlg::Sha512, payload.as_bytes())
            .map_err(|e| key_error(e.to_string()))?;
        return sig
            .to_pem(LineEnding::LF)
            .map_err(|e| key_error(e.to_string()));
    }
    let is_public = PublicKey::from_openssh(text.trim()).is_ok();
    let is_private = text.contains("PRIVATE KEY-----");
    if !is_public && !is_private {
        return Err(key_error(
            "neither an OpenSSH private key nor a public key".into(),
        ));
    }
    keygen_sign(path, payload)
}

fn keygen_sign(path: &Path, payload: &str) -> Result<String, ProofError> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", NAMESPACE, "-f"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ProofError::Keygen(format!("cannot run ssh-keygen: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(payload.as_bytes())
        .map_err(|e| ProofError::Keygen(e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| ProofError::Keygen(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(ProofError::Keygen(
            stderr.lines().last().unwrap_or("failed").trim().to_string(),
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| ProofError::Keygen(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A throwaway test key (never registered anywhere).
    pub(crate) const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBpJXZ3IwNDHICqBZfPY1kHN8TfcRaP3QcmBKF6mkHlOQAAAJhG1NXeRtTV
3gAAAAtzc2gtZWQyNTUxOQAAACBpJXZ3IwNDHICqBZfPY1kHN8TfcRaP3QcmBKF6mkHlOQ
AAAECiLKqB6gqs46u8rBYIa/ZHcOQuS3MruUC+4s3hnSFdVGkldncjA0McgKoFl89jWQc3
xN9xFo/dByYEoXqaQeU5AAAAE3Rlc3RAcmVjb25jaWxlLnRlc3QBAg==
-----END OPENSSH PRIVATE KEY-----
";

    /// A signature of `payload` by [`KEY`], and the key's fingerprint.
    pub(crate) fn signed(payload: &str) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, KEY).unwrap();
        let sig = sign_with_key_file(&path, payload).unwrap();
        let fp = PrivateKey::from_openssh(KEY)
            .unwrap()
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string();
        (sig, fp)
    }

    #[test]
    fn a_signature_verifies_for_its_plan_only() {
        let (sig, fp) = signed(&payload("aa", false));
        assert_eq!(verify_signature(&sig, &payload("aa", false)).unwrap(), fp);
        assert!(fp.starts_with("SHA256:"));
        assert!(matches!(
            verify_signature(&sig, &payload("bb", false)),
            Err(ProofError::Mismatch)
        ));
        assert!(matches!(
            verify_signature(&sig, &payload("aa", true)),
            Err(ProofError::Mismatch)
        ));
        assert!(matches!(
            verify_signature("junk", &payload("aa", false)),
            Err(ProofError::Malformed(_))
        ));
    }

    #[test]
    fn another_namespace_is_refused() {
        let private = PrivateKey::from_openssh(KEY).unwrap();
        let git = private
            .sign("git", HashAlg::Sha512, payload("aa", false).as_bytes())
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap();
        assert!(matches!(
            verify_signature(&git, &payload("aa", false)),
            Err(ProofError::Namespace(ns)) if ns == "git"
        ));
    }
}
