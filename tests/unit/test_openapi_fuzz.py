"""schemathesis against the app over the fake target, on a real socket
(tests/contract/api_schema.py says what is checked); tools/fuzz runs it at
ISCSIATTACH_FUZZ_SCALE, tests/functional/test_openapi_daemon.py against the
real daemon."""
from __future__ import annotations

import os
import tempfile
import threading

import pytest

from iscsiattach.api.app import Auth
from iscsiattach.api.metrics import Metrics
from iscsiattach.api.routes import build_app
from iscsiattach.api.server import make_server
from iscsiattach.attachments.wiring import wire_services
from iscsiattach.model import Portal
from iscsiattach.secret import Secret
from iscsiattach.targets.fake import FakeBackend
from iscsiattach.volumes.file import FileBackend
from tests.contract.api_schema import fuzz_every_operation

TOKEN = "openapi-fuzz-token-0123456789"
SCALE = int(os.environ.get("ISCSIATTACH_FUZZ_SCALE", "1"))


@pytest.fixture(scope="module")
def world():
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="iscsiattach-openapi-", dir=base) as tmp:
        services = wire_services(os.path.join(tmp, "state"),
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
    count = fuzz_every_operation(url, TOKEN, lambda: snapshot(services), 10 * SCALE)
    assert count >= 30                    # both path forms of every operation
