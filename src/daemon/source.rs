//! Where the daemon's desired state comes from: a local directory, or a git remote and branch
//! fetched into a checkout before each cycle (the `git` command; credentials in the URL are
//! never logged or put in an error).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read the desired state in `{dir}`: {message}")]
    Dir { dir: PathBuf, message: String },
    #[error("git {action} of {url} failed: {message}")]
    Git {
        action: &'static str,
        /// Redacted.
        url: String,
        message: String,
    },
}

#[derive(Clone, Debug)]
pub enum Source {
    Dir(PathBuf),
    Git {
        url: String,
        branch: String,
        /// The checkout the daemon owns (reset to the remote branch each cycle).
        checkout: PathBuf,
        /// The desired state's directory inside the repository.
        subdir: PathBuf,
    },
}

impl Source {
    /// For logs and messages: the directory, or the URL without credentials and the branch.
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(dir) => dir.display().to_string(),
            Self::Git { url, branch, .. } => format!("{} ({branch})", redact(url)),
        }
    }

    /// Brings the desired state up to date; returns its directory.
    pub async fn sync(&self) -> Result<PathBuf, SourceError> {
        match self {
            Self::Dir(dir) => Ok(dir.clone()),
            Self::Git {
                url,
                branch,
                checkout,
                subdir,
            } => {
                if checkout.join(".git").is_dir() {
                    git(
                        url,
                        "fetch",
                        checkout,
                        &["fetch", "--quiet", "--depth", "1", "origin", branch],
                    )
                    .await?;
                    git(
                        url,
                        "checkout",
                        checkout,
                        &["reset", "--quiet", "--hard", "FETCH_HEAD"],
                    )
                    .await?;
                    git(url, "clean", checkout, &["clean", "--quiet", "-ffdx"]).await?;
                } else {
                    if let Some(parent) = checkout.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    let target = checkout.to_string_lossy().into_owned();
                    let args = [
                        "clone",
                        "--quiet",
                        "--depth",
                        "1",
                        "--single-branch",
                        "--branch",
                        branch,
                        url,
                        &target,
                    ];
                    git(url, "clone", Path::new("."), &args).await?;
                }
                Ok(checkout.join(subdir))
            }
        }
    }

    /// A cheap fingerprint that changes when the desired state changes: a hash of the spec
    /// files of a directory, or the commit the remote branch points at.
    pub async fn probe(&self) -> Result<String, SourceError> {
        match self {
            Self::Dir(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || hash_dir(&dir))
                    .await
                    .expect("probe task does not panic")
            }
            Self::Git { url, branch, .. } => {
                let out = git(
                    url,
                    "ls-remote",
                    Path::new("."),
                    &["ls-remote", url, &format!("refs/heads/{branch}")],
                )
                .await?;
                Ok(out
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string())
            }
        }
    }
}

/// The URL without user information (`https://***@host/...`).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(u) => u.to_string(),
        // scp-like `user@host:path`: keep the host and path only.
        Err(_) => url
            .rsplit_once('@')
            .map_or(url.to_string(), |(_, rest)| format!("***@{rest}")),
    }
}

async fn git(
    url: &str,
    action: &'static str,
    cwd: &Path,
    args: &[&str],
) -> Result<String, SourceError> {
    let out = tokio::process::Command::new("git")
        .current_dir(cwd)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| SourceError::Git {
            action,
            url: redact(url),
            message: format!("cannot run git: {e}"),
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // git may echo the URL (with its credentials) in its messages.
    let message = String::from_utf8_lossy(&out.stderr)
        .replace(url, &redact(url))
        .trim()
        .to_string();
    Err(SourceError::Git {
        action,
        url: redact(url),
        message,
    })
}

/// sha256 over the names and contents of the YAML files under `dir` (hidden entries skipped).
fn hash_dir(dir: &Path) -> Result<String, SourceError> {
    let error = |message: String| SourceError::Dir {
        dir: dir.to_path_buf(),
        message,
    };
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = entry.map_err(|e| error(e.to_string()))?;
        let yaml = matches!(
            entry.path().extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if entry.file_type().is_file() && yaml {
            files.push(entry.into_path());
        }
    }
    let mut h = Sha256::new();
    for f in files {
        let text = std::fs::read(&f).map_err(|e| error(format!("{}: {e}", f.display())))?;
        h.update(
            f.strip_prefix(dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        h.update([0]);
        h.update(&text);
        h.update([0]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("https://oauth2:glpat-SECRET@gitlab.example/ops/desired.git"),
            "https://***@gitlab.example/ops/desired.git"
        );
        assert_eq!(
            redact("git@gitlab.example:ops/desired.git"),
            "***@gitlab.example:ops/desired.git"
        );
        assert_eq!(
            redact("https://gitlab.example/x.git"),
            "https://gitlab.example/x.git"
        );
    }
}
