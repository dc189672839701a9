"""targetcli baseline: a sample cut at its cap leaves nothing behind, and the
clean-up touches only the baseline's own objects (fake configfs, no LIO)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from benchlib import lio_cleanup, tcli  # noqa: E402 - tools/ is not a package on the path

PFX = "iqn.2010-10.org.iscsiattach.bench-targetcli:"


@pytest.fixture
def cfs(tmp_path, monkeypatch):
    root = tmp_path / "target"
    (root / "core").mkdir(parents=True)
    (root / "iscsi").mkdir()
    monkeypatch.setattr(lio_cleanup, "CONFIGFS", root)
    real = Path.rmdir

    def rmdir(self: Path) -> None:
        """configfs: attribute files and (empty) default groups go with the
        dir; user-made children and links must be gone first."""
        for f in self.iterdir():
            if f.is_file() and not f.is_symlink():
                f.unlink()
            elif f.name in ("acls", "lun", "np") and f.is_dir():
                real(f)
        real(self)
    monkeypatch.setattr(Path, "rmdir", rmdir)
    return root


class FakeTargetcli:
    """Each call builds its piece in the fake configfs; a second storage
    object on one file fails as targetcli does."""

    def __init__(self, root: Path) -> None:
        self.root, self.hba, self.files = root, root / "core" / "fileio_0", {}

    def __call__(self, *args: str) -> float:
        path, verb = args[0], args[1]
        if path == "/backstores/fileio" and verb == "create":
            name, dev = args[2].split("=", 1)[1], args[3].split("=", 1)[1]
            for so in self.hba.glob("*") if self.hba.exists() else []:
                if (so / "dev").exists() and (so / "dev").read_text() == dev:
                    raise RuntimeError(f"storage object for {dev} already exists")
            (self.hba / name).mkdir(parents=True)
            (self.hba / name / "dev").write_text(dev)
        elif path == "/iscsi" and verb == "create":
            (self.root / "iscsi" / args[2] / "tpgt_1" / "acls").mkdir(parents=True)
            (self.root / "iscsi" / args[2] / "tpgt_1" / "lun").mkdir()
            (self.root / "iscsi" / args[2] / "tpgt_1" / "np").mkdir()
        elif path.endswith("/portals"):
            iqn = path.split("/")[2]
            (self.root / "iscsi" / iqn / "tpgt_1" / "np" / f"{args[2]}:3260").mkdir()
        elif path.endswith("/luns"):
            iqn, so = path.split("/")[2], args[2].rsplit("/", 1)[1]
            lun = self.root / "iscsi" / iqn / "tpgt_1" / "lun" / "lun_0"
            lun.mkdir()
            (lun / "link").symlink_to(self.hba / so)
        elif verb == "delete":
            raise AssertionError("a cut sample must not reach its deletes")
        return 80.0


def test_cut_sample_leaves_nothing_and_next_stage_runs(cfs, monkeypatch):
    fake = FakeTargetcli(cfs)
    monkeypatch.setattr(tcli, "tcli", fake)
    clock = iter(range(0, 10_000, 100))      # each look at the clock: 100 s later
    monkeypatch.setattr(tcli.time, "monotonic", lambda: float(next(clock)))
    # Someone else's objects: must survive.
    (cfs / "core" / "fileio_0" / "volume-abc").mkdir(parents=True)
    (cfs / "iscsi" / "iqn.2010-10.org.iscsiattach.bench:v1").mkdir()
    other = cfs / "core" / "iblock_1" / "bench-rts-1-0"
    other.mkdir(parents=True)
    files = [Path("/x/tcli-0.img")]
    out = tcli.control_plane(PFX, files, 1, deadline=450.0)
    assert out["estimated"] == 1 and out["per_call"]["n"] < 7
    assert not any(p.name.startswith(PFX) for p in (cfs / "iscsi").iterdir())
    assert sorted(p.name for p in (cfs / "core" / "fileio_0").iterdir()) == ["volume-abc"]
    assert other.is_dir() and (cfs / "iscsi" / "iqn.2010-10.org.iscsiattach.bench:v1").is_dir()
    # The next stage reuses the same file: it starts clean and runs.
    out = tcli.control_plane(PFX, files, 1, deadline=450.0)
    assert out["leftovers_removed"] == 0


def test_leftovers_from_an_earlier_run_are_removed_first(cfs, monkeypatch):
    fake = FakeTargetcli(cfs)
    monkeypatch.setattr(tcli, "tcli", fake)
    fake("/backstores/fileio", "create", "name=bench-tcli-1-0", "file_or_dev=/x/tcli-0.img")
    calls = []
    monkeypatch.setattr(tcli, "_until", lambda cmds, deadline: calls.append(cmds) or [1.0])
    out = tcli.control_plane(PFX, [Path("/x/tcli-0.img")], 1)
    assert out["leftovers_removed"] == 1


def test_failed_call_still_cleans(cfs, monkeypatch):
    fake = FakeTargetcli(cfs)
    n = {"calls": 0}

    def failing(*args: str) -> float:
        n["calls"] += 1
        if n["calls"] == 3:
            raise RuntimeError("targetcli failed")
        return fake(*args)
    monkeypatch.setattr(tcli, "tcli", failing)
    with pytest.raises(RuntimeError):
        tcli.control_plane(PFX, [Path("/x/tcli-0.img")], 1)
    assert not list((cfs / "iscsi").iterdir())
    hba = cfs / "core" / "fileio_0"
    assert not hba.exists() or not list(hba.iterdir())
