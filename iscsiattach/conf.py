"""Every option of iscsiattach, by group, for oslo-config-generator.

Options are defined beside the code that reads them; this module only
gathers them (``list_opts``) and registers them on a ConfigOpts.
"""
from __future__ import annotations

from oslo_config import cfg

from iscsiattach.api import options as api_options
from iscsiattach.attachments import reconciler
from iscsiattach.target import options as target_options
from iscsiattach.volumes import options as volume_options

DEFAULT_OPTS = [
    cfg.StrOpt("state_path", default="/var/lib/iscsiattach",
               help="Directory of the daemon's durable state (database, volume "
                    "files, locks). Created 0700."),
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
