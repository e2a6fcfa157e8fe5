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
