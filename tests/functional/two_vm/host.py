"""The host guest of tools/two-vm: open-iscsi and `iscsiattach` on 10.213.0.2.

Waits for the storage guest's volume, attaches it with the CLI across the
link, checks the device is that volume and that the session really runs to
10.213.0.1 from 10.213.0.2, writes random data with O_DIRECT and reads it
back, detaches, attaches read-only, reads the same data, detaches. Times
each attach and detach as the host sees them (whole CLI runs under TCG).
"""
from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.functional.two_vm.common import (
    API_PORT,
    API_URL,
    HOST_DONE,
    HOST_IP,
    ISCSI_PORT,
    READY,
    STORAGE_IP,
    TOKEN,
    Failure,
    log,
    results,
    verdict,
    wait_for,
    write_json,
)
from tests.support.scsi import is_write_protected, logical_block_size, refused_write

SIDE = "host"
CLI = Path(sys.executable).with_name("iscsiattach")
SIZE, OFFSET = 4 << 20, 1 << 20


def check(ok: bool, reason: str) -> None:
    if not ok:
        raise Failure(reason)


def cli_env() -> dict:
    return {**os.environ, "ISCSIATTACH_URL": API_URL,
            "ISCSIATTACH_TOKEN_FILE": str(results() / TOKEN),
            "ISCSIATTACH_HOST_STATE": "/tmp/iscsiattach-two-vm-host"}


