"""The demo, run inside the VM by tools/demo: the daemon and the CLI, for real.

Starts iscsiattachd (token auth, block backend) over real LIO; creates a
volume on a loop device; then on the host side, as an operator would:
`iscsiattach attach` (this host's connector from os-brick, attachment
create, CHAP login through os-brick, the device confirmed as that volume by
unit serial, WWN, size), data written with direct I/O, `iscsiattach detach`;
attached again read-only, writes refused, the same data read back; detached,
no session left; the volume deleted.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iscsiattach.cli.client import Client

BIN = Path(sys.executable).parent
PORT = 8776
T0 = time.monotonic()


def step(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {msg}", flush=True)


def cli(*args: str) -> str:
    """Run the CLI; its progress lines (stderr) show as they come."""
    shown = " ".join(a for a in args if a not in ("--format", "json"))
    step(f"$ iscsiattach {shown}")
    res = subprocess.run([str(BIN / "iscsiattach"), *args], stdout=subprocess.PIPE, text=True)
    if res.returncode:
        raise RuntimeError(f"iscsiattach {shown} failed (exit {res.returncode})")
    return res.stdout


def cli_json(*args: str) -> dict | list:
    out = json.loads(cli("--format", "json", *args))
    print(json.dumps(out, indent=2), flush=True)
    return out


def checksum_io(dev: str, nbytes: int, data: bytes | None = None) -> str:
    """Write data (when given) or read nbytes with direct I/O; sha256 of it."""
    buf = mmap.mmap(-1, nbytes)                  # page aligned, for O_DIRECT
    fd = os.open(dev, (os.O_RDWR if data else os.O_RDONLY) | os.O_DIRECT)
    try:
        if data:
            buf[:] = data
            os.pwritev(fd, [buf], 0)
            os.fsync(fd)
        else:
            os.preadv(fd, [buf], 0)
    finally:
        os.close(fd)
    return hashlib.sha256(buf).hexdigest()


def sessions() -> str:
    res = subprocess.run(["iscsiadm", "-m", "session"], capture_output=True, text=True)
    return res.stdout.strip()


def start_daemon(work: Path, device: str) -> subprocess.Popen:
    """iscsiattachd over the block backend, allowed to register ``device`` only."""
    conf = work / "iscsiattach.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {work}/state\n[api]\nport = {PORT}\n"
                    f"[volumes]\nbackend = block\nblock_allowed_devices = {device}\n"
                    "[lio]\nportals = 127.0.0.1\n")
    log = open(work / "iscsiattachd.log", "w")
    proc = subprocess.Popen([str(BIN / "iscsiattachd"), "--config-file", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT)
    client = Client(f"http://127.0.0.1:{PORT}/v3", None, "3.54", timeout=1)
    end = time.monotonic() + 600        # a cold, busy TCG guest imports slowly
    while time.monotonic() < end:
        if client.serving():
            return proc
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
    os.environ["ISCSIATTACH_TOKEN_FILE"] = str(work / "state" / "api-token")
    os.environ["ISCSIATTACH_HOST_STATE"] = str(work / "host")
    daemon = vid = None
    try:
        daemon = start_daemon(work, loop)
        step(f"iscsiattachd ready on 127.0.0.1:{PORT} (token in {work}/state/api-token, 0600)")
        vid = cli_json("volume-create", "1", "--name", "demo", "--source", loop)["id"]
        step(f"volume {vid}: 1 GiB on {loop}")

        got = cli_json("attach", vid)
        dev = got["device"]
        step(f"attached: {dev} ({got['stable_path']}) confirmed as volume {got['serial']}")
        data = os.urandom(16 << 20)
        wrote = checksum_io(dev, len(data), data)
        step(f"wrote 16 MiB with direct I/O, sha256 {wrote[:16]}...")
        print(cli("attachment-list", "--volume-id", vid), flush=True)
        cli_json("detach", vid)

        got = cli_json("attach", vid, "--mode", "ro")
        dev = got["device"]
        try:
            os.close(os.open(dev, os.O_WRONLY))
            refused = False
        except OSError as exc:
            refused = True
            step(f"read-only attachment: opening {dev} for writing refused ({exc.strerror})")
        read = checksum_io(dev, len(data))
        same = read == wrote
        step(f"read back 16 MiB, sha256 {read[:16]}...: {'the same data' if same else 'MISMATCH'}")
        cli_json("detach", got["attachment_id"])
        left = sessions()
        step("iSCSI sessions left: " + (left or "none"))
        cli("volume-delete", vid)
        vid = None
        return 0 if same and refused and not left else 1
    except (RuntimeError, subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if vid is not None:
            subprocess.run([str(BIN / "iscsiattach"), "detach", vid, "--force"])
            subprocess.run([str(BIN / "iscsiattach"), "volume-delete", vid])
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        subprocess.run(["losetup", "-d", loop], check=False)
        step("stopped iscsiattachd; cleaned up")


if __name__ == "__main__":
    sys.exit(main())
