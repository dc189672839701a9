"""The node suite: the .deb installed and run as an operator would, each
behaviour checked on the node with the evidence kept.

Every check returns what it saw (systemd's own properties and timestamps,
the daemon's journal, LIO's configfs) and fails with a reason when that
contradicts what it should be. One node, one disk, checks in order: later
ones build on the state earlier ones left (installed, configured, N exports).
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodelib.deb import with_siblings
from nodelib.qemu import Node, copy_in

GUEST = "/usr/bin/python3 /mnt/host/guest.py"
KERNEL_START = r"\[ +0\.000000\] Linux version"   # the kernel's first line
UNIT = "iscsiattachd"
TARGETCTL = "rtslib-fb-targetctl"
CONF = "/etc/iscsiattach/iscsiattach.conf"
TLS_DIR = "/etc/iscsiattach/tls"
PREFIX = "iqn.2010-10.org.openstack:"     # the shipped default [lio] target_prefix
TOKEN = "/var/lib/iscsiattach/api-token"  # the default: <state_path>/api-token
SAVED = "/etc/rtslib-fb-target/saveconfig.json"   # Debian's targetctl save/restore file


class CheckFailed(AssertionError):
    pass


class Abort(Exception):
    """A check the rest depends on failed."""


def expect(condition: bool, reason: str) -> None:
    if not condition:
        raise CheckFailed(reason)


@dataclass
class Settings:
    exports: int = 10            # exports during the behaviour checks
    scale: int = 0               # --full: exports for the boot-time measurement
    interval: int = 20           # [reconciler] interval on the node
    watchdog_sec: int = 10       # WatchdogSec of the watchdog check's drop-in
    max_exposure: float = 3.0    # systemd-analyze security goal


@dataclass
class Suite:
    node: Node
    deb: Path
    settings: Settings
    results: Path
    say: Callable[[str], None]
    checks: list[dict] = field(default_factory=list)
    started_config_at: float = 0.0

    @property
    def url(self) -> str:
        assert self.node.link is not None
        return f"https://{self.node.link.ip}:8776/v3"

    # -- plumbing -----------------------------------------------------------
    def check(self, name: str, fn: Callable[[], dict], fatal: bool = False) -> dict | None:
        self.say(f"check {name} ...")
        t0 = time.monotonic()
        record: dict[str, Any] = {"name": name}
        try:
            record["evidence"] = fn()
            record["pass"] = True
        except CheckFailed as exc:
            record.update({"pass": False, "reason": str(exc)})
        except Exception as exc:        # noqa: BLE001 - a crash is a failed check, with why
            record.update({"pass": False, "reason": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()[-3000:]})
        record["seconds"] = round(time.monotonic() - t0, 1)
        if not record["pass"]:
            record["unit_journal"] = self.journal_tail()
        self.checks.append(record)
        self.say(f"check {name}: {'PASS' if record['pass'] else 'FAIL'} "
                 f"({record['seconds']} s)" + ("" if record["pass"] else f": {record['reason']}"))
        if not record["pass"] and fatal:
            raise Abort(name)
        return record.get("evidence")

    def journal_tail(self) -> list[str]:
        """The daemon's last journal lines, to say why a check failed."""
        try:
            return self.sh(f"journalctl -b -u {UNIT} -n 25 --no-pager -o short-monotonic",
                           timeout=60, check=False).splitlines()
        except Exception as exc:       # noqa: BLE001 - the node may be gone
            return [f"(no journal: {exc})"[:300]]

    def multi_user(self) -> float:
        """When this boot reached multi-user.target (s, CLOCK_MONOTONIC).
        (systemd's own time: its status lines stop on the serial console once
        a getty holds it.)"""
        return round(int(self.props("multi-user.target")["ActiveEnterTimestampMonotonic"])
                     / 1e6, 2)

    def sh(self, script: str, timeout: float = 600, check: bool = True) -> str:
        return self.node.run(script, timeout, check).out

    def guest(self, args: str, timeout: float = 600) -> Any:
        """guest.py's JSON answer (its last line)."""
        out = self.sh(f"{GUEST} {args}", timeout)
        return json.loads(out.strip().splitlines()[-1])

    def guest_lines(self, script: str, timeout: float = 600) -> list[Any]:
        """Every JSON line a script of several guest.py calls printed."""
        out = self.sh(script, timeout)
        return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]

    def props(self, unit: str = UNIT) -> dict[str, str]:
        return self.guest(f"unit {unit}")

    def exports(self) -> dict:
        found = self.guest(f"exports {PREFIX}")
        found.pop("names", None)
        return found

    def mono(self, text: str, unit: str = UNIT, after: float = 0.0) -> float | None:
        """When (CLOCK_MONOTONIC s) the unit's journal first said text, this
        boot, at or after ``after``."""
        return self.guest(f"journal {unit} {shlex.quote(text)} {after}")["monotonic"]

    def save(self, name: str, text: str) -> None:
        (self.results / name).write_text(text)

    # -- checks -------------------------------------------------------------
    def boot(self) -> dict:
        node = self.node
        node.create()
        (node.share / "guest.py").write_text((Path(__file__).parent / "guest.py").read_text())
        node.start()
        up = node.wait_up(600)
        state = self.sh("timeout 300 systemctl is-system-running --wait", check=False).strip()
        failed = self.sh("systemctl --failed --no-legend --plain", check=False).strip()
        pid1 = self.sh("cat /proc/1/comm").strip()
        expect(pid1 == "systemd", f"PID 1 is {pid1}, not systemd")
        expect(state == "running", f"system state {state}; failed units: {failed}")
        return {"pid1": pid1, "state": state, "agent_up_s": round(up, 1),
                "multi_user_s": self.multi_user(),
                "systemd_analyze": self.sh("systemd-analyze").splitlines()[0],
                "kernel": self.sh("uname -r").strip(),
                "python3": self.sh("python3 --version").strip()}

    def install(self) -> dict:
        routes = self.sh("ip -4 route; ip -6 route", check=False).strip()
        expect("default" not in routes, f"the node has a default route: {routes}")
        debs = with_siblings(self.deb)
        for deb in debs:
            copy_in(self.node, deb, f"/root/{deb.name}")
        names = " ".join(f"./{shlex.quote(d.name)}" for d in debs)
        t0 = time.monotonic()
        res = self.node.run(f"cd /root && DEBIAN_FRONTEND=noninteractive "
                            f"apt-get install -y {names}", 900, check=False)
        took = time.monotonic() - t0
        self.save("apt-install.log", res.out)
        expect(res.rc == 0, f"apt-get install {names} failed offline (exit {res.rc}): "
                            + res.out[-1500:])
        status = self.sh("dpkg-query -W -f '${Status} ${Version}' iscsiattach")
        expect(status.startswith("install ok installed"), f"dpkg says: {status}")
        after = self.sh(f"systemctl is-enabled {UNIT}; systemctl is-active {UNIT}", check=False)
        return {"routes": routes, "debs": [d.name for d in debs], "apt_s": round(took, 1),
                "dpkg": status,
                "apt_tail": res.out.strip().splitlines()[-3:],
                "unit_after_install": after.split(),
                "version": self.sh("iscsiattach --version", check=False).strip(),
                "files": self.sh(f"ls -l /usr/bin/iscsiattachd /usr/bin/iscsiattach {CONF} "
                                 "/lib/systemd/system/iscsiattachd.service", check=False)
                         .strip().splitlines()}

    def security(self) -> dict:
        out = self.sh(f"systemd-analyze security {UNIT}.service --no-pager", check=False)
        self.save("security.txt", out)
        m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\S+)", out)
        expect(m is not None, "no exposure level in systemd-analyze security's output")
        assert m is not None
        score = float(m.group(1))
        unit = self.sh(f"systemctl cat {UNIT}")
        self.save("iscsiattachd.service.txt", unit)
        evidence = {"exposure": score, "rating": m.group(2),
                    "goal": self.settings.max_exposure, "report": "security.txt"}
        expect(score <= self.settings.max_exposure,
               f"exposure {score} {m.group(2)} over the goal {self.settings.max_exposure}")
        return evidence

    def configure(self) -> dict:
        link = self.node.link
        assert link is not None
        cert, key = make_cert(self.results / "tls", link.ip)
        copy_in(self.node, cert, f"{TLS_DIR}/api-cert.pem")
        copy_in(self.node, key, f"{TLS_DIR}/api-key.pem", mode="0600")
        self.sh(f"chmod 0700 {TLS_DIR} && test -f {CONF}")
        for section, key_, value in (
                ("api", "listen", link.ip), ("api", "tls_cert_file", f"{TLS_DIR}/api-cert.pem"),
                ("api", "tls_key_file", f"{TLS_DIR}/api-key.pem"),
                ("lio", "portals", link.ip),
                ("reconciler", "interval", str(self.settings.interval)),
                ("volumes", "backend", "file")):
            self.guest(f"set-option {CONF} {section} {key_} {shlex.quote(value)}")
        self.save("iscsiattach.conf", self.sh(f"grep -v '^#' {CONF} | grep -v '^$'"))
        self.started_config_at = self.exports()["uptime"]
        # enable --now, and a restart in case the package's own scripts had
        # started it already with the shipped settings.
        t0 = time.monotonic()
        self.sh(f"systemctl enable --now {UNIT}", timeout=900)
        was = self.props()
        if int(was["ExecMainStartTimestampMonotonic"]) / 1e6 < self.started_config_at:
            self.sh(f"systemctl restart {UNIT}", timeout=900)
        took = time.monotonic() - t0
        props = self.props()
        expect(props["ActiveState"] == "active", f"{UNIT} is {props['ActiveState']}")
        # The CLI as an operator runs it: HTTPS to the node's address, the
        # certificate checked against ours, the token from its default file.
        status = self.sh(f"iscsiattach --url {self.url} --cacert {TLS_DIR}/api-cert.pem "
                         "--format json status", check=False)
        try:
            health = json.loads(status)
        except ValueError:
            health = {}
        expect(health.get("ready") is True, f"iscsiattach status over TLS: {status}")
        return {"enable_now_s": round(took, 1), "status_over_tls": health,
                "listening": self.sh("ss -ltnp | grep -E ':8776|:3260' || true").strip()
                                 .splitlines()}

    def populate(self, n: int) -> dict:
        have = self.exports()["whole"]
        made = None
        if n > have:
            made = self.guest(f"populate {n - have} {self.url} {TLS_DIR}/api-cert.pem {TOKEN}",
                              timeout=120 + 10 * (n - have))
        found = self.guest(f"wait-exports {PREFIX} {n} 120")
        found.pop("names", None)
        expect(found["whole"] == n, f"{found['whole']} exports, not {n}")
        return {"had": have, "created": made, "exports": found}

    def ready_after_restore(self) -> dict:
        """Active only once the restore is done: LIO emptied, then a start."""
        n = self.settings.exports
        self.sh(f"systemctl stop {UNIT} && targetctl clear")
        before = self.exports()
        expect(before["count"] == 0, f"LIO still holds {before['count']} exports after clear")
        watch = self.guest(f"watch-start {UNIT} {PREFIX} 900", timeout=960)
        props = self.props()
        expect(props["ActiveState"] == "active", f"{UNIT} ended {props['ActiveState']}")
        early = [c for c in watch["changes"] if c[1] == "active" and c[2] < n]
        expect(not early, f"active with fewer than {n} exports: {early}")
        first_active = next(c for c in watch["changes"] if c[1] == "active")
        active = int(props["ActiveEnterTimestampMonotonic"]) / 1e6
        started = int(props["ExecMainStartTimestampMonotonic"]) / 1e6
        # This start's lines only (the journal also holds earlier starts').
        restore = self.mono("LIO holds nothing of ours", after=started)
        reconciled = self.mono(f"reconcile: {n} volumes", after=started)
        listening = self.mono("listening on", after=started)
        expect(None not in (restore, reconciled, listening),
               f"journal lines missing: restore {restore}, reconciled {reconciled}, "
               f"listening {listening}")
        assert restore is not None and reconciled is not None and listening is not None
        expect(started < restore <= reconciled <= listening <= active,
               f"order: start {started}, restore {restore}, reconciled {reconciled}, "
               f"listening {listening}, active {active}")
        status = self.sh(f"systemctl status {UNIT} --no-pager -n 0", check=False)
        line = next((ln.strip() for ln in status.splitlines() if "Status:" in ln), "")
        expect("reconciled" in line, f"no STATUS= line in systemctl status: {status}")
        return {"exports_before_start": before["count"], "changes": watch["changes"],
                "first_active": first_active,
                "s_after_exec_start": {"restore_begins": round(restore - started, 2),
                                       "reconciled": round(reconciled - started, 2),
                                       "listening": round(listening - started, 2),
                                       "active": round(active - started, 2)},
                "status_line": line}

    def kill9(self) -> dict:
        n = self.settings.exports
        before = self.props()
        pid, restarts = before["MainPID"], int(before["NRestarts"])
        sent, during, after = self.guest_lines(
            f"{GUEST} signal {pid} KILL && {GUEST} exports {PREFIX} && "
            f"{GUEST} wait-restart {UNIT} {pid} 600", timeout=660)
        now = self.exports()
        expect(int(after["NRestarts"]) == restarts + 1,
               f"NRestarts {before['NRestarts']} -> {after['NRestarts']}")
        expect(during["whole"] == n, f"{during['whole']} of {n} exports while the daemon was down")
        expect(now["whole"] == n, f"{now['whole']} of {n} exports after the restart")
        return {"pid": [pid, after["MainPID"]], "NRestarts": [restarts, int(after["NRestarts"])],
                "exports_while_down": during["whole"], "exports_after": now["whole"],
                "restart_s": round(int(after["ActiveEnterTimestampMonotonic"]) / 1e6
                                   - sent["at"], 2)}

    def stop_leaves_exports(self) -> dict:
        n = self.settings.exports
        t0 = time.monotonic()
        self.sh(f"systemctl stop {UNIT}")
        took = time.monotonic() - t0
        state = self.sh(f"systemctl is-active {UNIT}", check=False).strip()
        found = self.exports()
        expect(state == "inactive", f"after stop the unit is {state}")
        expect(found["whole"] == n, f"{found['whole']} of {n} exports after stop: {found}")
        portal = self.sh("for d in /sys/kernel/config/target/iscsi/*/tpgt_1/np/*; do "
                         "basename \"$d\"; done | sort | uniq -c")
        self.sh(f"systemctl start {UNIT}", timeout=900)
        return {"stop_s": round(took, 1), "state": state, "exports": found["whole"],
                "portals": portal.strip().splitlines(), "result": self.props()["Result"]}

    def watchdog(self) -> dict:
        """SIGSTOP: no pings, systemd's watchdog kills and restarts it. Under a
        drop-in with a short WatchdogSec, after first showing that a healthy
        daemon is NOT restarted by it (its pings arrive)."""
        n, w = self.settings.exports, self.settings.watchdog_sec
        drop = f"/run/systemd/system/{UNIT}.service.d/50-node-vm-watchdog.conf"
        self.sh(f"mkdir -p $(dirname {drop}) && printf '[Service]\\nWatchdogSec={w}s\\n' > {drop}"
                f" && systemctl daemon-reload && systemctl restart {UNIT}", timeout=900)
        try:
            healthy = self.props()
            expect(healthy["WatchdogUSec"] in (f"{w}s", str(w * 1_000_000)),
                   f"WatchdogUSec {healthy['WatchdogUSec']}")
            self.sh(f"sleep {3 * w}")
            still = self.props()
            expect(still["MainPID"] == healthy["MainPID"] and
                   still["NRestarts"] == healthy["NRestarts"],
                   f"a healthy daemon was restarted within {3 * w} s: pings do not arrive")
            pid, restarts = still["MainPID"], int(still["NRestarts"])
            sent, after = self.guest_lines(
                f"{GUEST} signal {pid} STOP && {GUEST} wait-restart {UNIT} {pid} 600",
                timeout=660)
            timeout_at = self.mono("Watchdog timeout", after=sent["at"])
            expect(timeout_at is not None, "no 'Watchdog timeout' in the unit's journal")
            assert timeout_at is not None
            expect(int(after["NRestarts"]) == restarts + 1,
                   f"NRestarts {restarts} -> {after['NRestarts']}")
            found = self.exports()
            expect(found["whole"] == n, f"{found['whole']} of {n} exports after the restart")
            killed = self.sh(f"journalctl -b -u {UNIT} --no-pager -o cat | "
                             "grep -E 'Watchdog timeout|Killing process|SIGABRT|SIGKILL|"
                             "Main process exited' | tail -4", check=False).strip().splitlines()
            return {"WatchdogSec": w, "healthy_kept_s": 3 * w,
                    "stopped_at": sent["at"],
                    "watchdog_timeout_after_s": round(timeout_at - sent["at"], 1),
                    "active_again_after_s": round(int(after["ActiveEnterTimestampMonotonic"])
                                                  / 1e6 - sent["at"], 1),
                    "NRestarts": [restarts, int(after["NRestarts"])], "journal": killed,
                    "exports_after": found["whole"]}
        finally:
            self.sh(f"rm -f {drop} && systemctl daemon-reload && systemctl restart {UNIT}",
                    timeout=900, check=False)

    def targetctl_stop(self) -> dict:
        """Debian's rtslib-fb-targetctl: `targetctl clear` at stop wipes all
        of LIO, ours included; our reconciler brings ours back."""
        n, interval = self.settings.exports, self.settings.interval
        self.save("rtslib-fb-targetctl.service.txt", self.sh(f"systemctl cat {TARGETCTL}"))
        state = self.sh(f"systemctl is-enabled {TARGETCTL}; systemctl is-active {TARGETCTL}",
                        check=False).split()
        before = self.exports()
        stopped, gone, back = self.guest_lines(
            f"{GUEST} exports {PREFIX} && systemctl stop {TARGETCTL} && "
            f"{GUEST} exports {PREFIX} && {GUEST} wait-exports {PREFIX} {n} {interval + 120}",
            timeout=interval + 180)
        self.sh(f"systemctl start {TARGETCTL}")
        again = self.exports()
        expect(gone["count"] == 0, f"after the stop LIO still held {gone['count']} of ours")
        expect(back["waited_s"] <= interval + 30,
               f"exports back after {back['waited_s']} s, over the interval {interval} s")
        expect(again["whole"] == n, f"{again['whole']} of {n} after starting {TARGETCTL} again")
        return {"targetctl_enabled_active": state, "exports_before": before["whole"],
                "right_after_stop": gone["count"], "back_after_s": back["waited_s"],
                "reconcile_interval": interval, "after_start_again": again["whole"],
                "saveconfig": self.sh("ls -l /etc/rtslib-fb-target/ 2>&1", check=False).strip()}

    def reboot(self, label: str) -> dict:
        n = self.exports()["whole"]
        enabled = self.sh(f"systemctl is-enabled {UNIT} {TARGETCTL}", check=False).split()
        down_s = self.node.reboot()
        return {"enabled": enabled, "reboot_cmd_to_qemu_exit_s": round(down_s, 1),
                **self.after_boot(n, label)}

    def after_boot(self, n: int, label: str) -> dict:
        """A new boot: the daemon up by itself, every export back, and when."""
        up = self.node.wait_up(900)
        self.sh(f"timeout 1200 bash -c 'until systemctl is-active -q {UNIT}; do "
                f"systemctl is-failed -q {UNIT} && exit 1; sleep 0.5; done'", timeout=1260)
        found = self.exports()
        props = self.props()
        tctl = self.props(TARGETCTL)
        analyze = self.sh("systemd-analyze", check=False).splitlines()
        restore = self.mono("LIO holds nothing of ours")
        reconciled = self.mono(" volumes, ", after=restore or 0.0)
        line = self.sh(f"journalctl -b -u {UNIT} -o cat --no-pager | grep -m1 ' volumes, '",
                       check=False).strip()
        self.save(f"journal-{label}.txt", self.sh("journalctl -b --no-pager -o short-monotonic",
                                                  check=False))
        expect(found["whole"] == n, f"{found['whole']} of {n} exports after the boot")
        # Started once, cleanly: not after failed attempts (say, binding
        # an address the network had not brought up yet).
        expect(props["NRestarts"] == "0", f"NRestarts {props['NRestarts']} after the boot")
        mono = {k: round(int(props[k]) / 1e6, 2) for k in
                ("ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")}
        return {"boot": self.node.boots, "exports": found["whole"], "others": found["others"],
                "agent_up_s": round(up, 1),
                "multi_user_s": self.multi_user(),
                # Power-on (qemu's start) to ready: the kernel's clock starts
                # at its first line on the serial console.
                "power_on_to_ready_s": round((self.node.serial_mark(KERNEL_START) or 0)
                                             + mono["ActiveEnterTimestampMonotonic"], 2),
                "systemd_analyze": analyze[0] if analyze else "",
                "iscsiattachd_monotonic_s": mono,
                "targetctl_active_enter_s": round(int(tctl.get("ActiveEnterTimestampMonotonic",
                                                               "0")) / 1e6, 2),
                "restore_begins_s": restore, "restore_done_s": reconciled,
                "first_reconcile": line,
                "NRestarts": props["NRestarts"], "footprint": footprint(props)}

    def targetctl_saved_reboot(self) -> dict:
        """A saveconfig.json (as `targetcli saveconfig` or `targetctl save`
        leaves) is restored at boot with clear_existing: both units enabled,
        our exports must still be whole after the boot."""
        n = self.exports()["whole"]
        self.sh("targetctl save")
        saved = self.sh(f"stat -c '%a %s' {SAVED} && "
                        f"grep -c '\"chap_password\": \"[^\"]' {SAVED}",
                        check=False).split()
        try:
            result = self.reboot("targetctl-saved")
            tjournal = self.sh(f"journalctl -b -u {TARGETCTL} -o short-monotonic --no-pager",
                               check=False).strip().splitlines()
            ours = result["iscsiattachd_monotonic_s"]["ExecMainStartTimestampMonotonic"]
            expect(ours >= result["targetctl_active_enter_s"],
                   f"iscsiattachd started at {ours} s, before targetctl restore finished "
                   f"({result['targetctl_active_enter_s']} s): it can clear our exports")
            return {"saveconfig_mode_size_chap_secrets": saved, **result,
                    "targetctl_journal": tjournal[-4:], "exports_expected": n}
        finally:
            # Durable now: a power cut soon after must not bring it back
            # (ext4 commits every 5 s; seen once).
            self.sh(f"rm -f {SAVED} && sync", check=False)

    def power_cut(self) -> dict:
        n = self.exports()["whole"]
        self.node.power_cut()
        self.node.start()
        result = self.after_boot(n, "power-cut")
        fsck = self.node.serial_mark("recovering journal")
        return {"fsck_recovering_journal_serial_s": fsck, **result}

    def scale(self) -> dict:
        n = self.settings.scale
        made = self.populate(n)
        result = self.reboot(f"scale-{n}")
        return {"populate": made, **result}


def footprint(props: dict[str, str]) -> dict[str, Any]:
    """What the unit's cgroup holds now (for MemoryMax=, TasksMax=)."""
    memory = props.get("MemoryCurrent", "")
    return {"memory_mb": int(memory) >> 20 if memory.isdigit() else memory,
            "tasks": props.get("TasksCurrent"), "LimitNOFILE": props.get("LimitNOFILE"),
            "MemoryMax": props.get("MemoryMax"), "TasksMax": props.get("TasksMax")}


def make_cert(folder: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed certificate for the node's address, and its key."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "api-cert.pem", folder / "api-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", f"/CN={ip}", "-addext", f"subjectAltName=IP:{ip}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key
