"""Item 3: a host gets its device. ``iscsiattach attach`` (in-process, phases
timed, and as the CLI a user runs) against the floor: a bare iscsiadm
login to an already prepared target until its by-path link appears.

Instrumentation records where os-brick spends its time: each subprocess
(program and iscsiadm mode/operation/setting name, never a value) and each
time.sleep with the line that asked for it.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchlib.common import summary
from tests.support.wait import wait_for

SECRET_KEYS = ("auth_password", "discovery_auth_password")


# -- the floor: iscsiadm by hand ------------------------------------------------
def _iscsiadm(*args: str, check: bool = True) -> None:
    res = subprocess.run(["iscsiadm", *args], capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise RuntimeError(f"iscsiadm {' '.join(args[:4])}: {res.stderr.strip()[:200]}")


def _node(iqn: str, portal: str, *args: str, check: bool = True) -> None:
    _iscsiadm("-m", "node", "-T", iqn, "-p", portal, *args, check=check)


# The node record as iscsiattach's host side leaves it before its login: the
# same keys written by the same function (iscsiattach.host.node_record), one
# atomic 0600 rewrite each, so the floor pays for the record what ours pays
# and no `iscsiadm -o update` run that ours avoids.
def floor_record(user: str, secret: str) -> tuple[tuple[str, str], ...]:
    from iscsiattach.host.brick import SCAN_MODE
    return (("node.session.auth.authmethod", "CHAP"), ("node.session.auth.username", user),
            ("node.session.auth.password", secret), ("node.session.scan", SCAN_MODE),
            ("node.startup", "automatic"))


def _node_setup(iqn: str, portal: str, user: str, secret: str) -> None:
    from iscsiattach.host.node_record import write_node_setting
    _node(iqn, portal, "-o", "new")
    for key, value in floor_record(user, secret):
        if not write_node_setting(iqn, portal, key, value):
            raise RuntimeError(f"no node record for {iqn} at {portal}")


def _wait(predicate, timeout: float = 60.0):
    """Polled every 5 ms: the floor's phases are timed by these waits."""
    got = wait_for(predicate, timeout, 0.005)
    if not got:
        raise RuntimeError("timed out waiting")
    return got


def _sysfs_block(iqn: str) -> str | None:
    for sess in glob.glob("/sys/class/iscsi_session/session*"):
        try:
            if Path(sess, "targetname").read_text().strip() != iqn:
                continue
        except OSError:
            continue
        blocks = glob.glob(f"{sess}/device/target*/*:0/block/*")
        if blocks:
            return "/dev/" + os.path.basename(blocks[0])
    return None


def floor_attach(info: dict[str, Any]) -> tuple[dict[str, float], str]:
    iqn, portal = info["target_iqn"], info["target_portal"]
    marks = {"start": time.perf_counter()}
    _node_setup(iqn, portal, info["auth_username"], info["auth_password"])
    marks["node_setup"] = time.perf_counter()
    _node(iqn, portal, "--login")
    marks["login"] = time.perf_counter()
    dev = _wait(lambda: _sysfs_block(iqn))
    marks["sysfs_device"] = time.perf_counter()
    link = f"/dev/disk/by-path/ip-{portal}-iscsi-{iqn}-lun-0"
    _wait(lambda: os.path.exists(link))
    marks["udev_by_path"] = time.perf_counter()
    return _phases(marks), dev


def floor_detach(info: dict[str, Any], dev: str) -> dict[str, float]:
    iqn, portal = info["target_iqn"], info["target_portal"]
    marks = {"start": time.perf_counter()}
    _node(iqn, portal, "--logout")
    marks["logout"] = time.perf_counter()
    _wait(lambda: not os.path.exists(dev))
    marks["device_gone"] = time.perf_counter()
    _node(iqn, portal, "-o", "delete")
    marks["node_delete"] = time.perf_counter()
    return _phases(marks)


def _phases(marks: dict[str, float]) -> dict[str, float]:
    keys = list(marks)
    out = {k: marks[k] - marks[p] for p, k in itertools.pairwise(keys)}
    out["total"] = marks[keys[-1]] - marks[keys[0]]
    return out


# -- os-brick instrumentation ---------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.execs: list[tuple[str, float]] = []
        self.sleeps: list[tuple[str, float]] = []

    def totals(self) -> dict[str, Any]:
        return {"subprocesses": len(self.execs),
                "subprocess_s": sum(d for _, d in self.execs),
                "sleeps": len(self.sleeps), "sleep_s": sum(d for _, d in self.sleeps),
                "sleep_sites": sorted({site for site, _ in self.sleeps}),
                "commands": [label for label, _ in self.execs]}


