"""Denial of service against the real daemon (quick form; tools/dos-suite is
the full one): HTTPS with a self-signed certificate, token auth, the daemon
under a 1024 file-descriptor soft limit, attackers on asyncio sockets in this
process, the authenticated client in a forked one. The scenarios, goals and
their reasons are in tests/functional/dos.py and docs/reliability.md.

What the quick form cuts, because TCG time forces it: the unloaded and loaded
measurement windows (6 s and 10 s instead of 15 s and 30 s), the FD watch
after the attack (10 s, the goal's own bound, instead of 30 s) and the
bad-token burst (2,000 requests instead of 10,000; at most 60 s). Every other
count is the full one: 1 idle TLS client, 1,500 idle TCP connections against
the 1024-FD limit, 100 trickling clients, 50 clients with 1 MiB of headers,
300 concurrent /healthz clients. Results: $ISCSIATTACH_RESULTS/dos-quick.json.
"""
from __future__ import annotations

import json

import pytest

from tests.functional import dos

SCALE = dos.QUICK
RESULTS: list[dict] = []


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    daemon, target = dos.start_daemon(tmp_path_factory.mktemp("dos"))
    yield target
    daemon.stop()
    print("\n" + dos.table(RESULTS))


@pytest.mark.parametrize("name", dos.names(SCALE))
def test_dos(target, name, results_dir):
    r = dos.run(target, name, SCALE)
    RESULTS.append(r)
    (results_dir / "dos-quick.json").write_text(json.dumps(
        {"scale": SCALE.name, "results": RESULTS}, indent=2) + "\n")
    bad = r.get("log_bad") or []
    assert not r["failed"], (f"{name}: {dos.goal_report(r)}"
                             + ("\nlog lines refused:\n" + "\n".join(bad[:10]) if bad else ""))
