"""Volume backends: files for real in tmp_path, lvm through a fake runner,
block devices through their refusals and a pretend host (tests/unit/fake_host.py;
the refusals of devices in use are in test_block_safety.py)."""
from __future__ import annotations

import errno
import os
import stat
import subprocess

import pytest
from oslo_config import cfg

from iscsiattach.exception import Conflict, InvalidInput, NotFound, VolumeBackendError
from iscsiattach.model import Backing, BackingKind
from iscsiattach.volumes import options
from iscsiattach.volumes.base import GIB, Provisioned, validate_size_gib
from iscsiattach.volumes.block import BlockBackend
from iscsiattach.volumes.devices import HostDevices
from iscsiattach.volumes.file import FileBackend
from iscsiattach.volumes.lvm import LvmBackend
from tests.unit.fake_host import FakeHost

VID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
LV = f"volume-{VID}"
LV_PATH = f"/dev/vg0/{LV}"


# -- size validation ----------------------------------------------------------

@pytest.mark.parametrize("size", [1, 100, 16384])
def test_size_accepted(size):
    assert validate_size_gib(size) == size


@pytest.mark.parametrize("size", [0, -1, 16385, True, 1.0, "1", None])
def test_size_refused(size):
    with pytest.raises(InvalidInput):
        validate_size_gib(size)


def test_size_limit_is_a_parameter():
    assert validate_size_gib(20000, max_gib=None) == 20000
    with pytest.raises(InvalidInput, match="1-10"):
        validate_size_gib(11, max_gib=10)


# -- file backend -------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    return FileBackend(str(tmp_path / "volumes"))


def test_file_create(files, tmp_path):
    made = files.create(VID, 2)
    path = str(tmp_path / "volumes" / f"{LV}.img")
    assert made == Provisioned(path, Backing(BackingKind.FILE, path, 2 * GIB), 2)
    st = os.stat(path)
    assert st.st_size == 2 * GIB
    assert st.st_blocks * 512 < 1 << 20, "the file must be sparse"
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "volumes").st_mode) == 0o700
    assert os.listdir(tmp_path / "volumes") == [f"{LV}.img"], "no temporary file left"


def test_file_directory_made_0700_despite_umask(tmp_path):
    old = os.umask(0o077 ^ 0o777)      # a umask that would strip the owner's bits
    try:
        FileBackend(str(tmp_path / "a" / "volumes")).create(VID, 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "volumes").st_mode) == 0o700


def test_file_create_is_idempotent(files):
    assert files.create(VID, 1) == files.create(VID, 1)


def test_file_create_other_size_conflicts(files):
    files.create(VID, 1)
    with pytest.raises(Conflict, match="1 GiB"):
        files.create(VID, 2)


def test_file_create_refuses_source_and_bad_input(files, tmp_path):
    with pytest.raises(InvalidInput, match="source"):
        files.create(VID, 1, source="/dev/sda")
    with pytest.raises(InvalidInput):
        files.create("not-a-uuid", 1)
    with pytest.raises(InvalidInput):
        files.create(VID, 0)
    assert not (tmp_path / "volumes").exists()


def test_file_refuses_a_symlink_in_its_place(files, tmp_path):
    (tmp_path / "volumes").mkdir()
    (tmp_path / "volumes" / f"{LV}.img").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(Conflict, match="not a regular file"):
        files.create(VID, 1)


def test_file_lost_race_counts_the_winner(files, monkeypatch):
    made = files.create(VID, 1)
    # The first look finds nothing; a concurrent create then wins the link.
    real_stat, looks = files._stat, []

    def stat_missing_first(path):
        looks.append(path)
        return None if len(looks) == 1 else real_stat(path)
    monkeypatch.setattr(files, "_stat", stat_missing_first)
    assert files.create(VID, 1) == made
    assert len(looks) == 2
    with pytest.raises(Conflict):
        looks.clear()
        files.create(VID, 2)


def test_file_relative_directory_refused():
    with pytest.raises(InvalidInput):
        FileBackend("volumes")


def test_file_extend(files):
    made = files.create(VID, 1)
    grown = files.extend(VID, made.location, 3)
    assert grown.size_gib == 3 and grown.backing.size == 3 * GIB
    assert os.stat(made.location).st_size == 3 * GIB
    assert files.extend(VID, made.location, 3) == grown          # equal: no-op
    with pytest.raises(InvalidInput, match="shrink"):
        files.extend(VID, made.location, 2)
    assert os.stat(made.location).st_size == 3 * GIB


