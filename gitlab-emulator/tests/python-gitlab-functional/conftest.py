"""Adapted fixtures for python-gitlab's functional tests (tests/functional/conftest.py of the
python-gitlab sdist, which starts GitLab in docker), pointing them at the gitlab-emulator.

Only fixtures change: `gl` is an admin client of an emulator started on 127.0.0.1:0 (as
gitlab-emulator/tests/python/conftest.py does), the emulator is reset before each test module
(their module-scoped `project`, `user`, `group` fixtures live across a module's tests, and
their cleanup relies on GitLab deleting things), `temp_dir` is a private directory, and the
other fixtures (`group`, `project`, `user`, `variable`, the keys, `gitlab_version`,
`gitlab_config`, the plan checks) are theirs, copied verbatim. selection.py decides
which tests run, which are expected failures (known deviations) and which are out of scope.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import subprocess
import uuid

import pytest
import requests

import gitlab
import gitlab.base
from tests.functional import helpers
from tests.functional import selection

ADMIN_TOKEN = "pgfunc-admin-token"


def pytest_configure(config):
    config.addinivalue_line("markers", "gitlab_premium: marks tests that require GitLab Premium")
    config.addinivalue_line("markers", "gitlab_ultimate: marks tests that require GitLab Ultimate")


def pytest_collection_modifyitems(config, items):
    """Deselect out-of-scope tests, mark known deviations xfail, refuse unclassified tests."""
    keep, drop, unknown = [], [], []
    for item in items:
        name = item.nodeid.split("tests/functional/", 1)[-1]
        if name in selection.OUT_OF_SCOPE:
            drop.append(item)
            continue
        if name in selection.XFAIL:
            item.add_marker(pytest.mark.xfail(reason=selection.XFAIL[name], strict=True))
        elif name not in selection.RUN and not os.environ.get("PGFUNC_DISCOVER"):
            unknown.append(name)
        keep.append(item)
    if unknown:
        raise pytest.UsageError(
            "tests not classified in selection.py (RUN, XFAIL or OUT_OF_SCOPE): " + ", ".join(unknown)
        )
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def _binary() -> str:
    explicit = os.environ.get("GITLAB_EMULATOR_BIN")
    if explicit and pathlib.Path(explicit).is_file():
        return explicit
    pytest.fail(
        "gitlab-emulator binary not found: set GITLAB_EMULATOR_BIN or run "
        "`cargo build -p gitlab-emulator` first"
    )


@pytest.fixture(scope="session")
def gitlab_url():
    proc = subprocess.Popen(
        [_binary(), "--listen", "127.0.0.1:0", "--admin-token", ADMIN_TOKEN, "--user-delete-delay-ms", "50"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), f"unexpected first line: {line!r}"
        yield line.removeprefix("listening on ")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert code == 0, f"emulator exited with {code} after SIGTERM"


@pytest.fixture(scope="session")
def gitlab_token() -> str:
    return ADMIN_TOKEN


@pytest.fixture(scope="session")
def gl(gitlab_url: str, gitlab_token: str) -> gitlab.Gitlab:
    """Helper instance to make fixtures and asserts directly via the API."""
    instance = gitlab.Gitlab(gitlab_url, private_token=gitlab_token)
    instance.auth()
    return instance


@pytest.fixture(scope="module", autouse=True)
def reset_emulator(gitlab_url: str):
    """A fresh instance for every test module (their reset_gitlab deletes everything via the API)."""
    requests.post(f"{gitlab_url}/-/emulator/reset", timeout=10).raise_for_status()


# --- verbatim from python-gitlab's tests/functional/conftest.py ---------------------------


@dataclasses.dataclass
class GitlabVersion:
    major: int
    minor: int
    patch: str
    revision: str

    def __post_init__(self):
        self.major, self.minor = int(self.major), int(self.minor)


@pytest.fixture(scope="session")
def gitlab_version(gl) -> GitlabVersion:
    version, revision = gl.version()
    major, minor, patch = version.split(".")
    return GitlabVersion(major=major, minor=minor, patch=patch, revision=revision)


@pytest.fixture(scope="session")
def fixture_dir(test_dir: pathlib.Path) -> pathlib.Path:
    return test_dir / "functional" / "fixtures"


@pytest.fixture(scope="session")
def temp_dir(tmp_path_factory) -> pathlib.Path:
    # Theirs is tempfile.gettempdir(); a private directory keeps runs from sharing the config file.
    return tmp_path_factory.mktemp("python-gitlab")


@pytest.fixture(scope="session")
def gitlab_config(gitlab_url: str, gitlab_token: str, temp_dir: pathlib.Path):
    config_file = temp_dir / "python-gitlab.cfg"

    config = f"""[global]
