//! Endpoints the `gitlab` crate does not have, implemented on its `Endpoint` trait:
//! `PUT /users/:id` (edit), the user state actions, and `PATCH` of a protected branch.

use std::borrow::Cow;

use gitlab::api::endpoint_prelude::*;

/// `PUT /users/:id`.
pub struct EditUser {
    pub id: u64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub admin: Option<bool>,
    pub external: Option<bool>,
}

impl Endpoint for EditUser {
    fn method(&self) -> Method {
        Method::PUT
    }

    fn endpoint(&self) -> Cow<'static, str> {
        format!("users/{}", self.id).into()
    }

    fn body(&self) -> Result<Option<(&'static str, Vec<u8>)>, BodyError> {
        let mut params = FormParams::default();
        params
            .push_opt("name", self.name.as_deref())
            .push_opt("email", self.email.as_deref())
            .push_opt("admin", self.admin)
            .push_opt("external", self.external);
        if self.email.is_some() {
            params.push("skip_reconfirmation", true);
        }
        params.into_body()
    }
}

/// `POST /users/:id/{block,unblock,activate,deactivate}`.
pub struct UserAction {
    pub id: u64,
    pub action: &'static str,
}

impl Endpoint for UserAction {
    fn method(&self) -> Method {
        Method::POST
    }

    fn endpoint(&self) -> Cow<'static, str> {
        format!("users/{}/{}", self.id, self.action).into()
    }
}

/// `PATCH /projects/:id/protected_branches/:name` with `allow_force_push`, the only key CE honours.
pub struct PatchProtectedBranch {
    pub project: String,
    pub name: String,
    pub allow_force_push: bool,
}

impl Endpoint for PatchProtectedBranch {
    fn method(&self) -> Method {
        Method::PATCH
    }

    fn endpoint(&self) -> Cow<'static, str> {
        format!(
            "projects/{}/protected_branches/{}",
            super::encode(&self.project),
            super::encode(&self.name)
        )
        .into()
    }

    fn body(&self) -> Result<Option<(&'static str, Vec<u8>)>, BodyError> {
        let mut params = FormParams::default();
        params.push("allow_force_push", self.allow_force_push);
        params.into_body()
    }
}

/// `GET /hooks` (system hooks; administrators only).
pub struct SystemHooks;

impl Endpoint for SystemHooks {
    fn method(&self) -> Method {
        Method::GET
    }

    fn endpoint(&self) -> Cow<'static, str> {
        "hooks".into()
    }
}

impl gitlab::api::Pageable for SystemHooks {}

/// `POST /hooks`, or `PUT /hooks/:id` with `id`: a system hook for repository-independent
/// events (projects, members, users) only, with its secret token.
pub struct SaveSystemHook<'a> {
    pub id: Option<u64>,
    pub url: &'a str,
    pub token: &'a str,
}

impl Endpoint for SaveSystemHook<'_> {
    fn method(&self) -> Method {
        if self.id.is_some() {
            Method::PUT
        } else {
            Method::POST
        }
    }

    fn endpoint(&self) -> Cow<'static, str> {
        match self.id {
            Some(id) => format!("hooks/{id}").into(),
            None => "hooks".into(),
        }
    }

    fn body(&self) -> Result<Option<(&'static str, Vec<u8>)>, BodyError> {
        let mut params = FormParams::default();
        params
            .push("url", self.url)
            .push("token", self.token)
            .push("push_events", false)
            .push("tag_push_events", false)
            .push("merge_requests_events", false)
            .push("repository_update_events", false)
            .push("enable_ssl_verification", true);
        params.into_body()
    }
}

/// `GET /projects?order_by=updated_at&sort=desc&simple=true[&updated_after=…]`: the project
/// inventory. The `gitlab` crate sends `updated_after` in whole seconds; this sends GitLab's
/// own millisecond stamp, so a burst of updates within the watermark's second is not listed
/// again every cycle.
pub struct ProjectsUpdatedSince {
    /// RFC 3339 with milliseconds, e.g. `2026-12-04T19:08:33.671Z` (inclusive).
    pub since: Option<String>,
}

impl Endpoint for ProjectsUpdatedSince {
    fn method(&self) -> Method {
        Method::GET
    }

    fn endpoint(&self) -> Cow<'static, str> {
        "projects".into()
    }

    fn parameters(&self) -> QueryParams<'_> {
        let mut params = QueryParams::default();
        params
            .push("order_by", "updated_at")
            .push("sort", "desc")
            .push("simple", true)
            .push_opt("updated_after", self.since.as_deref());
        params
    }
}

impl gitlab::api::Pageable for ProjectsUpdatedSince {}
