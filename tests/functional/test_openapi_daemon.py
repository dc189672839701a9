"""schemathesis against the real daemon over real LIO, from its own OpenAPI
document (tests/contract/api_schema.py says what is checked). The volumes it
manages to create are small sparse files; everything is deleted afterwards,
and the store and LIO agree at the end."""
from __future__ import annotations

import pytest

from tests.contract.api_schema import fuzz_every_operation
from tests.functional.daemon import URL, Daemon, call


@pytest.fixture
def daemon(tmp_path, scratch_fs, backend, fork_server):     # backend: cleans our prefix up
    d = Daemon(tmp_path / "state", scratch_fs / "openapi-volumes",
               extra="[volumes]\nmax_size_gib = 1\n", forkserver=fork_server)
    d.start()
    yield d
    d.stop()


def _state(token: str) -> tuple:
    volumes = call("GET", "/volumes/detail", token=token)[1]["volumes"]
    attachments = call("GET", "/attachments/detail", token=token)[1]["attachments"]
    return (sorted((v["id"], v["status"], v["size"]) for v in volumes),
            sorted((a["id"], a["status"], a["attach_mode"]) for a in attachments))


def test_the_daemon_answers_as_its_document_says(daemon, backend):
    token = daemon.token
    count = fuzz_every_operation(URL.rsplit("/v3", 1)[0], token, lambda: _state(token), examples=4)
    assert count >= 30
    # Whatever the fuzzer made, the daemon can take it all back down.
    for att in call("GET", "/attachments", token=token)[1]["attachments"]:
        assert call("DELETE", f"/attachments/{att['id']}", token=token)[0] == 200
    for vol in call("GET", "/volumes", token=token)[1]["volumes"]:
        assert call("DELETE", f"/volumes/{vol['id']}", token=token)[0] == 202
    assert _state(token) == ([], [])
    assert backend.list_exports() == []
    assert "Traceback" not in daemon.log_since_start()

