"""Scratch filesystems, sparse files and loop devices (as root, in the VM).

LIO's asynchronous fileio opens its backing files with O_DIRECT, which the
guest's tmpfs does not support: backing files live on ext4 on a loop device.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no space until written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def make_ext4(image: Path, size: int) -> Path:
    """A sparse image file holding an empty ext4 filesystem."""
    sparse_file(image, size)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1", str(image)],
                   check=True)
    return image


def mount_image(image: Path, mnt: Path) -> Path:
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    return mnt


def mount_scratch(root: Path, size: int) -> Path:
    """A new ext4 of ``size`` bytes mounted at ``root``/mnt (its image
    ``root``/scratch.ext4); left mounted: see scratch_fs for a scoped one."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return mount_image(make_ext4(root / "scratch.ext4", size), root / "mnt")


@contextmanager
def scratch_fs(root: Path, size: int) -> Iterator[Path]:
    """mount_scratch, unmounted and its image removed on the way out."""
    mnt = mount_scratch(root, size)
    try:
        yield mnt
    finally:
        # Lazy: a process still holding a file there must not keep the
        # image (gigabytes of the guest's RAM) alive.
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        (root / "scratch.ext4").unlink(missing_ok=True)


@contextmanager
def loop_device(image: Path) -> Iterator[str]:
    """``image`` as a block device (/dev/loopN), detached on the way out."""
    dev = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