def _label(cmd: tuple) -> str:
    """Program and iscsiadm's mode/op/setting name; never an option value."""
    words = [os.path.basename(str(cmd[0]))] if cmd else []
    for i, word in enumerate(cmd):
        if word in ("-m", "--op", "-o", "-n") and i + 1 < len(cmd):
            words.append(f"{word} {cmd[i + 1]}")
        elif word in ("--login", "--logout", "--rescan", "-R", "--interface"):
            words.append(word)
    return " ".join(words)


@contextlib.contextmanager
def instrumented(rec: Recorder) -> Iterator[None]:
    from oslo_concurrency import processutils
    real_exec, real_sleep = processutils.execute, time.sleep

    def execute(*cmd, **kwargs):
        t0 = time.perf_counter()
        try:
            return real_exec(*cmd, **kwargs)
        finally:
            rec.execs.append((_label(cmd), time.perf_counter() - t0))

    def sleep(seconds):
        frame = sys._getframe(1)
        site = f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        t0 = time.perf_counter()
        real_sleep(seconds)
        if "os_brick" in frame.f_code.co_filename or "processutils" in frame.f_code.co_filename:
            rec.sleeps.append((site, time.perf_counter() - t0))
    processutils.execute, time.sleep = execute, sleep
    try:
        yield
    finally:
        processutils.execute, time.sleep = real_exec, real_sleep


# -- os-brick as it comes, for the "before" variant -----------------------------
@contextlib.contextmanager
def brick_as_is() -> Iterator[None]:
    """iscsiattach.host.brick with its speed-ups over os-brick switched off
    (CHAP secrets still kept off argv): the connector from os-brick's
    all-protocol get_connector_properties (six programs), os-brick's own
    looks for the WWN and the disk with their fixed 1 s sleeps after a miss,
    sysfs writes through `tee`, `blockdev --flushbufs`, the scan/CHAP/startup settings, the record
    check, the node and session lists and the discovery database through
    iscsiadm, multipathd always asked."""
    from os_brick.initiator import connector
    from os_brick.initiator.connectors.iscsi import ISCSIConnector
    from os_brick.initiator.linuxscsi import LinuxSCSI
    from oslo_concurrency import processutils

    from iscsiattach.host import brick
    names = ("connector_properties", "wait_for_udev", "wait_for_disk", "echo_scsi_command",
             "RECORD_NODE_KEYS", "iscsi_sessions", "node_records", "_iscsi", "with_target_lists")
    real = {name: getattr(brick, name) for name in names}

    def iscsi(multipath, scan_attempts=5):
        conn = real["_iscsi"](multipath, scan_attempts)
        for name in ("check_multipath", "_run_iscsiadm", "_get_iscsi_nodes"):
            setattr(conn, name, functools.partial(getattr(ISCSIConnector, name), conn))
        conn._linuxscsi.is_multipath_running = LinuxSCSI.is_multipath_running
        conn._linuxscsi.flush_device_io = functools.partial(LinuxSCSI.flush_device_io,
                                                            conn._linuxscsi)
        return conn

    def connector_properties(my_ip, multipath):
        return connector.get_connector_properties("", my_ip or "127.0.0.1", multipath,
                                                  enforce_multipath=False)

    def echo_scsi_command(path, content):      # as os-brick's LinuxSCSI does it
        processutils.execute("tee", "-a", path, process_input=content)
    as_is = {"connector_properties": connector_properties, "echo_scsi_command": echo_scsi_command,
             "wait_for_udev": lambda look, **kw: look, "wait_for_disk": lambda look, **kw: look,
             "RECORD_NODE_KEYS": {}, "iscsi_sessions": lambda: None,
             "node_records": lambda *args, **kwargs: [], "_iscsi": iscsi,
             "with_target_lists": dict}
    for name, value in as_is.items():
        setattr(brick, name, value)
    try:
        yield
    finally:
        for name, value in real.items():
            setattr(brick, name, value)


class TimedBrick:
    """iscsiattach.host.brick with each call timed and os-brick instrumented."""

    def __init__(self, brick, phases: dict[str, Any]) -> None:
        self.brick, self.phases = brick, phases

    def _run(self, name: str, fn, *args):
        rec = Recorder()
        t0 = time.perf_counter()
        with instrumented(rec):
            out = fn(*args)
        self.phases[name] = time.perf_counter() - t0
        self.phases[f"{name}_detail"] = rec.totals()
        return out

    def connector_properties(self, my_ip, multipath):
        return self._run("os_brick_connector", self.brick.connector_properties, my_ip, multipath)

    def connect(self, info, multipath):
        return self._run("os_brick_connect", self.brick.connect, info, multipath)

    def disconnect(self, info, device, multipath, force=False):
        return self._run("os_brick_disconnect", self.brick.disconnect, info, device, multipath,
                         force)


