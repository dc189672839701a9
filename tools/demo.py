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

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.support
from tests.support.blockio import checksum_io  # noqa: E402
from tests.support.daemon import Config, Daemon, DaemonFailed, block_backend  # noqa: E402
from tests.support.scratch import loop_device, sparse_file  # noqa: E402

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


def sessions() -> str:
    res = subprocess.run(["iscsiadm", "-m", "session"], capture_output=True, text=True)
    return res.stdout.strip()


def daemon_for(work: Path, device: str) -> Daemon:
    """iscsiattachd over the block backend, allowed to register ``device`` only."""
    return Daemon(Config(work / "state", PORT, block_backend(device)),
                  log_path=work / "iscsiattachd.log", config_path=work / "iscsiattach.conf")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="iscsiattach-demo-"))
    os.environ["ISCSIATTACH_TOKEN_FILE"] = str(work / "state" / "api-token")
    os.environ["ISCSIATTACH_HOST_STATE"] = str(work / "host")
    with ExitStack() as stack:
        stack.callback(step, "stopped iscsiattachd; cleaned up")
        loop = stack.enter_context(loop_device(sparse_file(work / "disk.img", 1 << 30)))
        return demo(work, loop)


def demo(work: Path, loop: str) -> int:
    """The daemon up, the operator's steps, everything made removed; 0 when
    the data came back the same, the read-only attachment refused writes
    and no session was left."""
    daemon = daemon_for(work, loop)
    vid = None
    try:
        daemon.start()
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
    except (RuntimeError, DaemonFailed, subprocess.CalledProcessError,
            json.JSONDecodeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if vid is not None:
            subprocess.run([str(BIN / "iscsiattach"), "detach", vid, "--force"])
            subprocess.run([str(BIN / "iscsiattach"), "volume-delete", vid])
        daemon.stop()


if __name__ == "__main__":
    sys.exit(main())
