"""One storage node under qemu: boot, commands in, power cut, clean reboot.

The node boots the image's own kernel (TCG, -cpu qemu64: under TCG the
default -cpu max shows vmx, udev loads kvm_intel, and Python runs ~15%
slower) with systemd as PID 1 on a qcow2 overlay of the cached base image:
the base is never written, and the overlay survives between boots of one
node, as a disk does.

Commands reach the node through a 9p share: the image's node-run.service
runs the share's run.sh at every boot; run.sh here is an agent that runs
each request the host drops in req/ (N.sh) in order and leaves N.out and
N.rc beside it. Boots are counted in the share (boots); the agent marks its
boot's start (up.<boot>).

Each qemu runs under `timeout --kill-after` and with -no-reboot: a reboot
ends the qemu process and the host starts a new one on the same disk, so
every boot has its own serial log and its own timing from power-on.
"""
from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from nodelib.image import Image

LOCK_DIR = Path("/run/lock/iscsiattach-vm")   # tools/vm's VM slots
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

AGENT = r"""#!/bin/bash
# node-vm agent (written by the host): run each req/N.sh in order; its output
# to req/N.out, its exit status to req/N.rc (renamed into place when whole).
cd /mnt/host || exit 3
mkdir -p req
echo "$(cut -d' ' -f1 /proc/uptime)" > "up.$NODE_BOOT"
while :; do
    for f in req/*.sh; do
        [ -e "$f" ] || continue
        n=${f#req/}; n=${n%.sh}
        mv "$f" "req/$n.run"
        bash "req/$n.run" > "req/$n.out" 2>&1
        echo $? > "req/$n.rc.tmp"; sync "req/$n.out"; mv "req/$n.rc.tmp" "req/$n.rc"
    done
    sleep 0.2
done
"""


class NodeError(AssertionError):
    """The node did not boot, answer or stop as it should."""


@dataclass(frozen=True)
class Link:
    """A point-to-point datagram link (qemu dgram over Unix sockets): this
    end's socket, the peer's, this end's IPv4 address/prefix. A node with no
    peer still gets its address (the peer's frames simply never come)."""
    self_path: Path
    peer_path: Path
    address: str          # e.g. 10.213.0.1/24

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def mac(self) -> str:
        # As tools/vm: 52:54:00 and the address's last three bytes.
        b = [int(x) for x in self.ip.split(".")]
        return f"52:54:00:{b[1]:02x}:{b[2]:02x}:{b[3]:02x}"

    def qemu_args(self) -> list[str]:
        netdev = (f"dgram,id=link0,local.type=unix,local.path={self.self_path},"
                  f"remote.type=unix,remote.path={self.peer_path}")
        return ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=link0,mac={self.mac}"]

    def kernel_arg(self) -> str:
        prefix = int(self.address.split("/")[1])
        mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
        dotted = ".".join(str(mask >> s & 0xFF) for s in (24, 16, 8, 0))
        return f"ip={self.ip}:::{dotted}::eth0:off"


@dataclass
class Result:
    rc: int
    out: str
    seconds: float


