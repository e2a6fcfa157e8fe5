//! Personal access token scopes as GitLab checks them (`lib/gitlab/auth.rb`,
//! `lib/api/api_guard.rb`, `AccessTokenValidationService`): the scopes a token
//! may carry, the scopes each endpoint class registers with
//! `allow_access_with_scope` (plus the two `API::API` registers for every
//! route), and the `insufficient_scope` decision. Pure; knows no HTTP types.

/// `Gitlab::Auth.all_available_scopes` on a CE instance with the container
/// registry and dependency proxy enabled: what a token may be created with.
pub(crate) const ALL_SCOPES: &[&str] = &[
    "api",
    "read_api",
    "read_user",
    "create_runner",
    "manage_runner",
    "k8s_proxy",
    "self_rotate",
    "read_repository",
    "write_repository",
    "read_registry",
    "write_registry",
    "read_virtual_registry",
    "write_virtual_registry",
    "ai_features",
    "sudo",
    "admin_mode",
    "read_service_ping",
];

/// Whether `scope` is one of [`ALL_SCOPES`].
pub(crate) fn is_known(scope: &str) -> bool {
    ALL_SCOPES.contains(&scope)
}

/// One `allow_access_with_scope` registration: the scope and whether it only
/// applies to GET/HEAD requests (`if: ->(request) { request.get? || request.head? }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registered {
    pub name: &'static str,
    pub read_only: bool,
}

const fn read(name: &'static str) -> Registered {
    Registered {
        name,
        read_only: true,
    }
}

/// `API::API`: `allow_access_with_scope :api` and `:read_api` for GET/HEAD.
const API_WIDE: [Registered; 2] = [
    Registered {
        name: "api",
        read_only: false,
    },
    read("read_api"),
];

/// Scopes an endpoint accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Accepts {
    /// `allow_access_with_scope(Gitlab::Auth.all_available_scopes)`: any token
    /// (`/personal_access_tokens/self`).
    AnyScope,
    /// The endpoint class's registrations followed by `API::API`'s, in the
    /// order GitLab lists them in the `insufficient_scope` body.
    Scopes(Vec<Registered>),
}

/// The scopes registered for the route template `route` (axum's matched path,
/// e.g. `/api/v4/users/{id}`), by the GitLab endpoint class that serves it.
pub(crate) fn accepted_for(route: &str) -> Accepts {
    let class: &[Registered] = if route.starts_with("/api/v4/personal_access_tokens/self") {
        return Accepts::AnyScope;
    } else if route == "/api/v4/version" {
        // API::Metadata
        &[read("read_user"), read("ai_features")]
    } else if route == "/api/v4/user"
        || route.starts_with("/api/v4/user/")
        || route.starts_with("/api/v4/users")
    {
        // API::Users (also serves /user, /user/keys, /users/:id/keys and
        // /users/:user_id/personal_access_tokens)
        &[read("read_user")]
    } else if route == "/api/v4/job"
        || (route.starts_with("/api/v4/projects/") && route.contains("/jobs"))
    {
        // API::Ci::Jobs
        &[read("ai_workflows")]
    } else {
        &[]
    };
    Accepts::Scopes(class.iter().chain(API_WIDE.iter()).copied().collect())
}

/// `AccessTokenValidationService#include_any_scope?`: `Ok` when the token
/// holds one of the registrations that apply to this request; otherwise the
/// `scope` value of GitLab's `insufficient_scope` body (every registered
/// scope, space-separated, conditional ones included).
pub(crate) fn check(
    accepts: &Accepts,
    token_scopes: &[String],
    read_request: bool,
) -> Result<(), String> {
    let Accepts::Scopes(registered) = accepts else {
        return Ok(());
    };
    let allowed = registered
        .iter()
        .filter(|r| read_request || !r.read_only)
        .any(|r| token_scopes.iter().any(|s| s == r.name));
    if allowed {
        Ok(())
    } else {
        Err(registered
            .iter()
            .map(|r| r.name)
            .collect::<Vec<_>>()
            .join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn read_api_reads_only() {
        let projects = accepted_for("/api/v4/projects/{id}");
        assert!(check(&projects, &scopes(&["read_api"]), true).is_ok());
        assert_eq!(
            check(&projects, &scopes(&["read_api"]), false).unwrap_err(),
            "api read_api"
        );
        assert!(check(&projects, &scopes(&["api"]), false).is_ok());
    }

    #[test]
    fn read_user_only_on_the_users_class() {
        let users = accepted_for("/api/v4/users/{id}");
        assert!(check(&users, &scopes(&["read_user"]), true).is_ok());
        assert_eq!(
            check(&users, &scopes(&["read_user"]), false).unwrap_err(),
            "read_user api read_api"
        );
        assert!(check(&accepted_for("/api/v4/user"), &scopes(&["read_user"]), true).is_ok());
        assert!(
            check(
                &accepted_for("/api/v4/projects"),
                &scopes(&["read_user"]),
                true
            )
            .is_err()
        );
        assert!(
            check(
                &accepted_for("/api/v4/personal_access_tokens/self"),
                &scopes(&["read_repository"]),
                false
            )
            .is_ok()
        );
    }
}