def test_file_extend_missing_and_foreign_location(files, tmp_path):
    with pytest.raises(NotFound):
        files.extend(VID, files.path(VID), 2)
    with pytest.raises(InvalidInput, match="location"):
        files.extend(VID, str(tmp_path / "other.img"), 2)


def test_file_delete_is_idempotent(files):
    made = files.create(VID, 1)
    files.delete(VID, made.location)
    assert not os.path.exists(made.location)
    files.delete(VID, made.location)


def test_file_delete_refuses_foreign_location(files, tmp_path):
    victim = tmp_path / "keep.img"
    victim.write_bytes(b"data")
    with pytest.raises(InvalidInput):
        files.delete(VID, str(victim))
    assert victim.exists()


def test_file_provisioned(files):
    assert files.provisioned(VID, files.path(VID)) is None
    made = files.create(VID, 2)
    assert files.provisioned(VID, made.location) == made
    files.delete(VID, made.location)
    assert files.provisioned(VID, made.location) is None


# -- lvm backend --------------------------------------------------------------

class FakeRun:
    """Records argv and answers from a queue of (returncode, stdout, stderr)."""

    def __init__(self, *answers: tuple[int, str, str]) -> None:
        self.answers = list(answers)
        self.argvs: list[list[str]] = []

    def __call__(self, argv, **kwargs):
        assert isinstance(argv, list) and not kwargs.get("shell")
        assert kwargs["env"]["LC_ALL"] == "C"
        self.argvs.append(argv)
        rc, out, err = self.answers.pop(0)
        return subprocess.CompletedProcess(argv, rc, out, err)


MISSING = (5, "", f'  Failed to find logical volume "vg0/{LV}"\n')
LVS = ["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", f"vg0/{LV}"]


def size_answer(gib: int) -> tuple[int, str, str]:
    return (0, f"  {gib * GIB}\n", "")


def test_lvm_create_thick():
    run = FakeRun(MISSING, (0, "", ""))
    made = LvmBackend("vg0", run=run).create(VID, 2)
    assert made == Provisioned(LV_PATH, Backing(BackingKind.BLOCK, LV_PATH), 2)
    assert run.argvs == [LVS, ["lvcreate", "-y", "-Wy", "-Zy", "-n", LV, "-L", "2g", "vg0"]]


def test_lvm_create_thin():
    run = FakeRun(MISSING, (0, "", ""))
    LvmBackend("vg0", thin_pool="pool", run=run).create(VID, 5)
    assert run.argvs[1] == ["lvcreate", "-y", "-n", LV, "-V", "5g", "--thinpool", "pool", "vg0"]


def test_lvm_create_is_idempotent():
    run = FakeRun(size_answer(2))
    assert LvmBackend("vg0", run=run).create(VID, 2).size_gib == 2
    assert run.argvs == [LVS]


def test_lvm_create_other_size_conflicts():
    with pytest.raises(Conflict, match="3 GiB"):
        LvmBackend("vg0", run=FakeRun(size_answer(3))).create(VID, 2)


def test_lvm_create_tolerates_extent_rounding():
    run = FakeRun((0, f"{2 * GIB + (4 << 20)}\n", ""))
    assert LvmBackend("vg0", run=run).create(VID, 2).size_gib == 2


def test_lvm_create_lost_race_counts_the_winner():
    exists = f'  Logical Volume "{LV}" already exists in volume group "vg0"\n'
    run = FakeRun(MISSING, (5, "", exists), size_answer(1))
    assert LvmBackend("vg0", run=run).create(VID, 1).size_gib == 1


def test_lvm_create_failure_is_one_line():
    no_space = '  Volume group "vg0" has insufficient free space (10 extents): 512 required.\n'
    run = FakeRun(MISSING, (5, "", no_space), MISSING)
    with pytest.raises(VolumeBackendError) as e:
        LvmBackend("vg0", run=run).create(VID, 2)
    assert str(e.value) == (f"lvcreate failed for vg0/{LV}: Volume group \"vg0\" has "
                            "insufficient free space (10 extents): 512 required.")


def test_lvm_missing_vg_is_an_error_not_absence():
    run = FakeRun((5, "", '  Volume group "vg0" not found\n  Cannot process volume group vg0\n'))
    with pytest.raises(VolumeBackendError,
                       match="^lvs failed for .*Cannot process volume group vg0$"):
        LvmBackend("vg0", run=run).provisioned(VID, LV_PATH)


