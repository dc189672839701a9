"""A fork server for iscsiattachd: imports the daemon once, forks each start.

Under TCG, importing the daemon's dependencies (SQLAlchemy, alembic,
oslo.*, rtslib-fb) takes the better part of a minute; the crash tests start
the daemon hundreds of times. This server imports them once and forks a
child per start; the child runs ``iscsiattach.cmd.daemon.main`` with its own
argv, environment and log, exactly as the ``iscsiattachd`` script would,
and is a real process that a test kills with SIGKILL. Only the imports are
shared: every start builds its config, store, LIO backend and reconciler
afresh.

Protocol: one JSON object per line on stdin, one answer per line on stdout.
  {"op": "spawn", "argv": [...], "env": {...}, "log": PATH}  -> {"pid": N}
  {"op": "poll", "pid": N}                                    -> {"status": RC|null}
RC is what subprocess would say: the exit code, or -SIGNAL.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAZY = ("iscsiattach.cmd.daemon", "iscsiattach.net", "alembic.command",
        "alembic.runtime.migration", "sqlite3", "logging.handlers", "difflib",
        "multiprocessing", "unittest.mock", "psutil", "pyroute2", "encodings.idna")


def _child(argv: list[str], env: dict[str, str], log: str) -> None:
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.environ.update(env)
        from iscsiattach import failpoints
        from iscsiattach.cmd import daemon
        failpoints.rearm()
        sys.argv = ["iscsiattachd", *argv]
        code = daemon.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:       # noqa: BLE001 - report, then leave without pytest's atexit
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _status(raw: int) -> int:
    return -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)


def serve() -> None:
    # Everything the daemon imports, once: at import time and lazily while
    # it starts (pyroute2 through iscsiattach.net, sqlite3, alembic).
    import importlib
    for name in LAZY:
        importlib.import_module(name)
    done: dict[int, int] = {}
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "spawn":
            out.flush()
            pid = os.fork()
            if pid == 0:
                _child(req["argv"], req["env"], req["log"])
            answer = {"pid": pid}
        else:
            pid = req["pid"]
            if pid not in done:
                got, raw = os.waitpid(pid, os.WNOHANG)
                if got == pid:
                    done[pid] = _status(raw)
            answer = {"status": done.get(pid)}
        out.write(json.dumps(answer) + "\n")
        out.flush()


class ForkServer:
    """The client side: starts the server process once and asks it for daemons."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.functional.forkserver"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
        self._lock = threading.Lock()
        self._ready = False

    def _ask(self, req: dict) -> dict:
        with self._lock:
            if not self._ready:
                assert json.loads(self.proc.stdout.readline()) == {"ready": True}
                self._ready = True
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        assert line, "the fork server died"
        return json.loads(line)

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> Forked:
        return Forked(self, self._ask({"op": "spawn", "argv": argv, "env": env,
                                       "log": str(log)})["pid"])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(60)


class Forked:
    """A forked daemon with the parts of subprocess.Popen the tests use."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server, self.pid, self.returncode = server, pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server._ask({"op": "poll", "pid": self.pid})["status"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"iscsiattachd[{self.pid}]", timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        import signal
        self.send_signal(signal.SIGKILL)


if __name__ == "__main__":
    serve()