class TimedApi:
    def __init__(self, api, phases: dict[str, Any]) -> None:
        self.api, self.phases = api, phases

    def __getattr__(self, name: str):
        fn = getattr(self.api, name)

        def call(*args):
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.phases[f"api_{name}"] = time.perf_counter() - t0
        return call


def host_side(url: str, token: str, state_dir: str, phases: dict[str, Any]):
    from iscsiattach.cli.client import Client
    from iscsiattach.cli.host import ApiAdapter
    from iscsiattach.host import brick, confirm as confirm_mod
    from iscsiattach.host.attach import HostSide
    brick.setup(os.path.join(state_dir, "locks"))

    def confirm(*args):
        t0 = time.perf_counter()
        try:
            return confirm_mod.confirm(*args)
        finally:
            phases["confirm"] = time.perf_counter() - t0
    return HostSide(TimedApi(ApiAdapter(Client(url, token, "3.54")), phases),
                    TimedBrick(brick, phases), state_dir, confirm=confirm)


def attach_detach(url: str, token: str, state_dir: str, volume_id: str) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    side = host_side(url, token, state_dir, phases)
    t0 = time.perf_counter()
    got = side.attach(volume_id)
    attach = _without_export({**phases, "total": time.perf_counter() - t0},
                             "api_attachment_create")
    phases.clear()
    t0 = time.perf_counter()
    side.detach(got.attachment_id)
    detach = _without_export({**phases, "total": time.perf_counter() - t0},
                             "api_attachment_delete")
    return {"attach": attach, "detach": detach}


def _without_export(phases: dict[str, Any], export_call: str) -> dict[str, Any]:
    """What ours does on top of the floor is the export (the attachment
    create makes the target, LUN, ACL and CHAP; the delete removes them),
    which the floor finds ready: the total without that call, per sample."""
    if export_call in phases:
        phases["without_export"] = phases["total"] - phases[export_call]
    return phases


def cli_attach_detach(env: dict[str, str], volume_id: str) -> dict[str, float]:
    exe = str(Path(sys.executable).with_name("iscsiattach"))
    t0 = time.perf_counter()
    res = subprocess.run([exe, "--format", "json", "attach", volume_id], capture_output=True,
                         text=True, env=env, timeout=900)
    t1 = time.perf_counter()
    if res.returncode != 0:
        raise RuntimeError(f"iscsiattach attach: {res.stderr.strip()[-300:]}")
    import json
    att = json.loads(res.stdout)["attachment_id"]
    res = subprocess.run([exe, "--format", "json", "detach", att], capture_output=True,
                         text=True, env=env, timeout=900)
    t2 = time.perf_counter()
    if res.returncode != 0:
        raise RuntimeError(f"iscsiattach detach: {res.stderr.strip()[-300:]}")
    return {"attach": t1 - t0, "detach": t2 - t1}


STARTUP = (("python", "pass"), ("import_os_brick", "import os_brick.initiator.connector"),
           ("import_host_side", "from iscsiattach.host import brick; "
            "brick.setup('/tmp/iscsiattach-bench/startup-locks'); brick._iscsi(False)"),
           ("import_cli", "import iscsiattach.cli.main"),
           ("import_daemon", "import iscsiattach.cmd.daemon"), ("import_alembic", "import alembic"),
           ("import_rtslib", "import rtslib_fb"))


def python_startup(env: dict[str, str]) -> dict[str, float]:
    """What a new process pays before any work: interpreter + imports."""
    out = {}
    for name, code in STARTUP:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        out[name] = time.perf_counter() - t0
    return out


def summarize_phases(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """p50 per phase (seconds) over runs; details of the last run kept."""
    keys = [k for k, v in runs[0].items() if isinstance(v, float)] if runs else []
    out = {k: summary([r[k] for r in runs if k in r]) for k in keys}
    details = {k: v for k, v in runs[-1].items() if k.endswith("_detail")} if runs else {}
    for k in list(details):
        sub = [r[k] for r in runs if k in r]
        details[k] = {**details[k],
                      "subprocess_s_p50": summary([d["subprocess_s"] for d in sub]),
                      "sleep_s_p50": summary([d["sleep_s"] for d in sub])}
    return {"phases": out, "details": details}