def test_lvm_failure_without_stderr():
    with pytest.raises(VolumeBackendError, match="exit status 3"):
        LvmBackend("vg0", run=FakeRun((3, "", ""))).provisioned(VID, LV_PATH)


def test_lvm_tool_not_installed():
    def run(argv, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", argv[0])
    with pytest.raises(VolumeBackendError, match="lvs not found"):
        LvmBackend("vg0", run=run).provisioned(VID, LV_PATH)


def test_lvm_create_refuses_source():
    run = FakeRun()
    with pytest.raises(InvalidInput, match="source"):
        LvmBackend("vg0", run=run).create(VID, 1, source="/dev/sdb")
    assert run.argvs == []


def test_lvm_extend():
    run = FakeRun(size_answer(1), (0, "", ""))
    grown = LvmBackend("vg0", run=run).extend(VID, LV_PATH, 3)
    assert grown.size_gib == 3 and grown.location == LV_PATH
    assert run.argvs == [LVS, ["lvextend", "-L", "3g", f"vg0/{LV}"]]


def test_lvm_extend_equal_is_a_noop():
    run = FakeRun(size_answer(3))
    assert LvmBackend("vg0", run=run).extend(VID, LV_PATH, 3).size_gib == 3
    assert run.argvs == [LVS]


def test_lvm_extend_refuses_shrink_missing_and_foreign_location():
    with pytest.raises(InvalidInput, match="shrink"):
        LvmBackend("vg0", run=FakeRun(size_answer(3))).extend(VID, LV_PATH, 2)
    with pytest.raises(NotFound):
        LvmBackend("vg0", run=FakeRun(MISSING)).extend(VID, LV_PATH, 2)
    with pytest.raises(InvalidInput, match="location"):
        LvmBackend("vg0", run=FakeRun()).extend(VID, "/dev/vg0/root", 2)


def test_lvm_delete_thick_discards_first():
    run = FakeRun(size_answer(1), (0, "", ""), (0, "", ""))
    LvmBackend("vg0", run=run).delete(VID, LV_PATH)
    assert run.argvs == [LVS, ["blkdiscard", LV_PATH], ["lvremove", "-y", f"vg0/{LV}"]]


def test_lvm_delete_goes_on_when_discard_fails():
    def run(argv, **kwargs):
        if argv[0] == "blkdiscard":
            raise FileNotFoundError(2, "No such file or directory", "blkdiscard")
        return fake(argv, **kwargs)
    fake = FakeRun(size_answer(1), (0, "", ""))
    LvmBackend("vg0", run=run).delete(VID, LV_PATH)
    assert fake.argvs[-1] == ["lvremove", "-y", f"vg0/{LV}"]
    fake = FakeRun(size_answer(1), (1, "", "BLKDISCARD ioctl failed: Operation not supported"),
                   (0, "", ""))
    LvmBackend("vg0", run=fake).delete(VID, LV_PATH)
    assert fake.argvs[-1] == ["lvremove", "-y", f"vg0/{LV}"]


def test_lvm_delete_thin_does_not_discard():
    run = FakeRun(size_answer(1), (0, "", ""))
    LvmBackend("vg0", thin_pool="pool", run=run).delete(VID, LV_PATH)
    assert run.argvs == [LVS, ["lvremove", "-y", f"vg0/{LV}"]]


def test_lvm_delete_is_idempotent():
    run = FakeRun(MISSING)
    LvmBackend("vg0", run=run).delete(VID, LV_PATH)
    assert run.argvs == [LVS]
    # Gone between the look and the removal: still done.
    LvmBackend("vg0", thin_pool="p", run=FakeRun(size_answer(1), MISSING)).delete(VID, LV_PATH)


def test_lvm_delete_in_use_fails():
    run = FakeRun(size_answer(1), (5, "", ""),
                  (5, "", f'  Logical volume vg0/{LV} in use.\n'))
    with pytest.raises(VolumeBackendError, match=f"^lvremove failed for vg0/{LV}: .* in use.$"):
        LvmBackend("vg0", run=run).delete(VID, LV_PATH)


def test_lvm_provisioned():
    backend = LvmBackend("vg0", run=FakeRun(size_answer(4), MISSING))
    assert backend.provisioned(VID, LV_PATH) == Provisioned(
        LV_PATH, Backing(BackingKind.BLOCK, LV_PATH), 4)
    assert backend.provisioned(VID, LV_PATH) is None


@pytest.mark.parametrize("name", ["", "-vg", ".", "..", "vg/0", "vg 0", "vg,0", "v" * 128,
                                  "vg\n", None, 3])
def test_lvm_bad_names_refused(name):
    with pytest.raises(InvalidInput):
        LvmBackend(name)
    if name is not None:            # no thin pool: thick volumes
        with pytest.raises(InvalidInput):
            LvmBackend("vg0", thin_pool=name)


@pytest.mark.parametrize("name", ["vg0", "a+b_c.d-e", "_x", "v" * 127])
def test_lvm_good_names_accepted(name):
    assert LvmBackend(name, thin_pool=name).vg == name


# -- block backend ------------------------------------------------------------

@pytest.fixture
def device(tmp_path):
    """A pretend host with a free 10.5 GiB block device at /dev/fake0."""
    host = FakeHost(tmp_path / "host")
    host.disk("fake0", 0, size=10 * GIB + GIB // 2, major=7)
    return host


def test_block_create(device):
    made = device.backend().create(VID, 4, source="/dev/fake0")
    assert made == Provisioned("/dev/fake0", Backing(BackingKind.BLOCK, "/dev/fake0"), 10)
    assert device.backend().create(VID, 10, source="/dev/fake0") == made


def test_block_create_larger_than_device_refused(device):
    with pytest.raises(InvalidInput, match="10.50 GiB"):
        device.backend().create(VID, 11, source="/dev/fake0")


def test_block_create_needs_source():
    with pytest.raises(InvalidInput, match="source"):
        BlockBackend(["/dev/"]).create(VID, 1)


@pytest.mark.parametrize("source", ["dev/sda", "/dev/../etc/passwd", "/dev/disk/../sda",
                                    "/etc/passwd", "/devil/sda", "/dev/a,b", 7])
def test_block_bad_paths_refused(source, device):
    with pytest.raises(InvalidInput):
        device.backend().create(VID, 1, source=source)


def test_block_prefixes_are_directories(device):
    backend = BlockBackend(["/dev/disk/by-id"])
    with pytest.raises(InvalidInput, match="outside"):
        backend.create(VID, 1, source="/dev/fake0")
    with pytest.raises(InvalidInput, match="outside"):
        backend.create(VID, 1, source="/dev/disk/by-idx")
    with pytest.raises(InvalidInput):
        BlockBackend(["dev"])
    with pytest.raises(InvalidInput):
        BlockBackend([])


def test_block_missing_device_refused(tmp_path):
    with pytest.raises(InvalidInput, match="no device"):
        BlockBackend([str(tmp_path)]).create(VID, 1, source=str(tmp_path / "nothing"))


def test_block_regular_file_refused(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 4096)
    link = tmp_path / "link"
    link.symlink_to(image)
    (tmp_path / "dir").mkdir()
    backend = BlockBackend([str(tmp_path)])
    for path in (image, link, tmp_path / "dir"):
        with pytest.raises(InvalidInput, match="not a block device"):
            backend.create(VID, 1, source=str(path))
    assert image.read_bytes() == b"\0" * 4096


def test_block_real_device_size_read_from_sysfs():
    """Any block device the host has (read-only: sysfs, no open)."""
    names = sorted(os.listdir("/sys/class/block")) if os.path.isdir("/sys/class/block") else []
    paths = [f"/dev/{n}" for n in names if os.path.exists(f"/dev/{n}")
             and stat.S_ISBLK(os.stat(f"/dev/{n}").st_mode)]
    if not paths:
        pytest.skip("no block device node on this host")
    with open(f"/sys/class/block/{os.path.basename(paths[0])}/size") as f:
        expected = int(f.read()) * 512
    host = HostDevices()
    assert host.size(host.resolve(paths[0])) == expected


def test_block_extend_only_after_the_device_grew(device):
    backend = device.backend()
    with pytest.raises(InvalidInput, match="grow the device"):
        backend.extend(VID, "/dev/fake0", 11)
    device.set_size("/dev/fake0", 12 * GIB)
    assert backend.extend(VID, "/dev/fake0", 11).size_gib == 12
    with pytest.raises(NotFound):
        backend.extend(VID, "/dev/gone", 11)


def test_block_delete_forgets_only(device):
    device.backend().delete(VID, "/dev/fake0")
    assert device.backend().provisioned(VID, "/dev/fake0").size_gib == 10


def test_block_provisioned(device):
    assert device.backend().provisioned(VID, "/dev/fake0").size_gib == 10
    assert device.backend().provisioned(VID, "/dev/gone") is None


def test_block_provisioned_none_once_no_longer_a_device(tmp_path):
    image = tmp_path / "was-a-device"
    image.write_bytes(b"")
    assert BlockBackend([str(tmp_path)]).provisioned(VID, str(image)) is None


# -- options ------------------------------------------------------------------

def make_conf(**volumes) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("state_path", default="/var/lib/iscsiattach")])
    options.register(conf)
    conf([])
    for key, value in volumes.items():
        conf.set_override(key, value, group=options.GROUP)
    return conf


