"""Shared fixtures: the services over the fake target and file volumes."""
from __future__ import annotations

import pytest

from iscsiattach.attachments.wiring import wire_services
from iscsiattach.model import Portal
from iscsiattach.targets.fake import FakeBackend
from iscsiattach.volumes.file import FileBackend

PREFIX = "iqn.2010-10.org.iscsiattach.unit:"


@pytest.fixture
def fake_target():
    return FakeBackend(prefix=PREFIX)


@pytest.fixture
def services(tmp_path, fake_target):
    return wire_services(str(tmp_path / "state"), fake_target,
                         FileBackend(str(tmp_path / "state" / "volumes")),
                         (Portal("127.0.0.1"),), max_size_gib=100)
