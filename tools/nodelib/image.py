"""The node's disk image: Debian 12 built with mmdebstrap, cached by recipe.

The recipe is data (package list, overlay files, customize script, image
size); its hash names the cache folder, so a change to any of them builds a
new image and an unchanged recipe reuses the old one. The image holds what
the project's .deb needs, so that `apt install ./iscsiattach_*.deb` works in
the node with no network. The .deb itself is not baked in: the node installs
it as an operator would (see suite.py).

A built image is three files beside each other, never written after the
build: base.raw (ext4, the root filesystem), vmlinux (the kernel, unpacked
so qemu boots it through its PVH entry, ~3 s faster under TCG than the xz
bzImage) and initrd.img; manifest.json says what is installed.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import lzma
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# What a storage node runs, and everything the project's .deb depends on:
# the install in the node is offline, so a dependency missing here fails it.
# targetcli-fb brings python3-rtslib-fb and Debian's rtslib-fb-targetctl.service.
# openssl: the README's commands make the API's certificate with it.
PACKAGES = (
    "systemd-sysv", "udev", "dbus", "kmod", "linux-image-amd64",
    "python3", "lvm2", "open-iscsi", "targetcli-fb",
    "iproute2", "iputils-ping", "e2fsprogs", "procps", "fio", "sg3-utils", "openssl",
)
# ext4 size; sparse, so only what is written costs disk. Room for the .deb's
# virtualenv and many sparse volume files.
IMAGE_SIZE = "4G"

# Files copied into the tree as they are (path -> (mode, text)).
OVERLAY: dict[str, tuple[int, str]] = {
    # root=/dev/vda ro on the kernel command line: the initramfs fscks the
    # root (replays the journal after a power cut), fstab remounts it rw.
    "etc/fstab": (0o644, "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"),
    "etc/hostname": (0o644, "node\n"),
    "etc/hosts": (0o644, "127.0.0.1 localhost\n127.0.1.1 node\n"),
    # A small initramfs: what mounts root (MODULES=most is 36 MB and 2.6 s
    # more at every boot). The fsck hook cannot probe /dev/vda in a chroot;
    # zstd (Debian's default) is not in minbase.
    "etc/initramfs-tools/conf.d/node.conf": (0o644, "MODULES=list\nFSTYPE=ext4\nCOMPRESS=gzip\n"),
    # Moved over /etc/initramfs-tools/modules (a conffile) after install.
    "etc/initramfs-tools/modules.node": (0o644, "virtio_pci\nvirtio_blk\next4\n"),
    # The link made from ip= on the kernel command line: no IPv6
    # autoconfiguration on a point-to-point test link (else it stays
    # "configuring").
    "etc/systemd/network/90-eth0.network.d/node.conf":
        (0o644, "[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"),
    # network-online.target means eth0 has its address (iscsiattachd binds
    # its API and portals there at start). Every node has its link, so this
    # is quick; 30 s, not 120, if it ever is not there.
    "etc/systemd/system/systemd-networkd-wait-online.service.d/node.conf": (0o644, (
        "[Service]\nExecStart=\n"
        "ExecStart=/lib/systemd/systemd-networkd-wait-online --timeout=30\n")),
    # Root shell on the serial console, for debugging by hand.
    "etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf": (0o644, (
        "[Service]\nExecStart=\n"
        "ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud"
        " 115200,57600,38400,9600 %I $TERM\n")),
    # The command channel: at every boot, mount the host's 9p share and run
    # its run.sh (written by the host: qemu.py's agent).
    "etc/systemd/system/node-run.service": (0o644, (
        "[Unit]\nDescription=node-vm: run the script from the host share\n"
        "After=multi-user.target\n"
        "[Service]\n"
        "# simple, not oneshot: an activating oneshot would hold\n"
        "# is-system-running at 'starting' while it runs.\n"
        "Type=simple\nExecStart=/usr/local/sbin/node-run\n"
        "StandardOutput=journal+console\nStandardError=journal+console\n"
        "[Install]\nWantedBy=multi-user.target\n")),
    "usr/local/sbin/node-run": (0o755, """#!/bin/sh
# Mount the 9p share "host" on /mnt/host and run its run.sh with NODE_BOOT=n
# (boots counted in /mnt/host/boots). 9p loads on demand through udev: retry.
mkdir -p /mnt/host
i=0
opts=trans=virtio,version=9p2000.L,msize=262144,cache=none
until mount -t 9p -o $opts host /mnt/host 2>/dev/null; do
    i=$((i+1)); [ $i -ge 100 ] && { echo "node-run: no 9p share 'host'"; exit 0; }
    sleep 0.2
done
boot=$(( $(cat /mnt/host/boots 2>/dev/null || echo 0) + 1 )); echo $boot > /mnt/host/boots
echo "node-run: boot $boot, share mounted"
[ -x /mnt/host/run.sh ] || { echo "node-run: no run.sh"; exit 0; }
cd /mnt/host
NODE_BOOT=$boot ./run.sh > "run.$boot.log" 2>&1
echo "node-run: run.sh exited $?"
"""),
}

# Run on this machine against the finished tree ($1), after every package
# is in. update-initramfs was diverted to /bin/true during the install (it
# would run twice, ~21 s each): it runs once here.
CUSTOMIZE = """set -eu
r=$1
mv "$r"/etc/initramfs-tools/modules.node "$r"/etc/initramfs-tools/modules
chroot "$r" update-initramfs -c -k all
chroot "$r" passwd -d root >/dev/null
systemctl --root="$r" -q enable node-run.service systemd-networkd.service \\
    systemd-network-generator.service
