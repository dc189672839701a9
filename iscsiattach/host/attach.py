"""``iscsiattach attach`` / ``detach``: the whole host-side story.

attach: this host's connector (os-brick) -> attachment create with it (one
call) -> os-brick connect with the returned connection_info -> confirm the
device is the volume -> attachment complete. A failure at any step rolls
back what was done (disconnect, attachment delete) and names the step.

detach: flush and disconnect with os-brick, then delete the attachment.
Refused while the device is mounted or open, unless forced.

A record per attachment (0600, without the CHAP secret) under the host
state directory lets detach find the device and the target again.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from iscsiattach.exception import Conflict, IscsiAttachError, NotFound, StepFailed
from iscsiattach.host import confirm as confirm_mod

LOG = logging.getLogger(__name__)
GIB = 1 << 30
SECRET_KEYS = ("auth_password", "discovery_auth_password")
UDEV_NAMES = ("systemd-udevd", "(udev-worker)", "udevd", "blkid")
UDEV_GRACE = 5.0        # seconds a udev probe may hold a device before it counts


class Api(Protocol):
    def attachment_create(self, volume_id: str, instance: str, connector: dict,
                          mode: str) -> dict: ...
    def attachment_complete(self, attachment_id: str) -> None: ...
    def attachment_delete(self, attachment_id: str) -> None: ...
    def attachment_list(self, volume_id: str) -> list[dict]: ...
    def volume_size_gib(self, volume_id: str) -> int: ...


class Brick(Protocol):
    def connector_properties(self, my_ip: str | None, multipath: bool) -> dict: ...
    def connect(self, connection_info: dict, multipath: bool) -> dict: ...
    def disconnect(self, connection_info: dict, device: dict, multipath: bool,
                   force: bool = False) -> None: ...


@dataclass
class Attached:
    attachment_id: str
    volume_id: str
    device: str
    stable_path: str | None
    serial: str
    wwid: str
    mode: str


class HostSide:
    def __init__(self, api: Api, brick: Brick, state_dir: str,
                 confirm: Callable = confirm_mod.confirm,
                 progress: Callable[[str], None] = lambda msg: None,
                 in_use: Callable[[str], str | None] | None = None) -> None:
        self.api, self.brick, self.confirm, self.progress = api, brick, confirm, progress
        self.in_use = in_use or device_in_use
        self.records = Path(state_dir) / "attachments"

    def attach(self, volume_id: str, instance: str | None = None, mode: str = "rw",
               multipath: bool = False, my_ip: str | None = None) -> Attached:
        instance = instance or str(uuid.uuid4())
        self.progress("gathering this host's connector")
        props = self._step("connector", self.brick.connector_properties, my_ip, multipath)
        self.progress(f"creating the attachment for {props['initiator']}")
        att = self._step("attachment create", self.api.attachment_create,
                         volume_id, instance, props, mode)
        info = att["connection_info"]
        device = None
        try:
            self.progress(f"logging in to {info['target_iqn']} at {info['target_portal']}")
            device = self._step("connect", self.brick.connect, info, multipath)
            size = self._step("volume size", self.api.volume_size_gib, volume_id)
            self.progress(f"confirming {device['path']} is volume {volume_id}")
            ok = self._step("confirm device", self.confirm, device["path"],
                            confirm_mod.Expected(volume_id, size * GIB, mode == "ro"))
            self._save(att["id"], volume_id, info, device, multipath)
            self._step("attachment complete", self.api.attachment_complete, att["id"])
        except StepFailed:
            self._roll_back(att["id"], info, device, multipath)
            raise
        return Attached(att["id"], volume_id, ok.path, stable_link(ok.path), ok.serial,
                        ok.wwid, mode)

    def detach(self, attachment_or_volume: str, force: bool = False) -> list[str]:
        records = self.find_records(attachment_or_volume)
        done = []
        for rec in records:
            dev = os.path.realpath(rec["device"]["path"])
            shared = self._shares_session(rec)
            if not force and not shared:
                busy = self.in_use(dev)
                if busy:
                    raise Conflict(f"{dev} is {busy}; unmount or close it first, or --force")
            if shared:
                # Another attachment of this host (multiattach) uses the same
                # target and device: logging out would cut it off.
                self.progress(f"keeping {dev}: attachment {shared} still uses it")
            else:
                self.progress(f"disconnecting {dev}")
                self._step("disconnect", self.brick.disconnect, rec["connection_info"],
                           rec["device"], rec["multipath"], force)
            self._delete_attachment(rec["attachment_id"])
            (self.records / f"{rec['attachment_id']}.json").unlink(missing_ok=True)
            done.append(rec["attachment_id"])
        return done

    def _delete_attachment(self, att_id: str) -> None:
        try:
            self.api.attachment_delete(att_id)
        except NotFound:
            # Already gone (a repeat, or deleted on the storage side): the
            # goal of detach holds.
            LOG.info("attachment %s was already deleted", att_id)
        except IscsiAttachError as exc:
            raise StepFailed(f"attachment delete failed: {exc}") from None

    def _shares_session(self, rec: dict) -> str | None:
        """The id of another recorded attachment on the same target, if any."""
        iqn = rec["connection_info"].get("target_iqn")
        for other in self.find_records(None):
            if (other["attachment_id"] != rec["attachment_id"]
                    and other["connection_info"].get("target_iqn") == iqn):
                return other["attachment_id"]
        return None

    # -- helpers ------------------------------------------------------------
    @staticmethod
    def _step(name: str, fn, *args):
        try:
            return fn(*args)
        except IscsiAttachError as exc:
            raise StepFailed(f"{name} failed: {exc}") from None

    def _roll_back(self, att_id: str, info: dict, device: dict | None, multipath: bool) -> None:
        shared = self._shares_session({"attachment_id": att_id, "connection_info": info})
        if device is not None and shared:
            # The device belongs to another attachment of this host (e.g. the
            # storage side handed us its target): leave it to that one.
            LOG.warning("rollback: keeping %s, attachment %s uses it", device.get("path"),
                        shared)
        elif device is not None:
            try:
                self.brick.disconnect(info, device, multipath, True)
            except IscsiAttachError as exc:
                LOG.error("rollback: disconnect failed: %s", exc)
        try:
            self.api.attachment_delete(att_id)
        except IscsiAttachError as exc:
            LOG.error("rollback: attachment delete failed: %s", exc)
        (self.records / f"{att_id}.json").unlink(missing_ok=True)

    def _save(self, att_id: str, volume_id: str, info: dict, device: dict,
              multipath: bool) -> None:
        self.records.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = {"attachment_id": att_id, "volume_id": volume_id, "multipath": multipath,
                  "device": device,
                  # Detach needs the target, not the secret.
                  "connection_info": {k: v for k, v in info.items() if k not in SECRET_KEYS}}
        fd, tmp = tempfile.mkstemp(dir=self.records)            # 0600
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(tmp, self.records / f"{att_id}.json")

    def find_records(self, ident: str | None) -> list[dict]:
        """Records of an attachment or of every attachment of a volume; all
        records when ident is None."""
        if not self.records.is_dir():
            return []
        found = []
        for path in sorted(self.records.glob("*.json")):
            rec = json.loads(path.read_text())
            if ident is None or ident in (rec["attachment_id"], rec["volume_id"]):
                found.append(rec)
        return found


def stable_link(dev: str, dev_dir: str = "/dev/disk", wait: float = 5.0) -> str | None:
    """A udev link to dev that names the volume itself (by-id wwn-/scsi-),
    else its by-path link; udev may still be making them, so wait a little."""
    end = time.monotonic() + wait
    while True:
        links: dict[str, str] = {}
        for sub in ("by-id", "by-path"):
            for link in sorted(Path(dev_dir, sub).glob("*")):
                if os.path.realpath(link) == dev:
                    links.setdefault(_link_rank(sub, link.name), str(link))
        if links or time.monotonic() > end:
            return links[min(links)] if links else None
        time.sleep(0.1)


def _link_rank(sub: str, name: str) -> str:
    if sub == "by-id":
        return "0" if name.startswith("wwn-") else "1" if name.startswith("scsi-3") else "2"
    return "3"


def device_in_use(dev: str) -> str | None:
    """"mounted at X" / "held by Y" / "open by pid N" / None."""
    name = os.path.basename(dev)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if "-" in fields and os.path.realpath(fields[fields.index("-") + 2]) == dev:
                return f"mounted at {fields[4]}"
    holders = Path("/sys/block", name, "holders")
    if holders.is_dir() and any(holders.iterdir()):
        return f"held by {', '.join(p.name for p in holders.iterdir())}"
    # udev probes a device after every close-after-write; wait that out
    # rather than call the device busy.
    end = time.monotonic() + UDEV_GRACE
    while True:
        openers = [(pid, comm) for pid, comm in _openers(dev) if pid != os.getpid()]
        if not openers or time.monotonic() > end or \
                not all(comm in UDEV_NAMES for _, comm in openers):
            break
        time.sleep(0.1)
    if openers:
        pid, comm = openers[0]
        return f"open by pid {pid} ({comm})"
    return None


def _openers(dev: str) -> list[tuple[int, str]]:
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.path.realpath(fd) == dev for fd in fd_dir.iterdir()):
                comm = (fd_dir.parent / "comm").read_text().strip()
                found.append((int(fd_dir.parent.name), comm))
        except OSError:
            continue            # the process ended or is not ours to read
    return found