def test_options_defaults():
    conf = make_conf()
    assert conf.volumes.backend == "file"
    # Safe by default: no device of the host is reachable until listed.
    assert conf.volumes.block_allowed_prefixes == []
    assert conf.volumes.block_allowed_devices == []
    assert conf.volumes.max_size_gib == 16384
    backend = options.backend_from_conf(conf)
    assert isinstance(backend, FileBackend)
    assert backend.directory == "/var/lib/iscsiattach/volumes"


def test_options_make_each_backend():
    assert options.backend_from_conf(make_conf(file_directory="/srv/v")).directory == "/srv/v"
    lvm = options.backend_from_conf(make_conf(backend="lvm", lvm_volume_group="vg0",
                                              lvm_thin_pool="pool"))
    assert isinstance(lvm, LvmBackend) and (lvm.vg, lvm.thin_pool) == ("vg0", "pool")
    block = options.backend_from_conf(make_conf(backend="block",
                                                block_allowed_prefixes=["/dev/disk/by-id/"]))
    assert isinstance(block, BlockBackend) and block.allowed_prefixes == ("/dev/disk/by-id/",)


def test_options_lvm_needs_a_volume_group():
    with pytest.raises(InvalidInput, match="lvm_volume_group"):
        options.backend_from_conf(make_conf(backend="lvm"))


