//! Start-up configuration of an emulator instance: tokens, edition, listen
//! address, rate limiting and timing knobs. Pure data; validated by
//! [`crate::Emulator::start`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which GitLab edition's semantics to imitate where CE and EE differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edition {
    /// Community Edition (default): protected-branch PATCH honours only `allow_force_push`.
    #[default]
    Ce,
    /// Enterprise Edition. Accepted for forward compatibility; today it only
    /// changes `GET /version`'s `enterprise` flag (see README "Known differences").
    Ee,
}

/// Optional per-token token bucket, imitating Rack::Attack's authenticated API throttle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per minute and per token (also the bucket size).
    pub requests_per_minute: u32,
    /// When false, 429 responses carry neither `Retry-After` nor `RateLimit-*`
    /// headers, as some GitLab fronts do.
    pub headers: bool,
}

/// Everything needed to start an emulator.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind; port 0 picks a free port. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Tokens that authenticate as the `root` administrator (user id 1).
    pub admin_tokens: Vec<String>,
    /// Tokens of regular (non-admin) users, each `TOKEN` or `USERNAME=TOKEN`.
    /// Without a username the user is named `user1`, `user2`, ... in order.
    pub user_tokens: Vec<String>,
    /// CE (default) or EE semantics.
    pub edition: Edition,
    /// Per-token rate limiting; `None` disables it (GitLab self-managed default).
    pub rate_limit: Option<RateLimit>,
    /// How long a deleted user stays visible before disappearing (GitLab deletes
    /// users asynchronously). Default 200 ms.
    pub user_delete_delay: Duration,
    /// State file: loaded at start when it exists, written on clean shutdown and
    /// on `POST /-/emulator/dump`.
    pub state_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_tokens: Vec::new(),
            user_tokens: Vec::new(),
            edition: Edition::Ce,
            rate_limit: None,
            user_delete_delay: Duration::from_millis(200),
            state_file: None,
        }
    }
}

/// A parsed `--user-token` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserTokenSpec {
    pub username: String,
    pub token: String,
}

/// Parses `user_tokens` entries (`TOKEN` or `USERNAME=TOKEN`) into specs with usernames.
pub(crate) fn parse_user_tokens(entries: &[String]) -> Vec<UserTokenSpec> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| match entry.split_once('=') {
            Some((user, token)) if !user.is_empty() && !token.is_empty() => UserTokenSpec {
                username: user.to_string(),
                token: token.to_string(),
            },
            _ => UserTokenSpec {
                username: format!("user{}", i + 1),
                token: entry.clone(),
            },
        })
        .collect()
}
