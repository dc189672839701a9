"""Hosts keep running while the node goes through what nodes go through.

Two machines on a private link, each a node-vm boot of the same image: the
storage node (10.213.0.1) installs both packages and is configured with the
README's commands; the host (10.213.0.2) installs only the CLI package, with
the README's commands, and runs the README's attach/detach once. Then the
host attaches a volume and keeps it busy for the rest of the run:

- fio writes random 4 KiB blocks with O_SYNC (the target reports a
  write-back cache: only a flushed or FUA write is owed a power cut), a
  crc32c header each, and reads every
  one back for verification as it goes (verify_backlog), fatal on the first
  mismatch; any I/O error ends it too (job error != 0);
- a probe reads one 4 KiB block with O_DIRECT about 4 times a second and
  stamps each completion with the host's clock (probe.log);
- a poller asks the node's GET /healthz 4 times a second and stamps each
  change of answer (health.log); the host's clock again, so every figure
  below is measured on one clock;
- 16 MiB of random data at 512 MiB, its sha256 noted.

The node then goes through each fault in turn: ``systemctl restart
iscsiattachd``; ``systemctl reboot``; (full form) a power cut (qemu killed,
started again on the same disk) and last, the host's own reboot. For each:
fio still running, no I/O error, the same /dev/sdX behind the same by-id
link, the same iSCSI session, the 16 MiB unchanged; measured: seconds from
the fault to the API answering 200 again, to the host's first completed
I/O after the stall, and the longest stall. After the host's reboot:
open-iscsi logged in again by itself (node.startup=automatic) and the data
is there.
"""
from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodelib.qemu import Node, NodeError, copy_in
from nodelib.readme import block

CLI_ENV = """export ISCSIATTACH_URL=https://10.213.0.1:8776/v3
export ISCSIATTACH_CACERT=/etc/iscsiattach/node1.crt
export ISCSIATTACH_TOKEN_FILE=/etc/iscsiattach/api-token
"""
STATE = "/root/survive"          # on the host: the run's logs and pids
DATA_OFFSET_MIB, DATA_MIB = 512, 16
FIO_MIB = 64

HEALTH_POLLER = r'''
import http.client, ssl, sys, time
ctx = ssl.create_default_context(cafile="/etc/iscsiattach/node1.crt")
last = None
while True:
    try:
        c = http.client.HTTPSConnection("10.213.0.1", 8776, timeout=2, context=ctx)
        c.request("GET", "/healthz")
        now = str(c.getresponse().status)
        c.close()
    except Exception as exc:
        now = type(exc).__name__
    if now != last:
        print(f"{time.time():.3f} {now}", flush=True)
        last = now
    time.sleep(0.25)
'''

PROBE = r'''
dev=$1
while :; do
    if dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none \
            skip=$((RANDOM % 16384)); then
        printf '%s ok\n' "$(date +%s.%N)"
    else
        printf '%s error\n' "$(date +%s.%N)"
    fi
    sleep 0.2
done
'''


