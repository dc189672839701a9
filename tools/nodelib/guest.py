"""Run in the node by Debian's python3 (standard library only, nothing of
the project): what the suite reads and does there, as JSON on stdout.

  guest.py populate N URL CACERT TOKENFILE   N volumes, each attached (an export)
  guest.py exports PREFIX                    our targets in LIO (configfs)
  guest.py unit UNIT                         `systemctl show UNIT` as a dict
  guest.py journal UNIT TEXT [AFTER]         monotonic time (s) of UNIT's first
                                             line this boot containing TEXT (and
                                             logged after AFTER s), or null
  guest.py wait-restart UNIT OLDPID TIMEOUT  until UNIT is active with another
                                             main pid; when, and its properties
  guest.py wait-exports PREFIX N TIMEOUT     until N of our targets are enabled
  guest.py set-option FILE SECTION KEY VALUE set KEY in [SECTION] of an ini file
  guest.py signal PID NAME                   send SIGNAME to PID; when
  guest.py watch-start UNIT PREFIX TIMEOUT   start UNIT without blocking, sample its
                                             state and our exports until active
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ISCSI = Path("/sys/kernel/config/target/iscsi")


def api(conn: http.client.HTTPSConnection, base: str, token: str, method: str, path: str,
        body: dict | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "OpenStack-API-Version": "volume 3.54", "X-Auth-Token": token}
    conn.request(method, base + path, json.dumps(body) if body is not None else None, headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, json.loads(data) if data else {}


def populate(n: int, url: str, cacert: str, token_file: str) -> dict:
    """N volumes through the API (HTTPS, the certificate checked), each with
    an attachment that has a connector: LIO then holds N exports."""
    token = Path(token_file).read_text().strip()
    parts = urlsplit(url)
    ctx = ssl.create_default_context(cafile=cacert)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=300)
    t0 = time.monotonic()
    made = []
    for i in range(n):
        status, body = api(conn, parts.path, token, "POST", "/volumes",
                           {"volume": {"size": 1, "name": f"node-{i}"}})
        if status != 202:
            raise SystemExit(f"volume create {i}: {status} {body}")
        vid = body["volume"]["id"]
        connector = {"initiator": f"iqn.1994-05.com.example:node-{i:05d}", "ip": "10.213.0.2",
                     "host": f"peer-{i}", "platform": "x86_64", "os_type": "linux2",
                     "multipath": False}
        status, body = api(conn, parts.path, token, "POST", "/attachments",
                           {"attachment": {"volume_uuid": vid, "instance_uuid": str(uuid.uuid4()),
                                           "connector": connector}})
        if status != 200:
            raise SystemExit(f"attachment create {i}: {status} {body}")
        made.append(vid)
    return {"created": len(made), "seconds": round(time.monotonic() - t0, 2)}


def exports(prefix: str) -> dict:
    """Our targets: enabled TPG, LUN 0 present, ACL count; and every other
    target LIO holds (someone else's)."""
    ours, others = {}, []
    if ISCSI.is_dir():
        for target in sorted(ISCSI.iterdir()):
            if not target.name.startswith("iqn.") and not target.name.startswith("naa."):
                continue
            if not target.name.startswith(prefix):
                others.append(target.name)
                continue
            tpg = target / "tpgt_1"
            try:
                ours[target.name] = {
                    "enabled": (tpg / "enable").read_text().strip() == "1",
                    "lun0": (tpg / "lun" / "lun_0").is_dir(),
                    "acls": len(list((tpg / "acls").iterdir())),
                }
            except OSError:
                ours[target.name] = {"enabled": False, "lun0": False, "acls": 0}
    good = sum(1 for t in ours.values() if t["enabled"] and t["lun0"] and t["acls"])
    return {"count": len(ours), "whole": good, "others": others,
            "uptime": uptime(), "names": sorted(ours)}


def uptime() -> float:
    # CLOCK_MONOTONIC, the clock of systemd's *TimestampMonotonic values.
    return round(time.clock_gettime(time.CLOCK_MONOTONIC), 3)


def unit(name: str) -> dict:
    out = subprocess.run(["systemctl", "show", name], check=True, capture_output=True,
                         text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(name: str, text: str, after: float = 0.0) -> float | None:
    out = subprocess.run(["journalctl", "-b", "-u", name, "-o", "json", "--no-pager"],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        entry = json.loads(line)
        message = entry.get("MESSAGE")
        at = int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6
        if isinstance(message, str) and text in message and at >= after:
            return at
    return None


def wait_restart(name: str, old_pid: str, timeout: float) -> dict:
    t0 = uptime()
    while True:
        props = unit(name)
        if props.get("ActiveState") == "active" and props.get("MainPID") not in ("0", old_pid):
            break
        if uptime() - t0 > timeout:
            raise SystemExit(f"{name} not active again within {timeout} s: "
                             f"{props.get('ActiveState')}/{props.get('SubState')} "
                             f"pid {props.get('MainPID')}")
        time.sleep(0.2)
    keep = ("MainPID", "NRestarts", "ActiveState", "SubState", "StatusText", "Result",
            "ActiveEnterTimestampMonotonic", "ExecMainStartTimestampMonotonic")
    return {"seen_at": uptime(), **{k: props.get(k) for k in keep}}


def wait_exports(prefix: str, n: int, timeout: float) -> dict:
    t0 = uptime()
    while True:
        found = exports(prefix)
        if found["whole"] >= n:
            found.pop("names")
            return {**found, "waited_s": round(uptime() - t0, 2)}
        if uptime() - t0 > timeout:
            found.pop("names")
            raise SystemExit(f"only {found['whole']} of {n} exports within {timeout} s: {found}")
        time.sleep(0.5)


def send_signal(pid: str, name: str) -> dict:
    at = uptime()
    os.kill(int(pid), getattr(signal, f"SIG{name}"))
    return {"pid": int(pid), "signal": name, "at": at}


def watch_start(name: str, prefix: str, timeout: float) -> dict:
    """What systemd says about UNIT, beside how many of our exports LIO
    holds, every ~0.3 s from `systemctl start --no-block` until it is
    active: each change is kept. Shows whether "active" ever came before
    the exports did."""
    subprocess.run(["systemctl", "start", "--no-block", name], check=True)
    t0 = uptime()
    changes: list[list] = []
    while True:
        state = unit(name).get("ActiveState", "?")
        whole = exports(prefix)["whole"]
        if not changes or changes[-1][1:] != [state, whole]:
            changes.append([round(uptime() - t0, 2), state, whole])
        if state in ("active", "failed"):
            break
        if uptime() - t0 > timeout:
            raise SystemExit(f"{name} not active within {timeout} s: {changes[-5:]}")
        time.sleep(0.3)
    return {"started_at": t0, "changes": changes}


def set_option(path: str, section: str, key: str, value: str) -> dict:
    """As an operator edits the shipped file: the line goes right under the
    section's header (the commented defaults stay as they are)."""
    lines = Path(path).read_text().splitlines()
    header = f"[{section}]"
    if header not in lines:
        lines += ["", header]
    at = lines.index(header) + 1
    # An earlier setting of the same key in this section is replaced.
    end = next((i for i in range(at, len(lines)) if lines[i].startswith("[")), len(lines))
    lines = [ln for i, ln in enumerate(lines)
             if not (at <= i < end and ln.split("=", 1)[0].strip() == key)]
    lines.insert(at, f"{key} = {value}")
    Path(path).write_text("\n".join(lines) + "\n")
    return {"file": path, "set": f"[{section}] {key}"}


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "populate":
        result = populate(int(args[0]), args[1], args[2], args[3])
    elif cmd == "exports":
        result = exports(args[0])
    elif cmd == "unit":
        result = unit(args[0])
    elif cmd == "journal":
        result = {"monotonic": journal(args[0], args[1], float(args[2]) if args[2:] else 0.0)}
    elif cmd == "wait-restart":
        result = wait_restart(args[0], args[1], float(args[2]))
    elif cmd == "wait-exports":
        result = wait_exports(args[0], int(args[1]), float(args[2]))
    elif cmd == "signal":
        result = send_signal(args[0], args[1])
    elif cmd == "watch-start":
        result = watch_start(args[0], args[1], float(args[2]))
    elif cmd == "set-option":
        result = set_option(*args[:4])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
