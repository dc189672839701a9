"""Crash consistency (quick form): kill -9 the real daemon at every fault
point, restart it, retry as a client would; the store and LIO agree,
nothing is lost or leaked. tools/crash-suite is the long form."""
from __future__ import annotations

import pytest

from iscsiattach import failpoints
from tests.functional.crash import SCENARIOS, Ctx, Outside, run_scenario
from tests.functional.daemon import Daemon


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, scratch_fs, fork_server):
    root = tmp_path_factory.mktemp("crash")
    volumes = scratch_fs / "crash-volumes"
    daemon = Daemon(root / "state", volumes, forkserver=fork_server)
    daemon.start(timeout=600)       # the first start waits for the fork server's imports
    outside = Outside(daemon.state, volumes)
    yield Ctx(daemon, outside)
    daemon.stop()
    for vid in outside.lio.list_exports():      # our test prefix only
        outside.lio.unexport(vid)


def test_every_fault_point_has_a_scenario():
    assert {sc.point for sc in SCENARIOS} == set(failpoints.POINTS)


# The quick form kills each point at its first pass; tools/crash-suite also
# at later ones (mid-way through a restore of several volumes).
@pytest.mark.parametrize("sc", [sc for sc in SCENARIOS if sc.hit == 1],
                         ids=lambda sc: f"{sc.point}-{sc.name}")
def test_kill_at_fault_point_then_retry_converges(ctx, sc):
    assert run_scenario(ctx, sc) == []