@dataclass
class Node:
    name: str
    image: Image
    folder: Path              # disk.qcow2, share/, serial logs
    link: Link | None = None
    cpus: int = 2
    memory: str = "1G"
    boot_timeout: float = 1800    # one qemu run, whatever happens in it
    proc: subprocess.Popen | None = None
    boots: int = 0
    started: float = 0.0      # time.monotonic() at this qemu's start
    serial: Path | None = None
    seq: int = 0
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def share(self) -> Path:
        return self.folder / "share"

    def create(self) -> None:
        """A new disk: a qcow2 overlay on the base image (never written)."""
        self.share.mkdir(parents=True, exist_ok=True)
        disk = self.folder / "disk.qcow2"
        disk.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image.raw),
                        "-F", "raw", str(disk)], check=True)
        (self.share / "run.sh").write_text(AGENT)
        (self.share / "run.sh").chmod(0o755)

    def start(self) -> None:
        """Power on (a new qemu on the same disk)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.boots += 1
        self.serial = self.folder / f"serial.{self.boots}.log"
        # show_status: systemd's "Reached target" lines on the serial console
        # at every boot (by default only when a boot is slow), for timing.
        append = ("root=/dev/vda ro console=ttyS0 net.ifnames=0 systemd.show_status=1"
                  " module_blacklist=kvm,kvm_intel,kvm_amd")
        net: list[str] = []
        if self.link:
            append += " " + self.link.kernel_arg()
            net = self.link.qemu_args()
        cmd = ["timeout", "--kill-after=10", str(int(self.boot_timeout)),
               "qemu-system-x86_64", "-accel", "tcg", "-machine", "pc", "-cpu", "qemu64",
               "-smp", str(self.cpus), "-m", self.memory, "-nodefaults", "-no-user-config",
               "-display", "none", "-serial", "stdio", "-no-reboot",
               "-pidfile", str(self.folder / "qemu.pid"),
               "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
               "-append", append,
               # writeback honours the guest's flushes: a power cut loses
               # only what the guest had not flushed.
               "-drive", f"file={self.folder / 'disk.qcow2'},if=virtio,format=qcow2,"
                         "cache=writeback",
               "-virtfs", f"local,path={self.share},mount_tag=host,security_model=none,id=host",
               *net]
        (self.folder / "qemu.pid").unlink(missing_ok=True)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out = self.proc.stdout
        assert out is not None
        threading.Thread(target=self._stamp, args=(out, self.serial, self.started),
                         daemon=True).start()

    @staticmethod
    def _stamp(stream: IO[bytes], path: Path, t0: float) -> None:
        """Serial lines with seconds since power-on (for boot timing)."""
        with open(path, "w") as log:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip("\r\n").replace("\r", "")
                log.write(f"{time.monotonic() - t0:8.2f} {line}\n")
                log.flush()

    def wait_up(self, timeout: float = 600) -> float:
        """Wait until this boot's agent runs; seconds since power-on."""
        marker = self.share / f"up.{self.boots}"
        deadline = time.monotonic() + timeout
        while not marker.exists():
            self._check_running("booting")
            if time.monotonic() > deadline:
                raise NodeError(f"{self.name}: boot {self.boots} not up in {timeout:.0f} s; "
                                + self.serial_tail())
            time.sleep(0.25)
        return time.monotonic() - self.started

    def _check_running(self, doing: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise NodeError(f"{self.name}: qemu exited ({self.proc.returncode}) while {doing}; "
                            + self.serial_tail())

    def serial_tail(self, lines: int = 25) -> str:
        if not self.serial or not self.serial.exists():
            return "no serial log"
        tail = self.serial.read_text(errors="replace").splitlines()[-lines:]
        return f"last serial lines ({self.serial}):\n" + "\n".join(tail)

    def run(self, script: str, timeout: float = 600, check: bool = True) -> Result:
        """Run a bash script as root in the node; its output and status."""
        self.seq += 1
        req = self.share / "req"
        req.mkdir(exist_ok=True)
        name = f"{self.boots:02d}-{self.seq:04d}"
        tmp = req / f"{name}.tmp"
        # The node's own timeout too: a hung command must not hold the agent.
        tmp.write_text(f"set -o pipefail\n{script}\n")
        t0 = time.monotonic()
        tmp.rename(req / f"{name}.sh")
        rc_file = req / f"{name}.rc"
        while not rc_file.exists():
            self._check_running(f"running request {name}")
            if time.monotonic() - t0 > timeout:
                raise NodeError(f"{self.name}: request {name} took over {timeout:.0f} s:\n"
                                f"{script}\n-- output so far:\n{self._read(req / f'{name}.out')}")
            time.sleep(0.2)
        seconds = time.monotonic() - t0
        result = Result(int(rc_file.read_text() or 1), self._read(req / f"{name}.out"), seconds)
        if check and result.rc != 0:
            raise NodeError(f"{self.name}: exit {result.rc} from:\n{script}\n-- output:\n"
                            + result.out[-4000:])
        return result

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise NodeError(f"{self.name}: qemu still running {timeout:.0f} s after it should "
                            "have stopped; " + self.serial_tail()) from None

    def reboot(self, timeout: float = 120) -> float:
        """`systemctl reboot` in the node; qemu exits (-no-reboot) and a new
        one starts on the same disk. Seconds from the command to qemu's exit."""
        t0 = time.monotonic()
        # In 1 s, from a timer: this request's status must reach the share
        # before the shutdown stops the agent.
        self.run("systemd-run --quiet --on-active=1 --timer-property=AccuracySec=100ms "
                 "systemctl reboot")
        rc = self.wait_exit(timeout)
        if rc != 0:
            raise NodeError(f"{self.name}: qemu exited {rc} on reboot; " + self.serial_tail())
        took = time.monotonic() - t0
        self.start()
        return took

    def power_cut(self) -> None:
        """SIGKILL qemu: the guest's page cache and in-flight I/O are lost
        (this machine's page cache keeps what qemu wrote)."""
        assert self.proc is not None
        pid = int((self.folder / "qemu.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(60)

    def poweroff(self, timeout: float = 120) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.run("systemd-run --quiet --on-active=1 --timer-property=AccuracySec=100ms "
                     "systemctl poweroff", timeout=30)
            self.wait_exit(timeout)
        except NodeError:
            self.kill()

    def kill(self) -> None:
        """End this node's qemu however it is (timeout and qemu share its
        session)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def serial_mark(self, pattern: str) -> float | None:
        """Seconds after power-on of this boot's first serial line matching
        the regular expression (colour codes removed first)."""
        if not self.serial or not self.serial.exists():
            return None
        found = re.compile(pattern)
        for line in self.serial.read_text(errors="replace").splitlines():
            if found.search(ANSI.sub("", line)):
                return float(line.split(None, 1)[0])
        return None


def copy_in(node: Node, src: Path, dest: str, mode: str = "0644") -> None:
    """A file from this machine to a path in the node, through the share
    (staged there only for the copy)."""
    staged = node.share / "in" / src.name
    staged.parent.mkdir(mode=0o700, exist_ok=True)
    shutil.copyfile(src, staged)
    try:
        node.run(f"install -D -m {mode} {shlex.quote(str(Path('/mnt/host/in') / src.name))} "
                 f"{shlex.quote(dest)}")
    finally:
        staged.unlink()


class Slots:
    """tools/vm's VM slots (/run/lock/iscsiattach-vm/slot-N, at most
    ISCSIATTACH_VM_SLOTS qemu at once, default 2): held for the whole run,
    so no node ever boots beside another VM beyond the limit."""

    def __init__(self, want: int, say: Callable[[str], None]) -> None:
        self.fds: list[int] = []
        total = int(os.environ.get("ISCSIATTACH_VM_SLOTS", "2"))
        if total <= 0:
            return
        want = min(want, total)
        slots = want                  # what the message names; want also counts the pair lock
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        if want > 1:
            # As tools/two-vm: one multi-slot run at a time, so two of them
            # never hold one slot each and wait for each other.
            pair = os.open(LOCK_DIR / "two-vm", os.O_WRONLY | os.O_CREAT, 0o644)
            fcntl.flock(pair, fcntl.LOCK_EX)
            self.fds.append(pair)
            want += 1
        said = False
        while len(self.fds) < want:
            for i in range(1, total + 1):
                if len(self.fds) == want:
                    break
                fd = os.open(LOCK_DIR / f"slot-{i}", os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self.fds.append(fd)
            if len(self.fds) < want:
                if not said:
                    say(f"waiting for {slots} free VM slot(s)")
                    said = True
                time.sleep(2)

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def q(text: str) -> str:
    return shlex.quote(text)
