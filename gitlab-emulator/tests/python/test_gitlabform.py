"""Runs gitlabform (a third-party GitLab configuration tool) against the emulator.

gitlabform pins its own python-gitlab (4.x), so it lives in its own venv, given by
$GITLABFORM_VENV (scripts/test makes it with scripts/gitlabform-requirements.txt);
without it the test is skipped. gitlabform runs as a subprocess (`gitlabform -k`: no
PyPI version check, nothing leaves 127.0.0.1) for its members, branches (protected
branches) and variables processors: a first run converges, a second run of the same
configuration must not write anything, then a changed configuration converges again.
"""

import os
import pathlib
import subprocess
import textwrap

import pytest
import requests

from conftest import ADMIN_TOKEN

VENV = os.environ.get("GITLABFORM_VENV")
WRITES = ("POST ", "PUT ", "PATCH ", "DELETE ")

pytestmark = pytest.mark.skipif(
    not VENV or not (pathlib.Path(VENV) / "bin" / "gitlabform").is_file(),
    reason="GITLABFORM_VENV is not set to a venv with gitlabform installed "
    "(python3 -m venv V && V/bin/pip install -r scripts/gitlabform-requirements.txt)",
)

CONFIG_A = """
config_version: 3
projects_and_groups:
  root/app:
    members:
      users:
        root:
          access_level: 50
        alice:
          access_level: 30
        bob:
          access_level: 40
          expires_at: 2030-01-01
      enforce: true
    branches:
      main:
        protected: true
        push_access_level: 40
        merge_access_level: 30
        allow_force_push: false
      release/*:
        protected: true
        push_access_level: 0
        merge_access_level: 40
        allow_force_push: true
      develop:
        protected: false
    variables:
      plain:
        key: PLAIN
        value: hello
      secret:
        key: SECRET_TOKEN
        value: s3cr3tValue123
        masked: true
        protected: true
      prod:
        key: DEPLOY_URL
        value: https://prod.example
        environment_scope: production
        filter[environment_scope]: production
      staging:
        key: DEPLOY_URL
        value: https://staging.example
        environment_scope: staging
        filter[environment_scope]: staging
        variable_type: env_var
"""

# Changes every kind of thing: a member added, a member dropped, a branch rule's
# levels and force push, a rule dropped, a rule added, a scoped variable's value, a
# variable dropped. (Changing a member's level is test_gitlabform_member_level_change.)
CONFIG_B = """
config_version: 3
projects_and_groups:
  root/app:
    members:
      users:
        root:
          access_level: 50
        alice:
          access_level: 30
        carol:
          access_level: 20
          expires_at: 2031-06-30
      enforce: true
    branches:
      main:
        protected: true
        push_access_level: 30
        merge_access_level: 40
        allow_force_push: true
      release/*:
        protected: false
      develop:
        protected: true
        push_access_level: 40
        merge_access_level: 40
    variables:
      secret:
        key: SECRET_TOKEN
        value: s3cr3tValue123
        masked: true
        protected: true
      prod:
        key: DEPLOY_URL
        value: https://prod2.example
        environment_scope: production
        filter[environment_scope]: production
      staging:
        key: DEPLOY_URL
        value: https://staging.example
        environment_scope: staging
        filter[environment_scope]: staging
        variable_type: env_var
      enforce: true
"""


@pytest.fixture
def api(emulator_url, control):
    s = requests.Session()
    s.headers["PRIVATE-TOKEN"] = ADMIN_TOKEN

    def call(method, path, **kw):
        r = s.request(method, f"{emulator_url}/api/v4{path}", timeout=10, **kw)
        assert r.status_code < 400, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    return call


