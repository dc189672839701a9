"""Who may log in, and who may not: each case a real iscsiadm attempt on LIO.

Several hosts are played by open-iscsi ifaces with their own initiator
names. A sampler thread reads every TPG of ours from configfs the whole
time: while enabled, authentication stays on and no demo mode ever shows.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from iscsiattach.attachments.wiring import lock_dir, wire_services
from iscsiattach.exception import Conflict
from iscsiattach.model import SECURE_TPG_ATTRIBUTES, Portal
from iscsiattach.targets.lio import LioBackend
from iscsiattach.targets.lio.configfs import CONFIGFS
from iscsiattach.volumes.file import FileBackend
from tests.functional.conftest import PREFIX
from tests.functional.iscsi import (
    BAD_CREDENTIALS,
    NO_ACL,
    NO_TARGET,
    Node,
    delete_iface,
    initiator_name,
    make_iface,
    wait_for,
)
from tests.functional.sampler import Sampler
from tests.support.scsi import is_write_protected, logical_block_size, read10, refused_write

PORTAL = Portal("127.0.0.1")
OTHER = "iqn.2004-10.com.example:matrix-other"
STRANGER = "iqn.2004-10.com.example:matrix-stranger"


class TpgWatch(Sampler):
    """Reads our TPGs' security settings over and over until stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.violations: list[str] = []
        self.enabled_seen = 0

    def check(self) -> list[str]:
        bad = []
        try:
            targets = [t for t in (CONFIGFS / "iscsi").iterdir() if t.name.startswith(PREFIX)]
        except FileNotFoundError:
            return []               # the iscsi fabric is loaded with the first target
        for target in targets:
            tpg = target / "tpgt_1"
            try:
                # A TPG is made closed (disabled: no login, not even
                # SendTargets) and secured before it is enabled, so a
                # disabled one may still show the kernel's defaults.
                if (tpg / "enable").read_text().strip() != "1":
                    continue
                self.enabled_seen += 1
                for name, want in SECURE_TPG_ATTRIBUTES.items():
                    got = (tpg / "attrib" / name).read_text().strip()
                    if got != want:
                        bad.append(f"{target.name}: {name}={got}")
                if "CHAP" not in (tpg / "param" / "AuthMethod").read_text():
                    bad.append(f"{target.name}: AuthMethod without CHAP")
            except FileNotFoundError:
                continue            # made or removed while we looked
        return bad

    def sample(self) -> None:
        self.violations += self.check()


@pytest.fixture
def services(tmp_path, scratch_fs, backend):
    lio = LioBackend(prefix=PREFIX, lock_path=lock_dir(str(tmp_path / "state")))
    return wire_services(str(tmp_path / "state"), lio, FileBackend(str(scratch_fs / "matrix")),
                         (PORTAL,))


@pytest.fixture
def ifaces():
    made = {OTHER: make_iface("matrix-other", OTHER),
            STRANGER: make_iface("matrix-stranger", STRANGER)}
    yield made
    for name in made.values():
        delete_iface(name)


def connector(initiator: str, mode: str | None = None) -> dict:
    props = {"initiator": initiator, "ip": "127.0.0.1", "host": initiator.rsplit(":", 1)[-1]}
    return {**props, "mode": mode} if mode else props


def node_for(info, iface=None, user=None, secret=None) -> Node:
    node = Node(info["target_iqn"], Portal.parse(info["target_portal"]), iface)
    return node.setup(user or info["auth_username"], secret or info["auth_password"].reveal())


def try_login(info, iface=None) -> tuple[bool, Node]:
    node = node_for(info, iface)
    return node.login_retrying().returncode == 0, node


def discovered(initiator: str) -> set[str]:
    """Our targets that SendTargets shows to this initiator name (libiscsi,
    so no node records are made)."""
    out = subprocess.run(["iscsi-ls", "-i", initiator, f"iscsi://{PORTAL}"],
                         capture_output=True, text=True, timeout=60).stdout
    return {word.split(":", 1)[1] for line in out.splitlines() for word in line.split()
            if word.startswith("Target:") and PREFIX in word}


def test_login_refusal_matrix(services, ifaces, results_dir):
    me = initiator_name()
    vol, other_vol, ro_vol = (services.volume_service.create(1) for _ in range(3))
    nodes: list[Node] = []
    with TpgWatch() as watch:
        att, info = services.attachment_service.create(vol.id, str(uuid.uuid4()), connector(me))
        # Each refused, and for its own reason. One at a time: the first two
        # share a node record (same target, portal and iface).
        cases = {
            "wrong CHAP secret": (lambda: node_for(info, secret="WrongSecret0123456"),
                                  BAD_CREDENTIALS),
            "wrong CHAP user": (lambda: node_for(info, user="not-" + info["auth_username"]),
                                BAD_CREDENTIALS),
            "unknown initiator IQN": (lambda: node_for(info, iface=ifaces[STRANGER]), NO_ACL),
        }
        for make, reason in cases.values():
            node = make()
            nodes.append(node)
            node.assert_refused(reason)
            node.delete()
        assert watch.check() == []

        # A second initiator on a non-multiattach volume: refused by the
        # service, and its login with the first one's credentials fails.
        with pytest.raises(Conflict):
            services.attachment_service.create(vol.id, str(uuid.uuid4()), connector(OTHER))
        node = node_for(info, iface=ifaces[OTHER])
        nodes.append(node)
        node.assert_refused(NO_ACL)      # no ACL for it
        node.delete()

        ok, mine = try_login(info)
        nodes.append(mine)
        assert ok, "the attachment's own initiator could not log in"

        # SendTargets shows each initiator only what it may see.
        services.attachment_service.create(other_vol.id, str(uuid.uuid4()), connector(OTHER))
        assert discovered(me) == {info["target_iqn"]}
        assert discovered(OTHER) == {f"{PREFIX}volume-{other_vol.id}"}
        assert discovered(STRANGER) == set()

        # Writes on a read-only attachment are refused by the target.
        _, ro_info = services.attachment_service.create(ro_vol.id, str(uuid.uuid4()),
                                                        connector(me, "ro"))
        ok, ro_node = try_login(ro_info)
        nodes.append(ro_node)
        assert ok
        dev = ro_node.device()
        before = read10(dev, 0, 1, logical_block_size(dev)).data
        answer, after = refused_write(dev)
        assert is_write_protected(answer), f"not refused by the target: {answer}"
        assert after == before
        ro_node.delete()

        # After its attachment is deleted, the initiator is out at once.
        services.attachment_service.delete(att.id)
        assert wait_for(lambda: mine.session_state() != "LOGGED_IN", 30)
        mine.logout()
        mine.assert_refused(NO_TARGET)      # the target is gone
        mine.delete()
        assert watch.check() == []
    (results_dir / "login-matrix.json").write_text(json.dumps(
        {"tpg_samples": watch.samples, "enabled_tpg_reads": watch.enabled_seen,
         "violations": watch.violations[:20]}, indent=1))
    assert watch.violations == [] and watch.samples > 10 and watch.enabled_seen > 10
    for node in nodes:
        node.delete()
    assert os.path.exists(CONFIGFS / "iscsi" / f"{PREFIX}volume-{other_vol.id}")