# Nothing scheduled that would run in the middle of a measurement.
systemctl --root="$r" -q mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \\
    e2scrub_reap.service fstrim.timer
rm -f "$r"/etc/resolv.conf
# What is installed, for manifest.json.
chroot "$r" dpkg-query -W -f '${Package} ${Version}\\n' > "$r"/../packages.txt
"""

FORMAT = 1      # bump when the build steps below change what they make


def recipe() -> dict:
    return {"format": FORMAT, "suite": SUITE, "mirrors": MIRRORS, "packages": PACKAGES,
            "size": IMAGE_SIZE, "overlay": {p: [m, t] for p, (m, t) in sorted(OVERLAY.items())},
            "customize": CUSTOMIZE}


def recipe_key() -> str:
    text = json.dumps(recipe(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    folder: Path

    @property
    def raw(self) -> Path:
        return self.folder / "base.raw"

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinux"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"

    def manifest(self) -> dict:
        return json.loads((self.folder / "manifest.json").read_text())


def ensure(cache: Path, say: Callable[[str], None]) -> Image:
    """The image of the current recipe, built first if the cache lacks it.
    One build at a time (a lock in the cache); a half-built image is never
    used: it is built aside and renamed into place."""
    cache.mkdir(parents=True, exist_ok=True)
    image = Image(cache / f"base-{recipe_key()}")
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (image.folder / "manifest.json").exists():
            say(f"image {image.folder.name} (cached)")
            return image
        work = cache / f"building-{recipe_key()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            _build(work, cache / "apt-archives", say)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        work.rename(image.folder)
    return image


def _build(work: Path, apt_cache: Path, say: Callable[[str], None]) -> None:
    overlay = work / "overlay"
    for rel, (mode, text) in OVERLAY.items():
        path = overlay / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    (work / "customize.sh").write_text(CUSTOMIZE)
    apt_cache.mkdir(exist_ok=True)
    tree = work / "root"
    key = work.name.removeprefix("building-")
    say(f"building image {key}: mmdebstrap ({len(PACKAGES)} packages)")
    t0 = time.monotonic()
    divert = "chroot \"$1\" dpkg-divert --quiet --local --rename"
    cmd = [
        "mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory", "--quiet",
        "--include=" + ",".join(PACKAGES),
        "--aptopt=Acquire::Languages \"none\"",
        "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--skip=essential/unlink",
        # The .debs of the last build: no faster here (dpkg is the cost,
        # not the mirror), but a slow mirror or a rebuild offline is.
        "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
        f"--setup-hook=sync-in {apt_cache} /var/cache/apt/archives/",
        f"--essential-hook={divert} --add /usr/sbin/update-initramfs"
        " && ln -s /bin/true \"$1\"/usr/sbin/update-initramfs",
        f"--customize-hook=sync-out /var/cache/apt/archives {apt_cache}",
        f"--customize-hook=rm \"$1\"/usr/sbin/update-initramfs && {divert}"
        " --remove /usr/sbin/update-initramfs",
        f"--customize-hook=cp -a {overlay}/. \"$1\"/",
        f"--customize-hook=bash {work / 'customize.sh'} \"$1\"",
        SUITE, str(tree), *MIRRORS,
    ]
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    t1 = time.monotonic()
    raw = work / "base.raw"
    # Straight from the directory: no loop device, no mount.
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "noderoot", "-d", str(tree), str(raw),
                    IMAGE_SIZE], check=True)
    (vmlinuz,) = tree.glob("boot/vmlinuz-*")
    (initrd,) = tree.glob("boot/initrd.img-*")
    shutil.copyfile(initrd, work / "initrd.img")
    (work / "vmlinux").write_bytes(unpack_vmlinux(vmlinuz.read_bytes()))
    t2 = time.monotonic()
    manifest = {
        "recipe": recipe_key(), "kernel": vmlinuz.name.removeprefix("vmlinuz-"),
        "mmdebstrap_s": round(t1 - t0, 1), "mkfs_s": round(t2 - t1, 1),
        "tree_mb": _du_mb(tree), "raw_allocated_mb": raw.stat().st_blocks * 512 >> 20,
        "packages": dict(line.split(" ", 1) for line in
                         (work / "packages.txt").read_text().splitlines()),
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    # The tree is not needed once base.raw holds it (~640 MB).
    shutil.rmtree(tree)
    shutil.rmtree(overlay)
    say(f"image built: mmdebstrap {manifest['mmdebstrap_s']} s, mkfs {manifest['mkfs_s']} s, "
        f"{manifest['raw_allocated_mb']} MB allocated, {len(manifest['packages'])} packages")


def unpack_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside Debian's bzImage (an xz stream)."""
    offset = bzimage.find(b"\xfd7zXZ\x00")
    if offset < 0:
        raise RuntimeError("no xz stream in the kernel image: not a Debian amd64 bzImage?")
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[offset:])


def _du_mb(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])
