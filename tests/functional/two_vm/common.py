"""What both guests of tools/two-vm share: addresses, markers, verdicts."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from iscsiattach.cli.client import Client

STORAGE_IP = "10.213.0.1"
HOST_IP = "10.213.0.2"
API_PORT = 18776
ISCSI_PORT = 3260
API_URL = f"http://{STORAGE_IP}:{API_PORT}/v3"
# The functional tests' prefix: only targets under it are ours to look at.
PREFIX = "iqn.2010-10.org.iscsiattach.test:"
CONFIGFS_ISCSI = Path("/sys/kernel/config/target/iscsi")

# Markers in the shared results folder, each written whole (rename).
READY = "storage.ready"        # JSON: volume id, API URL; the token is beside it
HOST_DONE = "host.done"        # the host side finished (pass or fail)
ABORT = "abort"                # tools/two-vm: the other VM is gone
TOKEN = Path("secret") / "api-token"   # 0600 in a 0700 folder

START = time.monotonic()


class Failure(Exception):
    """A check failed or a wait ran out; the message is the verdict's reason."""


def results() -> Path:
    return Path(os.environ["ISCSIATTACH_RESULTS"])


def log(side: str, msg: str) -> None:
    print(f"[{side} +{time.monotonic() - START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def write_json(path: Path, data: Any) -> None:
    # The other guest polls over 9p: it must never see half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.rename(path)


def wait_for(path: Path, timeout: float, what: str, poll=lambda: None) -> Path:
    """Wait for a marker; the abort marker or the timeout end the wait."""
    end = time.monotonic() + timeout
    while not path.exists():
        if (path.parent / ABORT).exists():
            raise Failure(f"aborted while waiting for {what}: "
                          f"{(path.parent / ABORT).read_text().strip()}")
        if time.monotonic() > end:
            raise Failure(f"{what} did not happen within {timeout:.0f}s")
        poll()
        time.sleep(0.5)
    return path


def api(method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    return Client(API_URL, token, "3.54", timeout=120).call(method, path, body)


def acl_dir(target: str, initiator: str) -> Path:
    return CONFIGFS_ISCSI / target / "tpgt_1" / "acls" / initiator


def our_acls() -> dict[str, list[str]]:
    """Initiator ACLs of every target under our prefix, from configfs."""
    found = {}
    if CONFIGFS_ISCSI.is_dir():
        for target in CONFIGFS_ISCSI.iterdir():
            if target.name.startswith(PREFIX):
                acls = target / "tpgt_1" / "acls"
                found[target.name] = sorted(p.name for p in acls.iterdir()) \
                    if acls.is_dir() else []
    return found


def verdict(side: str, failure: str | None, facts: dict) -> int:
    """One clear line on stdout, the facts as JSON beside the markers."""
    ok = failure is None
    facts = {**facts, "side": side, "pass": ok, "reason": failure,
             "elapsed_s": round(time.monotonic() - START, 1)}
    write_json(results() / f"{side}.result.json", facts)
    print(f"two-vm {side}: {'PASS' if ok else 'FAIL: ' + failure}", flush=True)
    return 0 if ok else 1
