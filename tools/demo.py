"""The demo, run inside the VM by tools/demo: the daemon and the CLI, for real.

Starts iscsiattachd (token auth, block backend) over real LIO, then as an
operator would: volume-create on a loop device, attachment-create with this
host's connector (reserve + connect in one call), an open-iscsi CHAP login
with the connection_info the CLI printed, the device confirmed as that
volume, data written and read back, attachment-complete, logout,
attachment-delete (after which the login is refused), volume-delete.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from iscsiattach.target import Portal  # noqa: E402
from tests.functional.iscsi import (Node, initiator_name, sysfs_identity,  # noqa: E402
                                    write_and_read_back)

BIN = Path(sys.executable).parent
PORT = 8776
T0 = time.monotonic()


def step(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {msg}", flush=True)


def cli(*args: str) -> str:
    shown = " ".join(a for a in args if a not in ("--format", "json", "--show-secrets"))
    step(f"$ iscsiattach {shown}")
    res = subprocess.run([str(BIN / "iscsiattach"), *args], capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr.strip())
    return res.stdout


def start_daemon(work: Path) -> subprocess.Popen:
    conf = work / "iscsiattach.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {work}/state\n[api]\nport = {PORT}\n"
                    "[volumes]\nbackend = block\n[lio]\nportals = 127.0.0.1\n")
    log = open(work / "iscsiattachd.log", "w")
    proc = subprocess.Popen([str(BIN / "iscsiattachd"), "--config-file", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/", timeout=1)
        except urllib.error.HTTPError:
            return proc                      # 300 Multiple Choices: it is serving
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((work / "iscsiattachd.log").read_text())
            time.sleep(0.2)
    raise RuntimeError("iscsiattachd did not start")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="iscsiattach-demo-"))
    image = work / "disk.img"
    with open(image, "wb") as f:
        f.truncate(1 << 30)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                          capture_output=True, text=True).stdout.strip()
    daemon = node = vid = None
    try:
        daemon = start_daemon(work)
        os.environ["ISCSIATTACH_TOKEN_FILE"] = str(work / "state" / "api-token")
        step(f"iscsiattachd ready on 127.0.0.1:{PORT} (token in {work}/state/api-token, 0600)")
        vol = json.loads(cli("--format", "json", "volume-create", "1", "--name", "demo",
                             "--source", loop))
        vid = vol["id"]
        step(f"volume {vid}: {vol['status']}, 1 GiB on {loop}")
        out = cli("attachment-create", vid, str(uuid.uuid4()), "--connect", "True",
                  "--initiator", initiator_name())
        print(out, flush=True)
        att = json.loads(cli("--format", "json", "--show-secrets", "attachment-list",
                             "--volume-id", vid))[0]["id"]
        # The secret is printed only on request, for the login below.
        info = json.loads(cli("--format", "json", "--show-secrets", "attachment-update",
                              att, "--initiator", initiator_name()))["connection_info"]
        node = Node(info["target_iqn"], Portal.parse(info["target_portal"]))
        node.setup(info["auth_username"], info["auth_password"])
        if node.login().returncode:
            raise RuntimeError("iscsiadm login with the printed connection_info failed")
        dev = node.device()
        wwid, serial = sysfs_identity(dev)
        if serial != vid:
            raise RuntimeError(f"{dev} is not volume {vid}: serial {serial}")
        step(f"logged in with CHAP: {dev} is volume {serial} ({wwid})")
        ok = write_and_read_back(dev, 16 << 20)
        step(f"wrote and read back 16 MiB: {'checksums match' if ok else 'MISMATCH'}")
        cli("attachment-complete", att)
        print(cli("attachment-list", "--volume-id", vid), flush=True)
        node.logout()
        cli("attachment-delete", att)
        refused = node.login().returncode != 0
        step("login after attachment-delete: " + ("refused, as it must be" if refused
                                                  else "ACCEPTED"))
        cli("volume-delete", vid)
        vid = None
        return 0 if ok and refused else 1
    except (RuntimeError, subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.delete()
        if vid is not None:
            for a in json.loads(cli("--format", "json", "attachment-list", "--volume-id", vid)):
                cli("attachment-delete", a["id"])
            cli("volume-delete", vid)
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        subprocess.run(["losetup", "-d", loop], check=False)
        step("stopped iscsiattachd; cleaned up")


if __name__ == "__main__":
    sys.exit(main())