default = local
timeout = 60

[local]
url = {gitlab_url}
private_token = {gitlab_token}
api_version = 4"""

    with open(config_file, "w", encoding="utf-8") as f:
        f.write(config)

    return config_file


@pytest.fixture(scope="session")
def gitlab_plan(gl: gitlab.Gitlab) -> str | None:
    return helpers.get_gitlab_plan(gl)


@pytest.fixture(autouse=True)
def gitlab_premium(gitlab_plan, request) -> None:
    if gitlab_plan in ("premium", "ultimate"):
        return

    if request.node.get_closest_marker("gitlab_ultimate"):
        pytest.skip("Test requires GitLab Premium plan")


@pytest.fixture(autouse=True)
def gitlab_ultimate(gitlab_plan, request) -> None:
    if gitlab_plan == "ultimate":
        return

    if request.node.get_closest_marker("gitlab_ultimate"):
        pytest.skip("Test requires GitLab Ultimate plan")


@pytest.fixture(scope="module")
def group(gl):
    """Group fixture for group API resource tests."""
    _id = uuid.uuid4().hex
    data = {"name": f"test-group-{_id}", "path": f"group-{_id}"}
    group = gl.groups.create(data)

    yield group

    helpers.safe_delete(group)


@pytest.fixture(scope="module")
def project(gl):
    """Project fixture for project API resource tests."""
    _id = uuid.uuid4().hex
    name = f"test-project-{_id}"

    project = gl.projects.create(name=name, remove_source_branch_after_merge=False)

    yield project

    helpers.safe_delete(project)


@pytest.fixture(scope="module")
def user(gl):
    """User fixture for user API resource tests."""
    _id = uuid.uuid4().hex
    email = f"user{_id}@email.com"
    username = f"user{_id}"
    name = f"User {_id}"
    password = "E4596f8be406Bc3a14a4ccdb1df80587"

    user = gl.users.create(email=email, username=username, name=name, password=password)

    yield user

    helpers.safe_delete(user)


@pytest.fixture(scope="module")
def variable(project):
    """Variable fixture for project variable API resource tests."""
    _id = uuid.uuid4().hex
    data = {"key": f"var{_id}", "value": f"Variable {_id}"}

    return project.variables.create(data)


@pytest.fixture(scope="session")
def GPG_KEY():
    return """-----BEGIN PGP PUBLIC KEY BLOCK-----