@dataclass
class Fault:
    name: str
    fault_at: float = 0.0           # host clock, s since the epoch
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostSuite:
    storage: Node
    host: Node
    debs: dict[str, Path]           # "cli", "daemon"
    results: Path
    say: Callable[[str], None]
    full: bool = False
    faults: list[dict] = field(default_factory=list)
    volume: str = ""
    device: str = ""
    by_id: str = ""

    # -- setup ------------------------------------------------------------------
    def boot_both(self) -> dict:
        for node in (self.storage, self.host):
            node.create()
            node.start()
        up = {node.name: round(node.wait_up(900), 1) for node in (self.storage, self.host)}
        for node in (self.storage, self.host):
            node.run("timeout 300 systemctl is-system-running --wait || true", 360)
        # The link: the host must reach the node before anything else matters.
        self.host.run("for i in $(seq 60); do ping -c1 -W1 10.213.0.1 >/dev/null && exit 0; "
                      "done; exit 1", 120)
        return {"up_s": up}

    def install_node(self) -> dict:
        for deb in self.debs.values():
            copy_in(self.storage, deb, f"/root/{deb.name}")
        t0 = time.monotonic()
        out = self.storage.run("cd /root\nexport DEBIAN_FRONTEND=noninteractive\n"
                               + "set -e\n" + block("node-install"), 900).out
        installed = time.monotonic() - t0
        out += self.storage.run("set -e\n" + block("node-configure"), 600).out
        self._save("node-commands.log", out)
        # What the host needs from the node: its certificate and the token,
        # carried through this machine's private share only for the copy.
        take = self.storage.share / "out"
        take.mkdir(mode=0o700, exist_ok=True)
        self.storage.run("install -m 0600 /etc/iscsiattach/tls.crt /mnt/host/out/node1.crt\n"
                         "install -m 0600 /var/lib/iscsiattach/api-token /mnt/host/out/api-token")
        try:
            copy_in(self.host, take / "node1.crt", "/root/node1.crt", mode="0644")
            copy_in(self.host, take / "api-token", "/root/api-token", mode="0600")
        finally:
            for f in take.iterdir():
                f.unlink()
        return {"apt_install_and_start_s": round(installed, 1)}

    def install_host(self) -> dict:
        deb = self.debs["cli"]
        copy_in(self.host, deb, f"/root/{deb.name}")
        out = self.host.run("cd /root\nexport DEBIAN_FRONTEND=noninteractive\n"
                            + "set -e\n" + block("host-install"), 900).out
        daemon = self.host.run("systemctl cat iscsiattachd >/dev/null 2>&1 && echo present "
                               "|| echo absent").out.strip()
        self._save("host-install.log", out)
        if daemon != "absent":
            raise NodeError("the host got an iscsiattachd unit from the CLI package")
        return {"daemon_unit_on_host": daemon}

    def readme_attach(self) -> dict:
        """The README's attach/detach block, verbatim, on the host."""
        res = self.host.run("set -e\n" + block("host-attach"), 900)
        self._save("host-attach.log", res.out)
        left = self.host.run("iscsiadm -m session 2>&1 || true").out.strip()
        if "10.213.0.1" in left:
            raise NodeError(f"a session is left after the README's detach: {left}")
        return {"seconds": round(res.seconds, 1)}

    # -- the live host -----------------------------------------------------------
    def start_load(self) -> dict:
        h = self.host
        (h.share / "health.py").write_text(HEALTH_POLLER)
        (h.share / "probe.sh").write_text(PROBE)
        out = h.run(CLI_ENV + f"""mkdir -p {STATE}
field() {{ python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }}
vol=$(iscsiattach --format json volume-create 1 --name survive | field id)
iscsiattach --format json attach "$vol" > {STATE}/attach.json
dev=$(field device < {STATE}/attach.json)
byid=$(field stable_path < {STATE}/attach.json)
echo "$vol $dev $byid" > {STATE}/volume
head -c {DATA_MIB}M /dev/urandom > {STATE}/data
dd if={STATE}/data of="$dev" bs=1M seek={DATA_OFFSET_MIB} oflag=direct conv=fsync status=none
sha256sum < {STATE}/data | cut -d' ' -f1 > {STATE}/data.sha256
cp /mnt/host/health.py /mnt/host/probe.sh {STATE}/
setsid python3 {STATE}/health.py > {STATE}/health.log 2>&1 < /dev/null &
echo $! > {STATE}/health.pid
setsid bash {STATE}/probe.sh "$dev" > {STATE}/probe.log 2>&1 < /dev/null &
echo $! > {STATE}/probe.pid
setsid fio --name=survive --filename="$dev" --direct=1 --ioengine=libaio --iodepth=4 \
    --rw=randwrite --bs=4k --size={FIO_MIB}M --sync=1 --verify=crc32c --verify_backlog=64 \
    --verify_fatal=1 --time_based --runtime=7200 --output-format=json \
    --output={STATE}/fio.json > {STATE}/fio.out 2>&1 < /dev/null &
echo $! > {STATE}/fio.pid
sleep 5
kill -0 "$(cat {STATE}/fio.pid)" || {{ echo "fio is not running:"; cat {STATE}/fio.out; exit 1; }}
""", 600).out
        self._save("start-load.log", out)
        fields = self.host.run(f"cat {STATE}/volume").out.split()
        if len(fields) != 3:
            raise NodeError(f"no volume, device and by-id link (got {fields}); output:\n"
                            + out[-3000:])
        self.volume, self.device, self.by_id = fields
        disk = self.device.rsplit("/", 1)[1]
        # The cache the target reports (WCE) and whether it takes FUA: with a
        # write-back cache only flushed or FUA writes are owed a power cut.
        cache = self.host.run(f"cat /sys/block/{disk}/device/scsi_disk/*/cache_type "
                              f"/sys/block/{disk}/queue/fua").out.split()
        return {"volume": self.volume, "device": self.device, "by_id": self.by_id,
                "cache_type_and_fua": cache, "session": self.session()}

    def session(self) -> str:
        return self.host.run("iscsiadm -m session 2>&1 | grep 10.213.0.1 || true").out.strip()

    def now_on_host(self) -> float:
        return float(self.host.run("date +%s.%N").out.strip())

    def after_fault(self, fault: Fault, timeout: float = 300) -> dict:
        """Wait for the API and the I/O to come back; the fault's figures."""
        deadline = time.monotonic() + timeout
        while True:
            health = self._health_since(fault.fault_at)
            probes = self._probes_since(fault.fault_at)
            ready = _first_ready(health)
            resumed = _resumed(probes, ready)
            if ready is not None and resumed is not None:
                break
            if time.monotonic() > deadline:
                raise NodeError(f"{fault.name}: after {timeout:.0f} s the API "
                                f"{'answers' if ready else 'does not answer'} and the host's "
                                f"I/O {'resumed' if resumed else 'has not resumed'}")
            time.sleep(2)
        errors = [p for p in probes if p[1] != "ok"]
        gaps = [b[0] - a[0] for a, b in zip(probes, probes[1:], strict=False)]
        state = self.host_state()
        return {"api_ready_s": round(ready - fault.fault_at, 2),
                "first_io_after_s": round(resumed - fault.fault_at, 2),
                "longest_stall_s": round(max(gaps, default=0.0), 2),
                "probe_errors": len(errors), "health_answers": health[:12], **state}

    def host_state(self) -> dict:
        """fio alive, the device and session unchanged, the data intact."""
        out = self.host.run(f"""kill -0 "$(cat {STATE}/fio.pid)" && echo fio-running \
    || echo fio-gone
readlink -f {shlex.quote(self.by_id)}
dd if={shlex.quote(self.device)} bs=1M skip={DATA_OFFSET_MIB} count={DATA_MIB} iflag=direct \
    status=none | sha256sum | cut -d' ' -f1
cat {STATE}/data.sha256
""", 300).out.split()
        fio, device, sha_now, sha_then = out[-4:]
        state = {"fio": fio, "device": device, "data_unchanged": sha_now == sha_then,
                 "session": self.session()}
        if fio != "fio-running":
            raise NodeError(f"fio stopped: {self._fio_tail()}")
        if device != self.device:
            raise NodeError(f"{self.by_id} now points at {device}, was {self.device}")
        if sha_now != sha_then:
            raise NodeError("the 16 MiB written before the faults read back different")
        return state

    def restart(self) -> None:
        self.storage.run("systemctl restart iscsiattachd", 600)

    def reboot(self) -> None:
        self.storage.reboot()
        self.storage.wait_up(900)

    def power_cut(self) -> None:
        self.storage.power_cut()
        self.storage.start()
        self.storage.wait_up(900)

    def node_fault(self, name: str, act: Callable[[], None], baseline_session: str) -> dict:
        fault = Fault(name, fault_at=self.now_on_host())
        act()
        evidence = self.after_fault(fault)
        if evidence["session"] != baseline_session:
            raise NodeError(f"the host's session changed: {baseline_session!r} -> "
                            f"{evidence['session']!r}")
        if evidence["probe_errors"]:
            raise NodeError(f"{evidence['probe_errors']} probe reads failed with an I/O error")
        return evidence

    def stop_load(self) -> dict:
        """fio asked to stop; its own account: no error, something verified."""
        out = self.host.run(f"""for p in fio probe health; do
    kill -INT "$(cat {STATE}/$p.pid)" 2>/dev/null
done
for i in $(seq 120); do kill -0 "$(cat {STATE}/fio.pid)" 2>/dev/null || break; sleep 1; done
cat {STATE}/fio.json""", 300).out
        report = json.loads(out[out.index("{"):])
        job = report["jobs"][0]
        self._save("fio.json", json.dumps(report, indent=1))
        figures = {"error": job["error"], "written_mib": round(job["write"]["io_kbytes"] / 1024, 1),
                   "verified_mib": round(job["read"]["io_kbytes"] / 1024, 1),
                   "runtime_s": round(job["job_runtime"] / 1000, 1)}
        if job["error"] != 0:
            raise NodeError(f"fio ended with error {job['error']}: {self._fio_tail()}")
        if figures["verified_mib"] <= 0:
            raise NodeError("fio verified nothing")
        return figures

    def host_reboot(self) -> dict:
        """The host reboots: open-iscsi logs in by itself, the data is there."""
        t0 = time.monotonic()
        self.host.reboot()
        self.host.wait_up(900)
        out = self.host.run(f"""for i in $(seq 120); do
    [ -e {shlex.quote(self.by_id)} ] && break; sleep 1
done
iscsiadm -m node -T "$(iscsiadm -m session | grep -o 'iqn[^ ]*' | head -1)" 2>/dev/null \
    | grep '^node.startup' || true
readlink -f {shlex.quote(self.by_id)}
dd if={shlex.quote(self.by_id)} bs=1M skip={DATA_OFFSET_MIB} count={DATA_MIB} iflag=direct \
    status=none | sha256sum | cut -d' ' -f1
cat {STATE}/data.sha256
""", 300).out.split("\n")
        lines = [ln for ln in out if ln.strip()]
        sha_now, sha_then = lines[-2], lines[-1]
        if sha_now != sha_then:
            raise NodeError("after the host's reboot the data read back different")
        return {"logged_in_again_s": round(time.monotonic() - t0, 1),
                "node_startup": [ln for ln in lines if ln.startswith("node.startup")],
                "device": lines[-3], "session": self.session()}

    def detach(self) -> None:
        self.host.run(CLI_ENV + f"iscsiattach detach {self.volume}\n"
                      f"iscsiattach volume-delete {self.volume}", 600)

    # -- plumbing ----------------------------------------------------------------
    def _read_host(self, name: str) -> str:
        return self.host.run(f"cat {STATE}/{name} 2>/dev/null || true", 120).out

    def _health_since(self, t: float) -> list[tuple[float, str]]:
        rows = [ln.split() for ln in self._read_host("health.log").splitlines()]
        return [(float(a), b) for a, b in (r for r in rows if len(r) == 2) if float(a) >= t]

    def _probes_since(self, t: float) -> list[tuple[float, str]]:
        rows = [ln.split() for ln in self._read_host("probe.log").splitlines()]
        return [(float(a), b) for a, b in (r for r in rows if len(r) == 2) if float(a) >= t]

    def _fio_tail(self) -> str:
        return self._read_host("fio.out")[-1500:]

    def _save(self, name: str, text: str) -> None:
        (self.results / name).write_text(text)


