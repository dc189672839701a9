"""The in-memory fake honours the target contract (tests/contract)."""
from __future__ import annotations

import pytest

from iscsiattach.model import Backing, BackingKind, volume_name
from iscsiattach.targets.fake import FakeBackend, FakeTarget
from tests.contract.target_contract import Tamper, TargetContract

PREFIX = "iqn.2010-10.org.iscsiattach.unit:"


class FakeTamper(Tamper):
    def __init__(self, fake: FakeBackend) -> None:
        self.fake = fake

    def _tgt(self, vid) -> FakeTarget:
        return self.fake.targets[self.fake.target_iqn(vid)]

    def set_tpg_attribute(self, vid, name, value):
        tgt = self._tgt(vid)
        tgt.tpg_attributes[name] = value
        if name == "authentication" and value == "0":
            tgt.auth_method = "CHAP,None"     # as the kernel does

    def set_auth_method(self, vid, value):
        self._tgt(vid).auth_method = value

    def disable_tpg(self, vid):
        self._tgt(vid).tpg_enabled = False

    def set_chap_password(self, vid, initiator, value):
        from dataclasses import replace

        from iscsiattach.secret import Secret
        acl = self._tgt(vid).acls[initiator]
        acl.chap = replace(acl.chap, password=Secret(value))

    def remove_portal(self, vid, portal):
        self._tgt(vid).portals.discard(portal)

    def remove_lun0(self, vid):
        tgt = self._tgt(vid)
        tgt.lun0 = None
        for acl in tgt.acls.values():   # LIO drops mapped LUNs with their LUN
            acl.mapped_luns.pop(0, None)

    def create_foreign_target(self, iqn):
        self.fake.targets[iqn] = FakeTarget()

    def foreign_target_exists(self, iqn):
        return iqn in self.fake.targets

    def remove_foreign_target(self, iqn):
        self.fake.targets.pop(iqn, None)

    def remove_target_only(self, vid):
        del self.fake.targets[self.fake.target_iqn(vid)]

    def leftovers(self, vid):
        left = [iqn for iqn in self.fake.targets if iqn.endswith(vid)
                and iqn.startswith(self.fake.prefix)]
        return left + [n for n in self.fake.storage_objects if n == volume_name(vid)]


class TestFakeContract(TargetContract):
    @pytest.fixture
    def backend(self):
        return FakeBackend(prefix=PREFIX)

    @pytest.fixture
    def tamper(self, backend):
        return FakeTamper(backend)

    @pytest.fixture
    def make_backing(self, tmp_path):
        counter = iter(range(10**6))

        def make(size: int = 64 << 20) -> Backing:
            path = tmp_path / f"vol{next(counter)}.img"
            with open(path, "wb") as f:
                f.truncate(size)
            return Backing(BackingKind.FILE, str(path), size)
        return make
