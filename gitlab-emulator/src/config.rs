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

/// Optional per-user throttle imitating Rack::Attack's authenticated API
/// throttle: a fixed window of `period_secs` per user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per minute and per user. With a `period_secs` other
    /// than 60 the window's limit is `requests_per_minute * period_secs / 60`
    /// (rounded up; GitLab's `throttle_authenticated_api_requests_per_period`).
    pub requests_per_minute: u32,
    /// When false, 429 responses carry neither `Retry-After` nor `RateLimit-*`
    /// headers, as some GitLab fronts do.
    pub headers: bool,
    /// Window length in seconds (`throttle_authenticated_api_period_in_seconds`,
    /// default 60).
    pub period_secs: u32,
    /// Imitates GitLab 18.6's feature flag
    /// `rate_limiting_headers_for_unthrottled_requests`: every non-429
    /// response to a throttled-eligible request carries `RateLimit-Name`,
    /// `-Limit`, `-Observed`, `-Remaining` and `-Reset`
    /// (`RequestThrottleData#common_response_headers`: no `Retry-After`, no
    /// `RateLimit-ResetTime`). Default false.
    pub headers_on_success: bool,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            headers: true,
            period_secs: 60,
            headers_on_success: false,
        }
    }
}

impl RateLimit {
    /// The window's limit (Rack::Attack's `limit`).
    pub fn requests_per_period(&self) -> u32 {
        let period = u64::from(self.period_secs.max(1));
        let per_period = (u64::from(self.requests_per_minute) * period).div_ceil(60);
        u32::try_from(per_period.max(1)).unwrap_or(u32::MAX)
    }
}

/// Everything needed to start an emulator.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind; port 0 picks a free port. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Tokens that authenticate as the `root` administrator (user id 1), each
    /// `TOKEN` or `TOKEN:scope1,scope2` (default scopes `api`, `sudo`).
    pub admin_tokens: Vec<String>,
    /// Tokens of regular (non-admin) users, each `TOKEN` or `USERNAME=TOKEN`,
    /// optionally with a `:scope1,scope2` suffix (default scope `api`).
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

/// A parsed `--admin-token` or `--user-token` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenSpec {
    /// The user the token belongs to (`root` for admin tokens).
    pub username: String,
    pub token: String,
    /// Scopes from a `:scope1,scope2` suffix, or the defaults (`api`, plus
    /// `sudo` for admin tokens).
    pub scopes: Vec<String>,
}

/// Splits a `TOKEN[:scope1,scope2]` value. The suffix is taken as scopes only
/// when every comma-separated part is a known scope name
/// ([`crate::scopes::ALL_SCOPES`]); otherwise the whole value is the token.
fn split_scopes(value: &str, default: &[&str]) -> (String, Vec<String>) {
    if let Some((token, suffix)) = value.rsplit_once(':') {
        let parts: Vec<&str> = suffix.split(',').map(str::trim).collect();
        if !token.is_empty()
            && !parts.is_empty()
            && parts.iter().all(|p| crate::scopes::is_known(p))
        {
            return (
                token.to_string(),
                parts.into_iter().map(String::from).collect(),
            );
        }
    }
    (
        value.to_string(),
        default.iter().map(|s| s.to_string()).collect(),
    )
}

/// Parses `admin_tokens` entries (`TOKEN` or `TOKEN:scopes`): tokens of `root`.
pub(crate) fn parse_admin_tokens(entries: &[String]) -> Vec<TokenSpec> {
    entries
        .iter()
        .map(|entry| {
            let (token, scopes) = split_scopes(entry, &["api", "sudo"]);
            TokenSpec {
                username: "root".into(),
                token,
                scopes,
            }
        })
        .collect()
}

/// Parses `user_tokens` entries (`TOKEN` or `USERNAME=TOKEN`, either with an
/// optional `:scopes` suffix) into specs with usernames.
pub(crate) fn parse_user_tokens(entries: &[String]) -> Vec<TokenSpec> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let (username, rest) = match entry.split_once('=') {
                Some((user, rest)) if !user.is_empty() && !rest.is_empty() => {
                    (user.to_string(), rest)
                }
                _ => (format!("user{}", i + 1), entry.as_str()),
            };
            let (token, scopes) = split_scopes(rest, &["api"]);
            TokenSpec {
                username,
                token,
                scopes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_suffixes() {
        let users = parse_user_tokens(&[
            "alice=tok:read_api".into(),
            "plain".into(),
            "bob=a:b".into(),
            "carol=t:read_user,read_api".into(),
        ]);
        assert_eq!(users[0].username, "alice");
        assert_eq!(users[0].token, "tok");
        assert_eq!(users[0].scopes, vec!["read_api"]);
        assert_eq!(users[1].username, "user2");
        assert_eq!(users[1].token, "plain");
        assert_eq!(users[1].scopes, vec!["api"]);
        assert_eq!(
            users[2].token, "a:b",
            "unknown scope: the colon is part of the token"
        );
        assert_eq!(users[3].scopes, vec!["read_user", "read_api"]);
        let admins = parse_admin_tokens(&["adm".into(), "adm2:api".into()]);
        assert_eq!(admins[0].scopes, vec!["api", "sudo"]);
        assert_eq!(admins[1].token, "adm2");
        assert_eq!(admins[1].scopes, vec!["api"]);
    }
}
