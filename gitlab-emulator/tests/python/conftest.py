"""Pytest fixtures: start the gitlab-emulator binary once per session.

The binary comes from $GITLAB_EMULATOR_BIN (set by the test runner); without
it, the usual cargo output locations are tried. The emulator is started with
``--listen 127.0.0.1:0``; its URL is read from the first stdout line and it is
stopped with SIGTERM at the end.
"""

import os
import pathlib
import signal
import subprocess

import pytest
import requests

ADMIN_TOKEN = "py-admin-token"
ALICE_TOKEN = "py-alice-token"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def _binary() -> str:
    explicit = os.environ.get("GITLAB_EMULATOR_BIN")
    if explicit:
        return explicit
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(pathlib.Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "gitlab-emulator")
    candidates.append(REPO_ROOT / "target" / "debug" / "gitlab-emulator")
    for c in candidates:
        if c.is_file():
            return str(c)
    pytest.fail(
        "gitlab-emulator binary not found: set GITLAB_EMULATOR_BIN or run "
        "`cargo build -p gitlab-emulator` first"
    )


@pytest.fixture(scope="session")
def emulator_url():
    proc = subprocess.Popen(
        [
            _binary(),
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            ADMIN_TOKEN,
            "--user-token",
            f"alice={ALICE_TOKEN}",
            "--user-delete-delay-ms",
            "100",
        ],
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


@pytest.fixture
def control(emulator_url):
    """Helper for the /-/emulator control plane; resets state and faults around each test."""

    class Control:
        def reset(self):
            requests.post(f"{emulator_url}/-/emulator/reset", timeout=10).raise_for_status()

        def faults(self, **settings):
            r = requests.put(f"{emulator_url}/-/emulator/faults", json=settings, timeout=10)
            r.raise_for_status()

        def clear_faults(self):
            requests.delete(f"{emulator_url}/-/emulator/faults", timeout=10).raise_for_status()

        def counters(self):
            return requests.get(f"{emulator_url}/-/emulator/counters", timeout=10).json()

    c = Control()
    c.clear_faults()
    c.reset()
    yield c
    c.clear_faults()