def cli(*args: str) -> tuple[dict | None, float, list]:
    """Run `iscsiattach --format json ARGS`; its output, wall time, and when
    each of its progress lines (stderr, "... step") arrived."""
    start = time.monotonic()
    proc = subprocess.Popen([str(CLI), "--format", "json", *args], env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    steps, errors = [], []
    for line in proc.stderr:
        line = line.rstrip()
        (steps if line.startswith("... ") else errors).append(
            [round(time.monotonic() - start, 2), line.removeprefix("... ")])
    out = proc.stdout.read()
    proc.wait()
    took = round(time.monotonic() - start, 2)
    check(proc.returncode == 0,
          f"iscsiattach {' '.join(args)} failed ({proc.returncode}): {errors[-1:] or out}")
    return (json.loads(out) if out.strip() else None), took, steps


def wait_for_link() -> float:
    """The storage node's API reachable across the link; seconds it took."""
    start, end = time.monotonic(), time.monotonic() + 120
    while True:
        try:
            socket.create_connection((STORAGE_IP, API_PORT), timeout=5).close()
            return round(time.monotonic() - start, 2)
        except OSError as exc:
            if time.monotonic() > end:
                raise Failure(f"no TCP connection to {STORAGE_IP}:{API_PORT} in 120s: "
                              f"{exc} (did the link come up?)") from None
            time.sleep(1)


def session_facts() -> dict:
    """Where the iSCSI connection goes, from sysfs, iscsiadm and the socket."""
    conns = sorted(Path("/sys/class/iscsi_connection").glob("connection*"))
    sysfs = [{k: (c / k).read_text().strip() for k in ("persistent_address",
                                                      "persistent_port")} for c in conns]
    p3 = subprocess.run(["iscsiadm", "-m", "session", "-P", "3"], capture_output=True,
                        text=True).stdout
    pick = [ln.strip() for ln in p3.splitlines()
            if ln.strip().startswith(("Current Portal:", "Iface IPaddress:"))]
    ss = subprocess.run(["ss", "-tnH", "state", "established", f"( dport = :{ISCSI_PORT} )"],
                        capture_output=True, text=True).stdout.split("\n")
    return {"sysfs": sysfs, "iscsiadm": pick, "tcp": [" ".join(s.split()) for s in ss if s]}


def check_session(facts: dict) -> None:
    check(facts["sysfs"] == [{"persistent_address": STORAGE_IP,
                              "persistent_port": str(ISCSI_PORT)}],
          f"expected one connection to {STORAGE_IP}:{ISCSI_PORT}: {facts['sysfs']}")
    check(f"Iface IPaddress: {HOST_IP}" in facts["iscsiadm"]
          and any(p.startswith(f"Current Portal: {STORAGE_IP}:{ISCSI_PORT}")
                  for p in facts["iscsiadm"]), f"iscsiadm session: {facts['iscsiadm']}")
    check(len(facts["tcp"]) == 1 and f"{HOST_IP}:" in facts["tcp"][0]
          and f"{STORAGE_IP}:{ISCSI_PORT}" in facts["tcp"][0],
          f"the TCP connection is not {HOST_IP} -> {STORAGE_IP}: {facts['tcp']}")


def check_device(got: dict, vid: str, mode: str) -> str:
    dev = got["device"]
    check(got["serial"] == vid and got["mode"] == mode and dev.startswith("/dev/sd"),
          f"attach confirmed something else: {got}")
    sysdev = Path("/sys/block") / Path(dev).name
    check(vid.encode() in (sysdev / "device" / "vpd_pg80").read_bytes(),
          f"{dev}'s unit serial (VPD 0x80) is not {vid}")
    check((sysdev / "ro").read_text().strip() == ("1" if mode == "ro" else "0"),
          f"{dev} read-only flag does not match mode {mode}")
    return dev


def aligned(data: bytes = b"") -> mmap.mmap:
    buf = mmap.mmap(-1, SIZE)     # page aligned, as O_DIRECT wants
    buf.write(data)
    return buf


def write_direct(dev: str) -> str:
    buf = aligned(os.urandom(SIZE))
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    try:
        check(os.pwritev(fd, [buf], OFFSET) == SIZE, "short O_DIRECT write")
        os.fsync(fd)
    finally:
        os.close(fd)
    return hashlib.sha256(buf).hexdigest()


def read_direct(dev: str) -> str:
    buf = aligned()
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    try:
        check(os.preadv(fd, [buf], OFFSET) == SIZE, "short O_DIRECT read")
    finally:
        os.close(fd)
    return hashlib.sha256(buf).hexdigest()


def write_refused(dev: str) -> str:
    """A write to the read-only attachment must fail; the errno it got."""
    try:
        fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
        try:
            os.pwritev(fd, [aligned(b"x" * 4096)], OFFSET)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    raise Failure(f"a write to the read-only attachment {dev} succeeded")


def no_session_left(when: str) -> None:
    left = sorted(p.name for p in Path("/sys/class/iscsi_session").glob("session*"))
    check(not left, f"iSCSI sessions left {when}: {left}")


def attach(vid: str, mode: str, facts: dict) -> tuple[str, str]:
    got, took, steps = cli("attach", vid, "--mode", mode, "--my-ip", HOST_IP)
    facts[f"attach_{mode}"] = {"seconds": took, "steps": steps, "result": got}
    log(SIDE, f"attach {mode}: {took}s -> {got['device']}")
    dev = check_device(got, vid, mode)
    facts[f"session_{mode}"] = session_facts()
    check_session(facts[f"session_{mode}"])
    return got["attachment_id"], dev


def detach(att: str, mode: str, facts: dict) -> None:
    got, took, steps = cli("detach", att)
    facts[f"detach_{mode}"] = {"seconds": took, "steps": steps}
    log(SIDE, f"detach {mode}: {took}s")
    check(got == {"detached": [att]}, f"detach said {got}")
    no_session_left(f"after the {mode} detach")


def run(facts: dict) -> None:
    ready = json.loads(wait_for(results() / READY, 660, "the storage node's volume").read_text())
    vid = facts["volume_id"] = ready["volume_id"]
    route = subprocess.run(["ip", "-o", "route", "get", STORAGE_IP], capture_output=True,
                           text=True).stdout.split()
    facts["route"] = " ".join(route)
    check(os.environ.get("ISCSIATTACH_VM_NET_IF") in route and HOST_IP in route,
          f"the route to {STORAGE_IP} is not the link: {facts['route']}")
    facts["link_wait_s"] = wait_for_link()
    log(SIDE, f"volume {vid} published; {API_URL} reachable via {facts['route']}")
    no_session_left("before attaching")
    att, dev = attach(vid, "rw", facts)
    written = facts["sha256"] = write_direct(dev)
    check(read_direct(dev) == written, "O_DIRECT read-back differs from what was written")
    detach(att, "rw", facts)
    att, dev = attach(vid, "ro", facts)
    check(read_direct(dev) == written, "the read-only attachment reads other data")
    facts["ro_write_errno"] = write_refused(dev)
    # The host's flag refused that one; a WRITE sent past it must be refused
    # by the target itself, across the link.
    answer, _ = refused_write(dev, OFFSET // logical_block_size(dev))
    facts["ro_write_target_sense"] = str(answer.sense) if answer.sense else None
    check(is_write_protected(answer), f"the target did not refuse the write: {answer}")
    check(read_direct(dev) == written, "the refused writes changed the data")
    detach(att, "ro", facts)


def main() -> int:
    facts: dict = {}
    failure = None
    try:
        run(facts)
    except Failure as exc:
        failure = str(exc)
    except Exception as exc:    # noqa: BLE001 - any crash is a verdict, not a hang
        failure = f"{type(exc).__name__}: {exc}"
    if failure and "volume_id" in facts:
        # Leave the storage node clean even so: its own checks then stay meaningful.
        subprocess.run([str(CLI), "detach", "--force", facts["volume_id"]], env=cli_env(),
                       check=False)
    rc = verdict(SIDE, failure, facts)
    write_json(results() / HOST_DONE, {"pass": failure is None})
    return rc


if __name__ == "__main__":
    sys.exit(main())
