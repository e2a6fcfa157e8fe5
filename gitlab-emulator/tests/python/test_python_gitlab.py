"""Drives the emulator through python-gitlab's public API only."""

import json
import time

import gitlab
import pytest
from gitlab.const import AccessLevel

from conftest import ADMIN_TOKEN, ALICE_TOKEN


@pytest.fixture
def gl(emulator_url, control):
    return gitlab.Gitlab(emulator_url, private_token=ADMIN_TOKEN)


@pytest.fixture
def gl_alice(emulator_url, control):
    return gitlab.Gitlab(emulator_url, private_token=ALICE_TOKEN)


def body(exc):
    return json.loads(exc.response_body)


def test_auth_and_version(gl, gl_alice, emulator_url):
    gl.auth()
    assert gl.user.username == "root"
    assert gl.user.id == 1
    gl_alice.auth()
    assert gl_alice.user.username == "alice"
    version, _revision = gl.version()
    assert version.startswith("18.")
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError) as e:
        gitlab.Gitlab(emulator_url, private_token="wrong").auth()
    assert e.value.response_code == 401


def test_users_lifecycle(gl, gl_alice):
    user = gl.users.create(
        {"username": "pyuser", "name": "Py User", "email": "py@example.org", "password": "s3cret-pass"}
    )
    assert user.state == "active"
    assert gl.users.list(username="PYUSER")[0].id == user.id
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        gl.users.create(
            {"username": "pyuser", "name": "x", "email": "other@example.org", "reset_password": True}
        )
    assert e.value.response_code == 409
    assert body(e.value) == {"message": "Username has already been taken"}
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        gl.users.create({"username": "nopass", "name": "x", "email": "np@example.org"})
    assert e.value.response_code == 400
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        gl_alice.users.create(
            {"username": "byalice", "name": "x", "email": "ba@example.org", "password": "12345678"}
        )
    assert e.value.response_code == 403
    assert body(e.value) == {"message": "403 Forbidden"}

    assert user.block() is True
    assert gl.users.get(user.id).state == "blocked"
    user.unblock()
    user.deactivate()
    assert gl.users.get(user.id).state == "deactivated"
    user.activate()
    assert gl.users.get(user.id).state == "active"
    user.name = "Renamed"
    user.save()
    assert gl.users.get(user.id).name == "Renamed"

    gl.users.delete(user.id)
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            gl.users.get(user.id)
        except gitlab.exceptions.GitlabGetError as e:
            assert e.response_code == 404
            break
        time.sleep(0.05)
    else:
        pytest.fail("deleted user never disappeared")


def test_projects_branches_members_and_namespaces(gl, gl_alice):
    root_ns = gl.namespaces.get("root")
    assert root_ns.id == 1
    group = gl.groups.create({"name": "Py Group", "path": "py-group"})
    assert gl.namespaces.get("py-group").kind == "group"

    project = gl.projects.create(
        {"name": "py-app", "namespace_id": group.id, "initialize_with_readme": True}
    )
    assert project.default_branch == "main"
    assert project.path_with_namespace == "py-group/py-app"
    same = gl.projects.get("PY-GROUP/py-app")
    assert same.id == project.id

    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        gl.projects.create({"name": "py-app", "namespace_id": group.id})
    assert e.value.response_code == 400
    assert body(e.value)["message"]["path"] == ["has already been taken"]
    with pytest.raises(gitlab.exceptions.GitlabGetError) as e:
        gl.projects.get("py-group/missing")
    assert e.value.response_code == 404

    # The default branch is already protected: a POST conflicts.
    main = project.protectedbranches.get("main")
    assert main.push_access_levels[0]["access_level"] == AccessLevel.MAINTAINER
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        project.protectedbranches.create({"name": "main"})
    assert e.value.response_code == 409
    release = project.protectedbranches.create(
        {
            "name": "release/*",
            "push_access_level": AccessLevel.NO_ACCESS,
            "merge_access_level": AccessLevel.DEVELOPER,
        }
    )
    assert release.name == "release/*"
    fetched = project.protectedbranches.get("release/*")
    assert fetched.merge_access_levels[0]["access_level"] == AccessLevel.DEVELOPER
    fetched.allow_force_push = True
    fetched.save()
    again = project.protectedbranches.get("release/*")
    assert again.allow_force_push is True
    assert again.push_access_levels[0]["access_level"] == AccessLevel.NO_ACCESS
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        project.protectedbranches.create({"name": "bad", "push_access_level": 50})
    assert e.value.response_code == 400
    project.protectedbranches.delete("release/*")
    assert [b.name for b in project.protectedbranches.list(get_all=True)] == ["main"]

    alice = gl.users.list(username="alice")[0]
    member = project.members.create({"user_id": alice.id, "access_level": AccessLevel.DEVELOPER})
    assert member.access_level == AccessLevel.DEVELOPER
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        project.members.create({"user_id": alice.id, "access_level": AccessLevel.DEVELOPER})
    assert e.value.response_code == 409
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        project.members.create({"user_id": 99999, "access_level": AccessLevel.DEVELOPER})
    assert e.value.response_code == 404
    member.access_level = AccessLevel.MAINTAINER
    member.save()
    assert project.members.get(alice.id).access_level == AccessLevel.MAINTAINER
    # Alice, now a maintainer, can read the project but not create users.
    assert gl_alice.projects.get(project.id).name == "py-app"
    project.members.delete(alice.id)
    with pytest.raises(gitlab.exceptions.GitlabGetError) as e:
        project.members.get(alice.id)
    assert e.value.response_code == 404

    project.description = "updated"
    project.save()
    assert gl.projects.get(project.id).description == "updated"
    gl.projects.delete(project.id)
    assert gl.projects.get(project.id).marked_for_deletion_on is not None


