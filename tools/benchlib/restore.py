"""Item 4 baseline: ``targetctl restore`` of a saveconfig.json with N exports.

targetctl restore is ``RTSRoot().restore_from_file(restore_file=F)``, whose
default ``clear_existing=True`` first wipes ALL of LIO. That is forbidden
here (only our own objects may be touched), so we run the very same call
through Debian's system python3 and rtslib-fb with ``clear_existing=False``
on an LIO that holds none of these objects: the restore work is identical,
minus the wipe of an already empty tree.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchlib.common import BASELINE_INITIATOR, PREFIX_CTL, throwaway_secret
from tests.support.scratch import sparse_file

RESTORE = ("import sys\nfrom rtslib_fb import RTSRoot\n"
           "errors = RTSRoot().restore_from_file(restore_file=sys.argv[1], "
           "clear_existing=False)\nprint(len(errors))\n"
           "[print(e, file=sys.stderr) for e in errors[:5]]\n")
SO_PREFIX = "bench-ctl-"


def _export(i: int, path: str, size: int) -> tuple[dict, dict]:
    name = f"{SO_PREFIX}{i:05d}"
    so = {"plugin": "fileio", "name": name, "dev": path, "size": size, "write_back": True,
          "aio": True, "wwn": f"bench-ctl-{i:05d}"}
    tpg = {"tag": 1, "enable": True,
           "attributes": {"authentication": 1, "generate_node_acls": 0,
                          "demo_mode_write_protect": 1, "cache_dynamic_acls": 0},
           "parameters": {"AuthMethod": "CHAP"},
           "portals": [{"ip_address": "127.0.0.1", "port": 3260}],
           "luns": [{"index": 0, "storage_object": f"/backstores/fileio/{name}"}],
           "node_acls": [{"node_wwn": BASELINE_INITIATOR, "chap_userid": "bench",
                          "chap_password": throwaway_secret(),
                          "mapped_luns": [{"index": 0, "tpg_lun": 0,
                                           "write_protect": False}]}]}
    return so, {"fabric": "iscsi", "wwn": f"{PREFIX_CTL}{name}", "tpgs": [tpg]}


def make_saveconfig(n: int, workdir: Path, files_dir: Path, size: int = 1 << 30) -> Path:
    """The saveconfig.json of N exports like ours (fileio aio, CHAP ACL,
    closed TPG, one portal), written 0600 (it holds throwaway secrets)."""
    sos, targets = [], []
    for i in range(n):
        path = sparse_file(files_dir / f"ctl-{i:05d}.img", size)
        so, target = _export(i, str(path), size)
        sos.append(so)
        targets.append(target)
    config = {"fabric_modules": [], "storage_objects": sos, "targets": targets}
    out = workdir / f"saveconfig-{n}.json"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    return out


def targetctl_restore(saveconfig: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/python3", "-c", RESTORE, str(saveconfig)],
                         capture_output=True, text=True, env=env, timeout=3600)
    dt = time.perf_counter() - t0
    errors = int(res.stdout.strip() or "-1") if res.returncode == 0 else -1
    return {"seconds": round(dt, 2), "errors": errors, "stderr": res.stderr.strip()[-500:]}
