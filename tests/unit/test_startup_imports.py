"""What starting the daemon imports: alembic and SQLAlchemy only when a
migration is due, pyroute2 only for portals given as interface names; and the host side's
os-brick without eventlet's green DNS. In the slow VM each of them costs
more to import than the rest of the daemon's start."""
from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys

from iscsiattach.store import Store
from iscsiattach.store.db import MIGRATIONS, head_revision


def _modules_after(code: str) -> set[str]:
    res = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(res.stdout.split())


def test_head_revision_is_alembics_own():
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()


def test_a_start_on_a_current_store_imports_neither(tmp_path):
    db = tmp_path / "state" / "db.sqlite"
    Store(str(db)).upgrade()                    # the first start migrates (alembic)
    got = _modules_after(
        "import iscsiattach.cmd.daemon\n"
        "from iscsiattach.net import resolve_portals\n"
        "from iscsiattach.store import Store\n"
        f"s = Store({str(db)!r}); s.upgrade(); assert s.revision() == {head_revision()!r}\n"
        "assert resolve_portals(['127.0.0.1', '[::1]:3261'], 3260)\n")
    assert "iscsiattach.cmd.daemon" in got and "sqlite3" in got
    assert not {"alembic", "sqlalchemy", "pyroute2"} & got


def test_a_store_behind_the_head_is_migrated(tmp_path):
    db = tmp_path / "db.sqlite"
    store = Store(str(db))
    store.upgrade()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM alembic_version")
        conn.execute("DROP TABLE attachments")
        conn.execute("DROP TABLE volumes")
    store.upgrade()
    assert store.revision() == head_revision()
    assert store.volumes() == []


def test_the_host_side_imports_os_brick_without_green_dns(tmp_path):
    got = _modules_after(
        "import os; os.environ.pop('EVENTLET_NO_GREENDNS', None)\n"
        "from iscsiattach.host import brick\n"
        f"brick.setup({str(tmp_path / 'locks')!r}); brick._iscsi(False)\n")
    assert "os_brick.initiator.connectors.iscsi" in got and "eventlet" in got
    assert "eventlet.support.greendns" not in got and "dns" not in got
