"""Every option of iscsiattach, by group, for oslo-config-generator, and the
checks the daemon runs on all of them at start.

Options are defined beside the code that reads them; this module only
gathers them (``list_opts``), registers them on a ConfigOpts, and runs each
consumer's own checks (``validate``).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from iscsiattach.api import options as api_options
from iscsiattach.attachments import reconciler
from iscsiattach.exception import InvalidInput
from iscsiattach.targets import options as target_options
from iscsiattach.volumes import options as volume_options

DEFAULT_OPTS: list[cfg.Opt] = [
    cfg.StrOpt("state_path", default="/var/lib/iscsiattach",
               help="Directory of the daemon's durable state (database, volume "
                    "files, locks). Created 0700. An absolute path."),
]


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(None, DEFAULT_OPTS),
            (target_options.GROUP, target_options.LIO_OPTS),
            (volume_options.GROUP, volume_options.VOLUME_OPTS),
            (reconciler.GROUP, reconciler.RECONCILER_OPTS),
            (api_options.GROUP, api_options.API_OPTS + api_options.LIMIT_OPTS)]


def register_all(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    for group, opts in list_opts():
        conf.register_opts(opts, group=group)
    return conf


def validate(conf: cfg.ConfigOpts) -> list[str]:
    """Check every option before anything is touched; the warnings to log.

    oslo.config converts a typed value only when it is read, so a bad one
    would otherwise surface half-way through the start (after LIO has been
    restored). Every option of every group is read here first, then each
    consumer's semantic checks run. Raises InvalidInput with one line that
    names ``[group] option`` (and the value, unless the option is secret).
    """
    for group, opts in list_opts():
        for opt in opts:
            _read_option(conf, group, opt)
    warnings: list[str] = []
    for check in _CHECKS:
        warnings += check(conf) or []
    return warnings


def check_default_options(conf: cfg.ConfigOpts) -> None:
    if not os.path.isabs(conf.state_path):
        # Relative to whatever directory the daemon happens to start in.
        raise InvalidInput(f"[DEFAULT] state_path {conf.state_path!r} is a relative "
                           "path: give an absolute one")
    if os.path.exists(conf.state_path) and not os.path.isdir(conf.state_path):
        raise InvalidInput(f"[DEFAULT] state_path {conf.state_path} exists and is not "
                           "a directory")


# Each consumer's checks, in the order a person fixing the file reads it.
_CHECKS: list[Callable[[cfg.ConfigOpts], list[str] | None]] = [
    check_default_options,
    target_options.check_lio_options,
    volume_options.check_volume_options,
    api_options.check_api_options,
]


def _read_option(conf: cfg.ConfigOpts, group: str | None, opt: cfg.Opt) -> Any:
    section = "DEFAULT" if group is None else group
    try:
        return conf[opt.dest] if group is None else conf[group][opt.dest]
    except (cfg.Error, ValueError) as exc:
        raise InvalidInput(_bad_value_message(conf, section, opt, exc)) from None


def _bad_value_message(conf: cfg.ConfigOpts, section: str, opt: cfg.Opt,
                       exc: Exception) -> str:
    if opt.secret:
        # oslo.config's own text quotes the value: neither is shown.
        return f"[{section}] {opt.name}: the value given is not valid (not shown: secret)"
    # oslo.config words it "Value for option X from <where> is not valid: <why>".
    reason = str(exc).rpartition(" is not valid: ")[2] or str(exc)
    given = _given_text(conf, section, opt)
    shown = f" = {given!r}" if given is not None else ""
    return f"[{section}] {opt.name}{shown} is not valid: {reason}"


def _given_text(conf: cfg.ConfigOpts, section: str, opt: cfg.Opt) -> str | None:
    """The text an option was given, before conversion; None if unknown.

    oslo.config has no public call for it. Its own precedence is the
    command line, then the environment (OS_<GROUP>__<NAME>), then the files;
    the private lookups below are guarded: if they change, the message only
    loses the value.
    """
    value = None
    try:
        if conf._namespace is not None:     # None until the command line is parsed
            value, where = opt._get_from_namespace(conf._namespace, section)
            if where is not None and where.location == cfg.Locations.command_line:
                return str(value)
    except Exception:  # noqa: BLE001 - only a nicer message is at stake
        value = None
    env = os.environ.get(f"OS_{section.upper()}__{opt.dest.upper()}")
    if env is not None:
        return env
    return None if value is None else str(value)
