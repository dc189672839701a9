"""Prose of sections 3, 4 and 5 of docs/performance.md."""
from __future__ import annotations

from typing import Any

from benchlib.report_text import table_head


def _s(v: Any) -> str:
    return f"{v:.2f} s" if isinstance(v, (int, float)) else "—"


def e2e_text(rep, rows, fa, fd, startup, details, n_in, n_fl, floor_rows, phase_rows) -> str:
    return f"""
## 3. End-to-end attach on the host

`iscsiattach attach`: this host's connector (os-brick), attachment create
with it (REST: target, LUN, ACL, CHAP), os-brick `connect_volume` (node
record, CHAP, login, scan, wait for the device and its WWN), confirmation
that the device is the volume (VPD 0x80 serial, WWN, size, read-only), and
attachment complete. `detach`: os-brick `disconnect_volume` (flush, remove
the SCSI device, logout, delete the node record) and attachment delete.
The floor: a bare `iscsiadm` node setup (CHAP secret written into the 0600
node record), login and wait until `/dev/disk/by-path/...-lun-0` appears,
on a target already prepared through the API; its detach floor is a
logout until the device is gone, and the node record deleted.

In-process runs time the library as a long-running host agent would use
it ({n_in} samples each after one warm-up, floor {n_fl} samples): as shipped
("iscsiattach"), and with its two speed-ups over os-brick switched off ("os-brick
as is": os-brick's all-protocol connector, and its own WWN look with a fixed
1 s sleep after a miss) for the before/after in one boot. The CLI row is a new
process per command, as a user runs it, and includes starting Python and
the host side's imports (`python -c pass` {_s(startup.get('python'))};
`iscsiattach.host.brick` set up with os-brick's iSCSI connector, as the CLI
does, {_s(startup.get('import_host_side'))}; all protocols'
`os_brick.initiator.connector`, which the CLI no longer imports,
{_s(startup.get('import_os_brick'))} in this VM).

Measured on: {rep.where()}. Command: `tools/bench` (section `e2e`).

| path | attach p50 | / floor | detach p50 | / floor |
|---|---|---|---|---|
| iscsiadm floor | {_s(fa)} | 1.00x | {_s(fd)} | 1.00x |
""" + "\n".join(rows) + """

Goal: attach within 1.5x of the floor.

![attach phases](performance-attach-phases.png)

![detach phases](performance-detach-phases.png)

Phases, p50 (seconds):

| run | phases | total |
|---|---|---|
""" + "\n".join(floor_rows + phase_rows) + """

What os-brick ran (last sample; subprocesses listed by program and iscsiadm
mode/operation/setting name only):

| run | call | subprocesses | their time | sleeps | slept | sleep sites | commands |
|---|---|---|---|---|---|---|---|
""" + "\n".join(details) + """

### os-brick's fixed wait, and what removes it

`ISCSIConnector._connect_single_volume()` (os-brick 7.1.1,
`os_brick/initiator/connectors/iscsi.py`) finds the device in sysfs right
after the login, then asks `LinuxSCSI.get_sysfs_wwn()` for its WWN. That
function reads `/sys/block/sdX/device/wwid` but only returns it if the udev
symlink `/dev/disk/by-id/scsi-<wwid>` already exists. On a fresh login the
kernel has just announced the disk and udev has not yet run its
persistent-storage rules, so the first look always misses and os-brick
sleeps a fixed `time.sleep(1)` before looking again (up to 10 times). No
os-brick option changes this (`device_scan_attempts` only bounds the
rescans in `_connect_vol`, which also sleep 1 s per attempt when the device
is not in sysfs yet). iscsiattach's connector (`iscsiattach/host/brick.py`)
repeats os-brick's own first look every 10 ms (up to 10 s) until udev has
made the link, so it succeeds as soon as udev is done; multipath devices
and hosts without a running udevd are left to os-brick. Its connector holds
the iSCSI fields only (no NVMe/host-uuid probing: six programs fewer). The
detach side has no fixed wait in these runs (its removal poll found the
device gone at once): os-brick as is runs nine programs (discoverydb and
node and session reads, multipathd, `blockdev --flushbufs`, the SCSI delete
via `tee`, a node.startup update, logout, node delete) against the floor's
two, and offers no setting to skip the reads. Ours writes the SCSI delete
to sysfs itself, reads the sessions from sysfs and sets node.startup in the
record file: the table above lists what still runs.
"""