def gitlabform(emulator_url, tmp_path, config):
    cfg = tmp_path / "config.yml"
    cfg.write_text(textwrap.dedent(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITLAB_", "GITLABFORM_"))}
    env.update(GITLAB_URL=emulator_url, GITLAB_TOKEN=ADMIN_TOKEN, NO_COLOR="1")
    r = subprocess.run(
        [str(pathlib.Path(VENV) / "bin" / "gitlabform"), "-k", "-v", "-t", "-c", str(cfg), "root/app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"gitlabform exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def writes(control):
    return {k: n for k, n in control.counters()["by_route"].items() if k.startswith(WRITES)}


def dump(emulator_url):
    r = requests.get(f"{emulator_url}/-/emulator/state", timeout=10)
    r.raise_for_status()
    return r.json()


def assert_rerun_changes_nothing(emulator_url, control, tmp_path, config):
    """Runs `config` again: the whole emulator state must stay as it was. gitlabform still
    sends two kinds of writes that change nothing, on real GitLab too:
    - its unconditional unprotect (DELETE, 404 accepted) of each `protected: false` branch;
    - a PUT (same values) of each variable whose entry has `filter[environment_scope]`:
      `_needs_update` sees a key that the variable entity lacks. That key is needed: without
      it GitLab answers 409 "There are multiple variables with provided parameters" to a PUT
      of a key that exists in several scopes (Ci::VariablesFinder filters only on
      `filter[environment_scope]`, not on `environment_scope`)."""
    before = dump(emulator_url)
    requests.delete(f"{emulator_url}/-/emulator/counters", timeout=10).raise_for_status()
    gitlabform(emulator_url, tmp_path, config)
    assert writes(control) == {
        "DELETE /api/v4/projects/:id/protected_branches/:name": config.count("protected: false"),
        "PUT /api/v4/projects/:id/variables/:key": config.count("filter[environment_scope]"),
    }
    assert dump(emulator_url) == before, "a second run of the same configuration must change nothing"


def state(api):
    members = {m["username"]: (m["access_level"], m["expires_at"]) for m in api("GET", "/projects/root%2Fapp/members")}
    branches = {
        b["name"]: (
            [a["access_level"] for a in b["push_access_levels"]],
            [a["access_level"] for a in b["merge_access_levels"]],
            b["allow_force_push"],
        )
        for b in api("GET", "/projects/root%2Fapp/protected_branches")
    }
    variables = {
        (v["key"], v["environment_scope"]): (v["value"], v["masked"], v["protected"], v["variable_type"])
        for v in api("GET", "/projects/root%2Fapp/variables")
    }
    return members, branches, variables


def test_gitlabform_members_branches_variables(emulator_url, control, api, tmp_path):
    for u in ("bob", "carol"):  # alice comes from conftest's --user-token
        api("POST", "/users", json={"username": u, "name": u, "email": f"{u}@example.com",
                                    "password": "password123", "skip_confirmation": True})
    api("POST", "/projects", json={"name": "app", "initialize_with_readme": True})
    api("POST", "/projects/root%2Fapp/repository/branches", json={"branch": "develop", "ref": "main"})
    carol = api("GET", "/users", params={"username": "carol"})[0]["id"]
    api("POST", "/projects/root%2Fapp/members", json={"user_id": carol, "access_level": 20})

    gitlabform(emulator_url, tmp_path, CONFIG_A)
    members, branches, variables = state(api)
    assert members == {"root": (50, None), "alice": (30, None), "bob": (40, "2030-01-01")}
    assert branches == {"main": ([40], [30], False), "release/*": ([0], [40], True)}
    assert variables == {
        ("PLAIN", "*"): ("hello", False, False, "env_var"),
        ("SECRET_TOKEN", "*"): ("s3cr3tValue123", True, True, "env_var"),
        ("DEPLOY_URL", "production"): ("https://prod.example", False, False, "env_var"),
        ("DEPLOY_URL", "staging"): ("https://staging.example", False, False, "env_var"),
    }

    assert_rerun_changes_nothing(emulator_url, control, tmp_path, CONFIG_A)

    gitlabform(emulator_url, tmp_path, CONFIG_B)
    members, branches, variables = state(api)
    assert members == {"root": (50, None), "alice": (30, None), "carol": (20, "2031-06-30")}
    assert branches == {"main": ([30], [40], True), "develop": ([40], [40], False)}
    assert variables == {
        ("SECRET_TOKEN", "*"): ("s3cr3tValue123", True, True, "env_var"),
        ("DEPLOY_URL", "production"): ("https://prod2.example", False, False, "env_var"),
        ("DEPLOY_URL", "staging"): ("https://staging.example", False, False, "env_var"),
    }

    assert_rerun_changes_nothing(emulator_url, control, tmp_path, CONFIG_B)


def test_gitlabform_member_level_change(emulator_url, control, api, tmp_path):
    """gitlabform 3.16.5 changes a member's level with python-gitlab's
    `project.members.update(new_data={"user_id": <username>, ...})`, which has no id and so
    sends `PUT /projects/:id/members`. GitLab has no such route (lib/api/members.rb defines
    only `put ":id/members/:user_id"`; Grape answers a known path with another method with
    405, as the emulator does): this pins that gitlabform bug, and tells us when a gitlabform
    release fixes it. The member is left as it was."""
    api("POST", "/projects", json={"name": "app", "initialize_with_readme": True})
    alice = api("GET", "/users", params={"username": "alice"})[0]["id"]
    api("POST", "/projects/root%2Fapp/members", json={"user_id": alice, "access_level": 30})
    config = """
    config_version: 3
    projects_and_groups:
      root/app:
        members:
          users:
            alice:
              access_level: 40
    """
    with pytest.raises(AssertionError, match="405: 405 Not Allowed"):
        gitlabform(emulator_url, tmp_path, config)
    member = api("GET", f"/projects/root%2Fapp/members/{alice}")
    assert member["access_level"] == 30