mQENBFn5mzYBCADH6SDVPAp1zh/hxmTi0QplkOfExBACpuY6OhzNdIg+8/528b3g
Y5YFR6T/HLv/PmeHskUj21end1C0PNG2T9dTx+2Vlh9ISsSG1kyF9T5fvMR3bE0x
Dl6S489CXZrjPTS9SHk1kF+7dwjUxLJyxF9hPiSihFefDFu3NeOtG/u8vbC1mewQ
ZyAYue+mqtqcCIFFoBz7wHKMWjIVSJSyTkXExu4OzpVvy3l2EikbvavI3qNz84b+
Mgkv/kiBlNoCy3CVuPk99RYKZ3lX1vVtqQ0OgNGQvb4DjcpyjmbKyibuZwhDjIOh
au6d1OyEbayTntd+dQ4j9EMSnEvm/0MJ4eXPABEBAAG0G0dpdGxhYlRlc3QxIDxm
YWtlQGZha2UudGxkPokBNwQTAQgAIQUCWfmbNgIbAwULCQgHAgYVCAkKCwIEFgID
AQIeAQIXgAAKCRBgxELHf8f3hF3yB/wNJlWPKY65UsB4Lo0hs1OxdxCDqXogSi0u
6crDEIiyOte62pNZKzWy8TJcGZvznRTZ7t8hXgKFLz3PRMcl+vAiRC6quIDUj+2V
eYfwaItd1lUfzvdCaC7Venf4TQ74f5vvNg/zoGwE6eRoSbjlLv9nqsxeA0rUBUQL
LYikWhVMP3TrlfgfduYvh6mfgh57BDLJ9kJVpyfxxx9YLKZbaas9sPa6LgBtR555
JziUxHmbEv8XCsUU8uoFeP1pImbNBplqE3wzJwzOMSmmch7iZzrAwfN7N2j3Wj0H
B5kQddJ9dmB4BbU0IXGhWczvdpxboI2wdY8a1JypxOdePoph/43iuQENBFn5mzYB
CADnTPY0Zf3d9zLjBNgIb3yDl94uOcKCq0twNmyjMhHzGqw+UMe9BScy34GL94Al
xFRQoaL+7P8hGsnsNku29A/VDZivcI+uxTx4WQ7OLcn7V0bnHV4d76iky2ufbUt/
GofthjDs1SonePO2N09sS4V4uK0d5N4BfCzzXgvg8etCLxNmC9BGt7AaKUUzKBO4
2QvNNaC2C/8XEnOgNWYvR36ylAXAmo0sGFXUsBCTiq1fugS9pwtaS2JmaVpZZ3YT
pMZlS0+SjC5BZYFqSmKCsA58oBRzCxQz57nR4h5VEflgD+Hy0HdW0UHETwz83E6/
U0LL6YyvhwFr6KPq5GxinSvfABEBAAGJAR8EGAEIAAkFAln5mzYCGwwACgkQYMRC
x3/H94SJgwgAlKQb10/xcL/epdDkR7vbiei7huGLBpRDb/L5fM8B5W77Qi8Xmuqj
cCu1j99ZCA5hs/vwVn8j8iLSBGMC5gxcuaar/wtmiaEvT9fO/h6q4opG7NcuiJ8H
wRj8ccJmRssNqDD913PLz7T40Ts62blhrEAlJozGVG/q7T3RAZcskOUHKeHfc2RI
YzGsC/I9d7k6uxAv1L9Nm5F2HaAQDzhkdd16nKkGaPGR35cT1JLInkfl5cdm7ldN
nxs4TLO3kZjUTgWKdhpgRNF5hwaz51ZjpebaRf/ZqRuNyX4lIRolDxzOn/+O1o8L
qG2ZdhHHmSK2LaQLFiSprUkikStNU9BqSQ==
=5OGa
-----END PGP PUBLIC KEY BLOCK-----"""


@pytest.fixture(scope="session")
def SSH_KEY():
    return (
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDZAjAX8vTiHD7Yi3/EzuVaDChtih"
        "79HyJZ6H9dEqxFfmGA1YnncE0xujQ64TCebhkYJKzmTJCImSVkOu9C4hZgsw6eE76n"
        "+Cg3VwEeDUFy+GXlEJWlHaEyc3HWioxgOALbUp3rOezNh+d8BDwwqvENGoePEBsz5l"
        "a6WP5lTi/HJIjAl6Hu+zHgdj1XVExeH+S52EwpZf/ylTJub0Bl5gHwf/siVE48mLMI"
        "sqrukXTZ6Zg+8EHAIvIQwJ1dKcXe8P5IoLT7VKrbkgAnolS0I8J+uH7KtErZJb5oZh"
        "S4OEwsNpaXMAr+6/wWSpircV2/e7sFLlhlKBC4Iq1MpqlZ7G3p foo@bar"
    )


@pytest.fixture(scope="session")
def DEPLOY_KEY():
    return (
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDFdRyjJQh+1niBpXqE2I8dzjG"
        "MXFHlRjX9yk/UfOn075IdaockdU58sw2Ai1XIWFpZpfJkW7z+P47ZNSqm1gzeXI"
        "rtKa9ZUp8A7SZe8vH4XVn7kh7bwWCUirqtn8El9XdqfkzOs/+FuViriUWoJVpA6"
        "WZsDNaqINFKIA5fj/q8XQw+BcS92L09QJg9oVUuH0VVwNYbU2M2IRmSpybgC/gu"
        "uWTrnCDMmLItksATifLvRZwgdI8dr+q6tbxbZknNcgEPrI2jT0hYN9ZcjNeWuyv"
        "rke9IepE7SPBT41C+YtUX4dfDZDmczM1cE0YL/krdUCfuZHMa4ZS2YyNd6slufc"
        "vn bar@foo"
    )