def restore_text(rep, rows, fit, ctl_raw: dict) -> str:
    fit_txt = (f"targetctl where not measured: t ≈ {fit[0]:.2e}·N² + {fit[1]:.3f}·N s, from "
               f"{fit[2]}." if fit else "No targetctl point in this run.")
    top = max(rep.stages(), default=1000)
    failed = [f"{n}: {d.get('errors')} errors {d.get('stderr', '')[:200]}"
              for n, d in ctl_raw.items() if isinstance(d, dict) and d.get("errors")]
    return f"""
## 4. Restore after a reboot

N exports, LIO empty of them: iscsiattachd started until it answers HTTP
(it listens, and tells systemd it is ready, only after its first reconcile
has rebuilt every export from its store), against `targetctl restore` of an
equivalent `saveconfig.json` (N fileio aio storage objects, N targets with
a closed TPG, a portal, LUN 0 and one CHAP ACL each). `targetctl restore`
is `RTSRoot().restore_from_file(clear_existing=True)`, which first wipes all
of LIO — forbidden here — so the baseline runs that very call through
Debian's python3 and rtslib-fb with `clear_existing=False`, on an LIO that
holds none of those objects (same restore work, no wipe). It is quadratic:
for each LUN, `LUN.setup()` scans all storage objects, and each new storage
object without an index scans for a free one. targetctl was measured at
the sizes shown; at {top} exports it is measured when the run's time budget
allows it, else its {top} figure is estimated as said below the table.

Measured on: {rep.where()}. Command: `tools/bench` (sections `restore_ours`, `restore_targetctl`).

""" + table_head("N", "iscsiattachd start until ready", "of which first reconcile",
                  "targetctl restore", "targetctl / ours") + "\n".join(rows) + f"""

{fit_txt} Goal: at least 10x faster than targetctl at 1000.

{startup_note(rep)}
{('Failed targetctl restores: ' + '; '.join(failed)) if failed else ''}

![restore](performance-restore.png)
"""


def datapath_text(rep, rows) -> str:
    return f"""
## 5. Data path

fio, libaio, O_DIRECT, queue depth 32: sequential 1 MiB and random 4 KiB,
read and write, after the region was written once (no reads of holes).
"raw": the backing file itself (a sparse file on ext4 on a loop device in
the VM, O_DIRECT). "iscsiattach": a volume exported by iscsiattachd —
fileio with **asynchronous direct I/O** (`aio=True`) and a write-back cache
(`write_back=True`, honouring SYNCHRONIZE CACHE), never synchronous fileio
— logged in over the loopback with iscsiadm. "targetcli": the same kind of
file exported with targetcli's defaults (`fileio` `write_back=True`, buffered
through the page cache, no aio). Same VM, same run, one after the other.

Measured on: {rep.where()}. Command: `tools/bench` (section `datapath`).

""" + table_head("job", "raw", "iscsiattach", "targetcli defaults", "ours / raw",
                  "ours / targetcli", "p99 latency ours / targetcli") + "\n".join(rows) + """

![data path](performance-datapath.png)

Under TCG every SCSI command crosses the emulated CPU twice (initiator and
target in one guest), so the iSCSI path is CPU-bound here; the raw file is
not. The comparison that matters for the backstore choice is ours against
targetcli's defaults on the same path.
"""


def startup_note(rep) -> str:
    st = (rep.s.get("e2e") or {}).get("startup") or {}
    if "import_daemon" not in st:
        return ""
    return (f"The difference between the two iscsiattachd columns is the process start "
            f"before the first reconcile: in this VM `python -c pass` took "
            f"{_s(st.get('python'))}, `import iscsiattach.cmd.daemon` "
            f"{_s(st.get('import_daemon'))} and, in a separate process, `import alembic` alone "
            f"{_s(st.get('import_alembic'))}, `import rtslib_fb` "
            f"{_s(st.get('import_rtslib'))} (each a new process on a shared CPU: noisy), then "
            f"the store's schema check (one query; alembic is imported only when a migration "
            f"is due) and the API setup. targetctl pays its own interpreter start and rtslib "
            f"import too.")
