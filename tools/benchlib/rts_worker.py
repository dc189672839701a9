"""Baseline (a), the Cinder way: rtslib objects, then a full
``RTSRoot().save_to_file()`` after every operation, as cinder-rtstool does.

Run as its own process with the venv's rtslib-fb:
``python -m benchlib.rts_worker '<json plan>'``; prints one JSON line.
The plan: {"samples": K, "files": [K paths], "save": path, "prefix": iqn
prefix, "portal": ip, "initiator": iqn}. Generous to the baseline: one
long-lived process (cinder-rtstool starts a new one per call) and one save
per operation (Cinder's LIO driver saves after create, add-initiator,
delete-initiator and delete: two per attachment create, two per delete).
"""
from __future__ import annotations

import json
import os
import sys
import time

import rtslib_fb
from rtslib_fb import LUN, TPG, FileIOStorageObject, MappedLUN, NetworkPortal, NodeACL, Target

from benchlib.common import BASELINE_INITIATOR, throwaway_secret


def create(fm, name: str, iqn: str, path: str, portal: str, initiator: str) -> None:
    so = FileIOStorageObject(name, dev=path, size=os.path.getsize(path), write_back=True,
                             aio=True)
    tpg = TPG(Target(fm, iqn, "create"), 1, "create")
    tpg.set_attribute("authentication", "1")
    tpg.set_attribute("generate_node_acls", "0")
    tpg.set_attribute("demo_mode_write_protect", "1")
    tpg.set_parameter("AuthMethod", "CHAP")
    lun = LUN(tpg, 0, so)
    NetworkPortal(tpg, portal, 3260, "any")
    acl = NodeACL(tpg, initiator, "create")
    acl.chap_userid = "bench"
    acl.chap_password = throwaway_secret()
    MappedLUN(acl, 0, lun)
    tpg.enable = True


def delete(root, name: str, iqn: str) -> tuple[float, float]:
    """As cinder-rtstool delete: find the target and the storage object by
    walking, then rtslib's own deletes. Returns (target s, storage object s)."""
    t0 = time.perf_counter()
    for target in root.targets:
        if target.wwn == iqn:
            target.delete()
            break
    t1 = time.perf_counter()
    for so in root.storage_objects:
        if so.name == name:
            so.delete()
            break
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    plan = json.loads(sys.argv[1])
    root = rtslib_fb.RTSRoot()
    fm = rtslib_fb.FabricModule("iscsi")
    out: dict[str, list[float]] = {k: [] for k in (
        "create", "create_rtslib", "create_save", "delete", "delete_rtslib",
        "delete_save", "delete_target", "delete_storage_object")}
    for i, path in enumerate(plan["files"][:plan["samples"]]):
        name = f"bench-rts-{os.getpid()}-{i}"
        iqn = f"{plan['prefix']}{name}"
        t0 = time.perf_counter()
        create(fm, name, iqn, path, plan["portal"], plan.get("initiator", BASELINE_INITIATOR))
        t1 = time.perf_counter()
        root.save_to_file(plan["save"])
        t2 = time.perf_counter()
        dt, ds = delete(root, name, iqn)
        t3 = time.perf_counter()
        if time.monotonic() + (t2 - t1) < plan.get("deadline", float("inf")):
            root.save_to_file(plan["save"])
            t4 = time.perf_counter()
        else:
            # Out of time: this save would dump one export less than the
            # one just timed; count it as long as that one, and say so.
            out.setdefault("delete_save_estimated", []).append(1.0)
            t4 = t3 + (t2 - t1)
        for key, value in (("create", t2 - t0), ("create_rtslib", t1 - t0),
                           ("create_save", t2 - t1), ("delete", t4 - t2),
                           ("delete_rtslib", t3 - t2), ("delete_save", t4 - t3),
                           ("delete_target", dt), ("delete_storage_object", ds)):
            out[key].append(value)
        if time.monotonic() > plan.get("deadline", float("inf")):
            break
    out["save_bytes"] = [os.path.getsize(plan["save"])]
    out["samples_done"] = [len(out["create"])]
    os.unlink(plan["save"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
