"""libiscsi's SCSI/iSCSI conformance suite (iscsi-test-cu) against our
exports and a default one, side by side, in the VM.

Three LUNs of the same size on the same ext4: ours with direct I/O (the
default where the filesystem has it: asynchronous fileio), ours through
the page cache (``[volumes] file_io = page-cache``), and a plain rtslib-fb
fileio export with every default (what targetcli makes). Each is logged
into by the suite's two initiator names with CHAP (the secret in
LIBISCSI_CHAP_PASSWORD, never on a command line). Per test: passed,
failed or skipped as the suite says; a JSON report with every test's
result and the comparison by family.

    tools/vm --timeout 3600 -- .venv/bin/python -m tests.functional.conformance \\
        OUT.json [FAMILY ...]

FAMILY is a test selector of the suite (e.g. SCSI.Read10, iSCSI); default:
the read, write, residual and task-management families.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from rtslib_fb import (
    LUN,
    TPG,
    FabricModule,
    FileIOStorageObject,
    MappedLUN,
    NetworkPortal,
    NodeACL,
    RTSRoot,
    Target,
)

from iscsiattach.model import Backing, BackingKind, ChapCredentials, ExportSpec, Grant, Portal
from iscsiattach.secret import Secret
from iscsiattach.targets.lio import LioBackend
from tests.support import scratch

PREFIX = "iqn.2010-10.org.iscsiattach.conformance:"
DEFAULT_IQN = PREFIX + "rtslib-default"
INITIATORS = ("iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
              "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2")
USER = "conformance"
SIZE = 64 << 20
FAMILIES = ("SCSI.Read6", "SCSI.Read10", "SCSI.Read12", "SCSI.Read16", "SCSI.Write10",
            "SCSI.Write12", "SCSI.Write16", "SCSI.WriteVerify10", "SCSI.Verify10",
            "SCSI.ReadCapacity10", "SCSI.ReadCapacity16", "SCSI.Inquiry",
            "SCSI.TestUnitReady", "SCSI.ModeSense6", "SCSI.PreventAllow",
            "iSCSI.iSCSIResiduals", "iSCSI.iSCSITMF", "iSCSI.iSCSIcmdsn",
            "iSCSI.iSCSIdatasn")
RESULT = re.compile(r"^\s*Test: (\S+) \.\.\.(passed|FAILED|skipped)?", re.M)
SUITE = re.compile(r"^Suite: (\S+)", re.M)


def run_family(iqn: str, family: str, secret: str) -> dict[str, str]:
    """Each test of ``family`` against ``iqn``: passed, failed or skipped."""
    env = {**os.environ, "LIBISCSI_CHAP_PASSWORD": secret}
    res = subprocess.run(
        ["iscsi-test-cu", "--dataloss", "--verbose", "-i", INITIATORS[0], "-I", INITIATORS[1],
         "-t", family, f"iscsi://{USER}@127.0.0.1/{iqn}/0"],
        env=env, capture_output=True, text=True, timeout=1800)
    out: dict[str, str] = {}
    suite = ""
    for line in res.stdout.splitlines():
        s = SUITE.match(line)
        if s:
            suite = s.group(1)
            continue
        m = RESULT.match(line)
        if m:
            out[f"{suite}.{m.group(1)}"] = {"passed": "passed", "FAILED": "failed"}.get(
                m.group(2) or "", "skipped")
    if not out:
        out["(none)"] = f"error: exit {res.returncode}: {res.stderr.strip()[-300:]}"
    return out


def export_ours(backend: LioBackend, path: Path, direct: bool, secret: str) -> str:
    spec = ExportSpec(str(uuid.uuid4()), Backing(BackingKind.FILE, str(path), SIZE,
                                                  direct_io=direct), (Portal("127.0.0.1"),))
    info = backend.export(spec)
    for initiator in INITIATORS:
        backend.authorize(spec.volume_id, Grant(initiator, ChapCredentials(USER, Secret(secret))))
    return info.target_iqn


def export_default(path: Path, secret: str) -> str:
    """What targetcli makes with its defaults: buffered fileio, a TPG with
    CHAP ACLs (the same credentials as ours, for the same logins)."""
    so = FileIOStorageObject("conformance-default", str(path), SIZE)
    tpg = TPG(Target(FabricModule("iscsi"), DEFAULT_IQN), 1)
    NetworkPortal(tpg, "127.0.0.1", 3260)
    lun = LUN(tpg, 0, so)
    for initiator in INITIATORS:
        acl = NodeACL(tpg, initiator)
        acl.chap_userid, acl.chap_password = USER, secret
        MappedLUN(acl, 0, lun)
    tpg.enable = True
    return DEFAULT_IQN


def remove_default() -> None:
    """Only what export_default made: its target, then its storage object."""
    fabric = FabricModule("iscsi")
    if any(t.wwn == DEFAULT_IQN for t in fabric.targets):
        Target(fabric, DEFAULT_IQN, mode="lookup").delete()
    for so in RTSRoot().storage_objects:
        if so.name == "conformance-default":
            so.delete()


def main() -> int:
    out_path = Path(sys.argv[1])
    families = sys.argv[2:] or list(FAMILIES)
    secret = "conformance-" + uuid.uuid4().hex[:16]
    backend = LioBackend(prefix=PREFIX)
    with scratch.scratch_fs(Path("/tmp/iscsiattach-conformance"), 1 << 30) as mnt:
        files = {name: scratch.sparse_file(mnt / f"{name}.img", SIZE)
                 for name in ("direct", "page-cache", "default")}
        targets = {"ours (direct I/O)": export_ours(backend, files["direct"], True, secret),
                   "ours (page cache)": export_ours(backend, files["page-cache"], False,
                                                    secret),
                   "rtslib default": export_default(files["default"], secret)}
        results: dict[str, dict[str, str]] = {name: {} for name in targets}
        started = time.monotonic()
        try:
            for family in families:
                for name, iqn in targets.items():        # each family on each, in turn
                    results[name].update(run_family(iqn, family, secret))
                    print(f"{family} on {name}: done", flush=True)
        finally:
            for vid in backend.list_exports():
                backend.unexport(vid)
            remove_default()
    commit = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse",
                             "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"families": families, "seconds": round(time.monotonic() - started, 1),
              "kernel": os.uname().release, "commit": commit, "results": results,
              "summary": summarize(results)}
    out_path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(json.dumps(report["summary"], indent=1))
    return 0


def summarize(results: dict[str, dict[str, str]]) -> dict[str, dict[str, int]]:
    return {name: {verdict: sum(1 for v in tests.values() if v == verdict)
                   for verdict in ("passed", "failed", "skipped")}
            for name, tests in results.items()}


if __name__ == "__main__":
    sys.exit(main())