def test_options_unknown_backend_refused():
    with pytest.raises(ValueError):
        make_conf(backend="ceph")


def test_backing_comes_from_the_recorded_location_without_io(tmp_path):
    from iscsiattach.volumes.block import BlockBackend
    from iscsiattach.volumes.file import FileBackend
    from iscsiattach.volumes.lvm import LvmBackend

    def no_run(*args, **kwargs):
        raise AssertionError("backing() must not run a tool")
    assert LvmBackend("vg0", run=no_run).backing("/dev/vg0/volume-x", 3) == \
        Backing(BackingKind.BLOCK, "/dev/vg0/volume-x")
    assert BlockBackend(["/dev/"]).backing("/dev/loop7", 1).kind is BackingKind.BLOCK
    assert FileBackend(str(tmp_path)).backing("/v/volume-x.img", 2) == \
        Backing(BackingKind.FILE, "/v/volume-x.img", 2 << 30)


# -- file_io: direct where the filesystem has it, the page cache elsewhere -----
@pytest.fixture
def no_direct_io(monkeypatch):
    """A filesystem without O_DIRECT (tmpfs before Linux 6.6): EINVAL."""
    real, probes = os.open, []

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_DIRECT:
            probes.append(path)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", open_)
    return probes


def test_auto_file_io_is_direct_where_the_filesystem_has_it(files):
    assert files.create(VID, 1).backing.direct_io
    assert files.backing(files.path(VID), 1).direct_io


def test_auto_file_io_uses_the_page_cache_where_there_is_no_direct_io(
        files, no_direct_io, tmp_path):
    made = files.create(VID, 1)
    assert made.backing == Backing(BackingKind.FILE, made.location, GIB, direct_io=False)
    assert files.backing(made.location, 1) == made.backing
    assert len(no_direct_io) == 1                   # found once, not per volume
    assert os.listdir(tmp_path / "volumes") == [f"{LV}.img"], "the probe's file is gone"


def test_direct_file_io_refuses_to_create_where_it_cannot_serve(tmp_path, no_direct_io):
    backend = FileBackend(str(tmp_path / "volumes"), file_io="direct")
    with pytest.raises(InvalidInput, match="without direct I/O.*file_io = direct"):
        backend.create(VID, 1)
    assert os.listdir(tmp_path / "volumes") == [], "nothing made"


def test_page_cache_file_io_never_probes(tmp_path, no_direct_io):
    backend = FileBackend(str(tmp_path / "volumes"), file_io="page-cache")
    assert not backend.create(VID, 1).backing.direct_io
    assert no_direct_io == []


def test_unknown_file_io_refused(tmp_path):
    with pytest.raises(InvalidInput, match="invalid file_io 'fast'"):
        FileBackend(str(tmp_path / "volumes"), file_io="fast")
