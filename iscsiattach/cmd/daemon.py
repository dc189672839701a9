"""iscsiattachd: the storage-node daemon.

Reads its config, restores LIO from the store (first reconcile), and only
then listens and tells systemd it is ready; reconciles periodically after
that. Stopping it never tears exports down: hosts stay connected.
"""
from __future__ import annotations

import contextvars
import logging
import os
import signal
import sys
import threading

from oslo_config import cfg

from iscsiattach import conf
from iscsiattach.api import auth as api_auth
from iscsiattach.api.app import Auth, RequestIdFilter
from iscsiattach.api.limits import Limits
from iscsiattach.api.logsafe import SafeFormatter
from iscsiattach.api.metrics import Metrics
from iscsiattach.api.routes import build_app
from iscsiattach.api.server import ApiServer, make_server
from iscsiattach.attachments.reconciler import full_check_share, run_periodically
from iscsiattach.attachments.wiring import Services, lock_dir, wire_services
from iscsiattach.cmd import systemd
from iscsiattach.exception import EXIT_FAILURE, InvalidInput, IscsiAttachError, exit_code
from iscsiattach.targets.lio import LioBackend
from iscsiattach.targets.options import portals_from_conf
from iscsiattach.volumes.options import backend_from_conf

LOG = logging.getLogger("iscsiattachd")
CLI_OPTS = [cfg.BoolOpt("debug", default=False, help="Log at debug level.")]


def load_config(argv: list[str]) -> cfg.ConfigOpts:
    config = conf.register_all(cfg.ConfigOpts())
    config.register_cli_opts(CLI_OPTS)
    config(argv, project="iscsiattach", prog="iscsiattachd")
    return config


def setup_logging(debug: bool) -> None:
    # journald adds the time; one line per record, never a secret (they are
    # Secret objects everywhere below and print as ***).
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    # Escaped: a client's bytes in a message can never make a line of their own.
    handler.setFormatter(SafeFormatter(
        "%(levelname)s %(name)s [%(request_id)s] %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])


def services_from_conf(config: cfg.ConfigOpts, lock_wait=None) -> Services:
    state = config.state_path
    lio = LioBackend(prefix=config.lio.target_prefix, write_back=config.lio.fileio_write_back,
                     lock_path=lock_dir(state), lock_wait=lock_wait)
    return wire_services(state, lio, backend_from_conf(config), portals_from_conf(config),
                         config.volumes.max_size_gib, config.reconciler.restore_workers,
                         full_every=full_check_share(config.reconciler.interval,
                                                     config.reconciler.full_check_interval))


def auth_from_conf(config: cfg.ConfigOpts) -> Auth:
    api = config.api
    if api.auth_strategy == "noauth":
        api_auth.check_noauth_listen(api.listen)
        return Auth("noauth")
    token_file = api.token_file or os.path.join(config.state_path, "api-token")
    return Auth("token", api_auth.load_or_create_token(token_file))


def serve(config: cfg.ConfigOpts) -> None:
    auth = auth_from_conf(config)       # a refused auth setting changes nothing on disk
    holder: dict[str, Metrics] = {}
    services = services_from_conf(config, lambda s: holder["m"].lio_lock_wait.observe(s))
    metrics = holder["m"] = Metrics(services.store, services.sessions)
    # Exclusive: the API is not served yet, nothing else changes the store.
    report = services.reconciler.run(exclusive=True)
    metrics.reconciled(report)
    if report.errors:
        LOG.warning("first reconcile finished with %d errors", len(report.errors))
    limits = Limits.from_conf(config.api)
    app = build_app(services, auth, metrics, limits)
    server = make_server(config.api.listen, config.api.port, app,
                         config.api.tls_cert_file, config.api.tls_key_file, limits)
    # The server's own lines about broken requests share the refusals' budget.
    logging.getLogger("uvicorn.error").addFilter(app.refusals)
    stop = threading.Event()
    threading.Thread(target=run_periodically, name="reconciler", daemon=True,
                     args=(services.reconciler, config.reconciler.interval, stop),
                     kwargs={"on_report": lambda r: _reconciled(metrics, r),
                             "run_now": False}).start()
    _start_watchdog(stop, server)

    shutdown = shutdown_handler(stop, server)
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    LOG.info("listening on %s%s (at most %d connections)", config.api.listen,
             "" if config.api.listen.startswith("unix:") else f" port {config.api.port}",
             server.limits.max_connections)
    metrics.ready = True
    systemd.notify("READY=1\n" + _status(report))
    server.serve_forever()
    server.server_close()


def shutdown_handler(stop: threading.Event, server: ApiServer):
    """The SIGTERM/SIGINT handler: stop serving; exports stay up."""
    def shutdown(signum, _frame) -> None:
        # A handler runs in whatever context the main thread was in when the
        # signal came, maybe a request's: log in a fresh one, with no id.
        contextvars.Context().run(LOG.info, "signal %d: stopping (exports stay up)", signum)
        systemd.notify("STOPPING=1")
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()
    return shutdown


def _reconciled(metrics: Metrics, report) -> None:
    metrics.reconciled(report)
    systemd.notify(_status(report))


def _status(report) -> str:
    return (f"STATUS=reconciled {report.volumes_checked} volumes, "
            f"{report.changed} repairs, {len(report.errors)} errors")


def _start_watchdog(stop: threading.Event, server: ApiServer) -> None:
    """Ping systemd only while the API's event loop answers: a daemon whose
    API hangs is restarted, not kept alive by a thread that merely runs."""
    interval = systemd.watchdog_interval()
    if interval is None:
        return

    def ping():
        while not stop.wait(interval):
            if server.responsive(timeout=interval):
                systemd.notify("WATCHDOG=1")
            else:
                LOG.warning("the API did not answer within %.1f s: no watchdog ping", interval)
    threading.Thread(target=ping, name="watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(sys.argv[1:] if argv is None else argv)
        # Every value checked before LIO, the store or the token file is
        # touched: a bad one stops the start with one line and exit 2.
        warnings = conf.validate(config)
    except cfg.Error as exc:                # oslo.config's own: a configuration error
        return _failed(InvalidInput(str(exc)))
    except IscsiAttachError as exc:
        return _failed(exc)
    setup_logging(config.debug)
    for warning in warnings:
        LOG.warning("%s", warning)
    try:
        serve(config)
    except IscsiAttachError as exc:
        # The exit status is the exception tree's: InvalidInput here is
        # configuration too (a token file that is not the daemon's own): 2, as
        # for the checks above; ListenFailed (bind or listen refused) is 1.
        LOG.error("%s", exc)
        return _failed(exc)
    except OSError as exc:
        # Not binding or listening (that is ListenFailed): the state
        # directory, a lock, the store... The traceback says where.
        LOG.error("stopped on an error of the system", exc_info=exc)
        print(f"iscsiattachd: {os_error_text(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _failed(error: IscsiAttachError) -> int:
    print(f"iscsiattachd: {error}", file=sys.stderr)
    return exit_code(error)


def os_error_text(exc: OSError) -> str:
    """What failed, as a Unix tool says it: "PATH: reason", or the reason
    and the error's kind when no file is involved."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return f"{reason} ({type(exc).__name__})"
    names = " -> ".join(os.fsdecode(f) if isinstance(f, bytes) else str(f)
                        for f in (exc.filename, exc.filename2) if f is not None)
    return f"{names}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
