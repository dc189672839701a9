"""schemathesis against a served API, driven by the API's own OpenAPI document.

Every operation of /openapi.json gets generated requests (valid and not) on
a real socket, with the token: no answer is a 5xx, every answer matches the
document (status and body schema), and a refused request (4xx) changes
nothing in the store. The quick form runs here; tools/fuzz runs it longer
(ISCSIATTACH_FUZZ_SCALE), and tools/dos-suite against the real daemon.
"""
from __future__ import annotations

import os
import tempfile
import threading

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, ignored_auth,
                                 negative_data_rejection, not_a_server_error,
                                 response_headers_conformance,
                                 response_schema_conformance, status_code_conformance)

from iscsiattach.api.app import Auth
from iscsiattach.api.metrics import Metrics
from iscsiattach.api.routes import build_app
from iscsiattach.api.server import make_server
from iscsiattach.attachments.services import build
from iscsiattach.secret import Secret
from iscsiattach.target import Portal
from iscsiattach.target.fake import FakeBackend
from iscsiattach.volumes.file import FileBackend

TOKEN = "openapi-fuzz-token-0123456789"
SCALE = int(os.environ.get("ISCSIATTACH_FUZZ_SCALE", "1"))
# Not positive_data_acceptance: Cinder's wire answers 400 to schema-valid
# requests the state or the node refuses (a volume not available, a size
# over [volumes] max_size_gib), and so do we.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance,
          negative_data_rejection, ignored_auth]


@pytest.fixture(scope="module")
def world():
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="iscsiattach-openapi-", dir=base) as tmp:
        services = build(os.path.join(tmp, "state"),
                         FakeBackend(prefix="iqn.2010-10.org.iscsiattach.openapi:"),
                         FileBackend(os.path.join(tmp, "state", "volumes")),
                         (Portal("127.0.0.1"),), max_size_gib=4)
        metrics = Metrics(services.store)
        metrics.reconciled(services.reconciler.run())
        metrics.ready = True                # as the daemon, after its first reconcile
        srv = make_server("127.0.0.1", 0, build_app(services, Auth("token", Secret(TOKEN)),
                                                    metrics))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        yield services, f"http://127.0.0.1:{srv.server_port}"
        srv.shutdown()
        srv.server_close()


def snapshot(services) -> tuple:
    store = services.store
    return (sorted((v.id, v.status, v.size_gib) for v in store.volumes()),
            sorted((a.id, a.status, a.attach_mode) for a in store.attachments()))


def test_every_operation_as_documented(world):
    services, url = world
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30          # both path forms of every operation
    for operation in operations:
        _fuzz(operation, services, url)


def _fuzz(operation, services, url: str) -> None:
    @settings(max_examples=10 * SCALE, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(operation.as_strategy(),
                          operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)))
    def one(case):
        before = snapshot(services)
        headers = {"X-Auth-Token": TOKEN}
        if "OpenStack-API-Version" not in (case.headers or {}):
            headers["OpenStack-API-Version"] = "volume 3.54"    # else mostly 3.0's 404s
        response = case.call(base_url=url, headers=headers)
        assert response.status_code < 500, (operation.label, response.text[:300])
        case.validate_response(response, checks=CHECKS)
        if 400 <= response.status_code < 500:
            assert snapshot(services) == before, \
                f"{operation.label}: refused with {response.status_code} but changed state"
    one()