def test_variables_in_several_scopes(gl):
    project = gl.projects.create({"name": "py-vars"})
    for scope in ["*", "production", "staging"]:
        project.variables.create(
            {"key": "DB_URL", "value": f"postgres-{scope}", "environment_scope": scope}
        )
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        project.variables.create({"key": "DB_URL", "value": "x", "environment_scope": "staging"})
    assert e.value.response_code == 400
    assert body(e.value) == {"message": {"key": ["(DB_URL) has already been taken"]}}

    with pytest.raises(gitlab.exceptions.GitlabGetError) as e:
        project.variables.get("DB_URL")
    assert e.value.response_code == 409

    prod = project.variables.get("DB_URL", filter={"environment_scope": "production"})
    assert prod.value == "postgres-production"
    project.variables.update(
        "DB_URL", {"value": "postgres-prod-2"}, filter={"environment_scope": "production"}
    )
    assert (
        project.variables.get("DB_URL", filter={"environment_scope": "production"}).value
        == "postgres-prod-2"
    )
    project.variables.delete("DB_URL", filter={"environment_scope": "staging"})
    scopes = sorted(v.environment_scope for v in project.variables.list(get_all=True))
    assert scopes == ["*", "production"]

    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        project.variables.create({"key": "MASKED", "value": "short", "masked": True})
    assert e.value.response_code == 400
    assert body(e.value) == {"message": {"value": ["is invalid"]}}

    hidden = project.variables.create(
        {"key": "HIDDEN", "value": "very-secret-value", "masked_and_hidden": True}
    )
    assert hidden.value is None
    assert hidden.hidden is True
    assert project.variables.get("HIDDEN").value is None
    with pytest.raises(gitlab.exceptions.GitlabUpdateError) as e:
        project.variables.update("HIDDEN", {"masked": False})
    assert e.value.response_code == 400


def test_page_through_250_projects(gl, control):
    for i in range(250):
        gl.projects.create({"name": f"bulk-{i:03d}"})
    control_before = control.counters()["by_route"].get("GET /api/v4/projects", 0)

    lazy = gl.projects.list(iterator=True, per_page=40)
    names = [p.name for p in lazy]
    assert len(names) == 250
    assert lazy.total == 250
    assert lazy.total_pages == 7

    eager = gl.projects.list(get_all=True, per_page=100)
    assert sorted(p.id for p in eager) == sorted(p.id for p in gl.projects.list(iterator=True))

    keyset = gl.projects.list(
        iterator=True, pagination="keyset", order_by="id", sort="asc", per_page=100
    )
    ids = [p.id for p in keyset]
    assert ids == sorted(ids) and len(ids) == 250

    calls = control.counters()["by_route"]["GET /api/v4/projects"] - control_before
    # 7 + 3 + 13 (default per_page 20) + 3 keyset pages
    assert calls == 7 + 3 + 13 + 3


def test_client_survives_headerless_429s(gl, control):
    control.faults(seed=11, rate_limited_rate=0.5, omit_rate_limit_headers=True)
    for _ in range(6):
        assert gl.projects.list(get_all=False, per_page=1) is not None
    control.clear_faults()
    assert control.counters()["faults"].get("rate_limited", 0) > 0


def test_audit_fidelity(gl):
    """Fixes from an outside audit, seen through python-gitlab."""
    project = gl.projects.create({"name": "pyaudit"})
    # default_branch_or_main: an empty project reports main.
    assert project.empty_repo is True
    assert project.default_branch == "main"
    # CE members carry no EE fields (member_role: null crashed gitlabform).
    member = project.members.list()[0]
    for key in ("member_role", "group_saml_identity", "membership_state"):
        assert key not in member.attributes
    # A branch in an empty project: README on main first, then the branch.
    branch = project.branches.create({"branch": "feature", "ref": "main"})
    assert branch.name == "feature"
    assert project.protectedbranches.get("main").name == "main"
    assert "code_owner_approval_required" not in project.protectedbranches.get("main").attributes
    # Feature booleans are their access level; documented settings are kept.
    project.issues_enabled = False
    project.ci_default_git_depth = 7
    project.save()
    again = gl.projects.get(project.id)
    assert again.issues_access_level == "disabled"
    assert again.ci_default_git_depth == 7
    # Renamed: the old path still finds it.
    again.path = "pyaudit-moved"
    again.save()
    assert gl.projects.get("root/pyaudit").id == project.id
    # A PUT with nothing GitLab knows is Grape's at_least_one_of 400.
    with pytest.raises(gitlab.exceptions.GitlabUpdateError) as e:
        gl.projects.update(project.id, {"no_such_setting": True})
    assert e.value.response_code == 400
    assert body(e.value)["error"].endswith("at least one parameter must be provided")