def _first_ready(health: list[tuple[float, str]]) -> float | None:
    """When the API answered 200 again: the first 200 after the first other
    answer (the poller logs changes only); the first 200 if it never saw one
    (a restart shorter than its 0.25 s)."""
    down = next((i for i, (_, s) in enumerate(health) if s != "200"), None)
    after = health[down:] if down is not None else health
    return next((t for t, s in after if s == "200"), None)


def _resumed(probes: list[tuple[float, str]], ready: float | None) -> float | None:
    """The host's first completed read at or after the API was ready."""
    if ready is None:
        return None
    return next((t for t, s in probes if t >= ready and s == "ok"), None)


def run(image, debs: dict[str, Path], out: Path, full: bool, boot_timeout: float,
        say: Callable[[str], None]) -> dict:
    """Both machines booted, every step in order; the report (pass, steps)."""
    import shutil
    import tempfile

    from nodelib.qemu import Link, Slots

    slots = Slots(2, say)
    links = Path(tempfile.mkdtemp(prefix="iscsiattach-hosts."))
    storage = Node("node1", image, out / "node1", cpus=1, boot_timeout=boot_timeout,
                   link=Link(links / "node1.sock", links / "host1.sock", "10.213.0.1/24"))
    host = Node("host1", image, out / "host1", cpus=1, boot_timeout=boot_timeout,
                link=Link(links / "host1.sock", links / "node1.sock", "10.213.0.2/24"))
    suite = HostSuite(storage, host, debs, out, say, full)
    steps: list[dict] = []

    def step(name: str, fn: Callable[[], dict]) -> dict:
        say(f"{name} ...")
        t0 = time.monotonic()
        try:
            evidence = fn()
        except Exception as exc:
            steps.append({"name": name, "pass": False,
                          "reason": f"{type(exc).__name__}: {exc}"[:4000],
                          "seconds": round(time.monotonic() - t0, 1)})
            say(f"{name}: FAIL: {exc}")
            raise
        steps.append({"name": name, "pass": True, "evidence": evidence,
                      "seconds": round(time.monotonic() - t0, 1)})
        say(f"{name}: PASS ({steps[-1]['seconds']} s) {json.dumps(evidence)[:300]}")
        return evidence

    try:
        step("boot", suite.boot_both)
        step("node-install", suite.install_node)
        step("host-install", suite.install_host)
        step("readme-attach-detach", suite.readme_attach)
        session = step("start-load", suite.start_load)["session"]
        faults = [("restart", suite.restart), ("reboot", suite.reboot)]
        if full:
            faults.append(("power-cut", suite.power_cut))
        for name, act in faults:
            step(f"node-{name}", lambda name=name, act=act: suite.node_fault(name, act, session))
        step("fio-verdict", suite.stop_load)
        if full:
            step("host-reboot", suite.host_reboot)
        step("detach", lambda: (suite.detach(), {})[1])
    except Exception:      # noqa: BLE001 - recorded in steps; the machines still go down
        pass
    finally:
        for node in (host, storage):
            node.poweroff()
            node.kill()
            (node.folder / "disk.qcow2").unlink(missing_ok=True)
        slots.release()
        shutil.rmtree(links, ignore_errors=True)
    failed = [s["name"] for s in steps if not s["pass"]]
    return {"pass": bool(steps) and not failed and steps[-1]["name"] == "detach",
            "failed": failed, "steps": steps}
