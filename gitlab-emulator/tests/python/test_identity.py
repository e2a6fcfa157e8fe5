"""Identities as reconcile uses them, through python-gitlab's public API only: personal access
tokens and their scopes, SSH keys looked up by fingerprint, CI jobs seen with a job token."""

import subprocess

import gitlab
import pytest
import requests

from conftest import ADMIN_TOKEN


@pytest.fixture
def gl(emulator_url, control):
    return gitlab.Gitlab(emulator_url, private_token=ADMIN_TOKEN)


def new_user(gl, name):
    return gl.users.create(
        {"username": name, "name": name, "email": f"{name}@example.com", "password": "Pw-" + name * 3}
    )


def test_personal_access_tokens_and_scopes(gl, emulator_url):
    bob = new_user(gl, "bob")
    pat = bob.personal_access_tokens.create({"name": "laptop", "scopes": ["api"]})
    as_bob = gitlab.Gitlab(emulator_url, private_token=pat.token)
    as_bob.auth()
    assert as_bob.user.username == "bob"
    me = as_bob.personal_access_tokens.get("self")
    assert me.scopes == ["api"] and me.user_id == bob.id and me.active

    read = bob.personal_access_tokens.create({"name": "ro", "scopes": ["read_api"]})
    as_reader = gitlab.Gitlab(emulator_url, private_token=read.token)
    assert as_reader.projects.list(get_all=True) == []
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        as_reader.projects.create({"name": "nope"})
    assert e.value.response_code == 403

    # A non-admin cannot mint tokens for others.
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        as_bob.users.get(1, lazy=True).personal_access_tokens.create({"name": "x", "scopes": ["api"]})
    assert e.value.response_code == 403

    # Revoked: 401 from then on.
    as_bob.personal_access_tokens.delete("self")
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError) as e:
        as_bob.auth()
    assert e.value.response_code == 401


def test_ssh_keys_are_found_by_fingerprint(gl, tmp_path):
    carol = new_user(gl, "carol")
    key = tmp_path / "carol"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "carol", "-f", str(key)], check=True)
    public = (tmp_path / "carol.pub").read_text().strip()
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(key) + ".pub"], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    created = carol.keys.create({"title": "laptop", "key": public})
    assert [k.id for k in carol.keys.list()] == [created.id]
    found = gl.keys.get(fingerprint=fingerprint)
    assert found.id == created.id
    assert found.user["username"] == "carol" and found.user["id"] == carol.id
    with pytest.raises(gitlab.exceptions.GitlabError) as e:
        gl.keys.get(fingerprint="SHA256:" + "A" * 43)
    assert e.value.response_code == 404
    # The same key twice is refused.
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as e:
        carol.keys.create({"title": "again", "key": public})
    assert e.value.response_code == 400


def test_a_ci_job_is_seen_with_its_job_token(gl, emulator_url):
    dave = new_user(gl, "dave")
    project = gl.projects.create({"name": "desired-state"})
    r = requests.post(
        f"{emulator_url}/-/emulator/jobs",
        json={"project": project.id, "user": "dave", "name": "approve", "stage": "approve", "trace": "hello\n"},
        timeout=10,
    )
    r.raise_for_status()
    seeded = r.json()
    as_job = gitlab.Gitlab(emulator_url, job_token=seeded["token"])
    current = as_job.http_get("/job")
    assert current["id"] == seeded["id"] and current["user"]["id"] == dave.id
    assert current["pipeline"]["id"] == seeded["pipeline"]["id"]

    job = project.jobs.get(seeded["id"])
    assert job.status == "running" and job.user["username"] == "dave"
    assert job.trace() == b"hello\n"

    requests.put(
        f"{emulator_url}/-/emulator/jobs/{seeded['id']}", json={"status": "success"}, timeout=10
    ).raise_for_status()
    assert project.jobs.get(seeded["id"]).status == "success"
    # A finished job's token no longer works.
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError) as e:
        as_job.http_get("/job")
    assert e.value.response_code == 401
