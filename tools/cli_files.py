"""The files the packages install for people and shells, generated from the
code: the manual pages iscsiattach(1) and iscsiattachd(8), and the bash and
zsh completion scripts of iscsiattach. They are committed (packaging/man/,
packaging/completion/) so that a package build needs nothing but the
checkout; tests/unit/test_cli_files.py fails when they drift from the code.

    tools/cli-files            write them
    tools/cli-files --check    exit 1 (naming each) if one differs from what the code makes
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
if str(TOP) not in sys.path:
    sys.path.insert(0, str(TOP))

from iscsiattach.cli import args as cli_args, complete, manpage  # noqa: E402
from iscsiattach.cli.manpage import Section  # noqa: E402

# Built from the parser with none of these set: their values are defaults.
ENVIRONMENT = ("ISCSIATTACH_URL", "ISCSIATTACH_CACERT", "ISCSIATTACH_TOKEN",
               "ISCSIATTACH_TOKEN_FILE")
FILES = {"packaging/man/iscsiattach.1": "cli_page",
         "packaging/man/iscsiattachd.8": "daemon_page",
         "packaging/completion/iscsiattach": "bash",
         "packaging/completion/_iscsiattach": "zsh"}

CLI_DESCRIPTION = """\
iscsiattach speaks the Block Storage API v3 of iscsiattachd (or of Cinder)
with the commands of Cinder's attach/detach devref and of cinderclient:
attachment-create, attachment-update, attachment-complete, attachment-delete,
attachment-show, attachment-list and the volume commands. Their tables are
cinderclient's, byte for byte; --format json gives JSON for scripts.

On a host, attach gathers the host's connector with os-brick, creates and
connects the attachment, logs in with open-iscsi, confirms that the device
is the volume (unit serial, WWN, size, read-only) and prints its path and a
stable /dev/disk/by-id name; detach flushes, logs out and deletes the
attachment. Progress goes to stderr as lines starting with "...".

The options of cinderclient are taken where the devref puts them:
iscsiattach --os-volume-api-version 3.27 attachment-create ... sends
microversion 3.27, and a command that needs a later one (attachment-complete
3.44, --mode 3.54) is refused with one line before anything is sent. The
output options --format, --show-secrets and --debug may come before or
after the command.

The CHAP secrets of connection info are shown only with --show-secrets: a
table then reads ***, and JSON holds null with "<key>_withheld": true (never
a fake value). Without --debug no library (os-brick, oslo) logs anything.
An error is one line on stderr."""

CLI_AFTER = [
    Section("Environment", cli_args.EPILOG.split("\n", 1)[1], literal=True),
    Section("Files", """\
/var/lib/iscsiattach/api-token
    the API token (on a storage node; a host gets a copy)
/var/lib/iscsiattach-host/
    what attach recorded for detach (ISCSIATTACH_HOST_STATE)
/usr/share/bash-completion/completions/iscsiattach, /usr/share/zsh/vendor-completions/_iscsiattach
    shell completion: commands, options, and volume and attachment ids
    asked of the API (with --url, --token-file, --cacert typed so far)""",
            literal=True),
    Section("Exit status", """\
0 on success; 1 when the command failed or the daemon refused it; 2 when
the command line is wrong (including a microversion too early for the
command) or the daemon answered 400."""),
    Section("Examples", """\
iscsiattach --os-volume-api-version 3.27 attachment-create VOLUME INSTANCE \\
    --connect True --initiator iqn.2004-10.com.example:host1
iscsiattach --os-volume-api-version 3.44 attachment-complete ATTACHMENT
iscsiattach volume-show VOLUME --format json
dev=$(iscsiattach --format json attach VOLUME | python3 -c \\
    'import json, sys; print(json.load(sys.stdin)["stable_path"])')
iscsiattach detach VOLUME""", literal=True),
    Section("See also", "iscsiattachd(8), iscsiadm(8), cinder(1)"),
]

DAEMON_DESCRIPTION = """\
iscsiattachd turns the attach/detach v2 workflow of Cinder's attachments
API (attachment create, update, complete, delete) into Linux LIO target
configuration: one target per volume, LUN 0 backed by the volume, one ACL per
initiator with its own CHAP credentials, portals on the node's storage
addresses. Its REST API is wire-compatible with Cinder's Block Storage API v3
for versions, volumes and attachments.

It restores every export (the first reconcile) before it listens and tells
systemd it is ready, and reconciles periodically after that. Stopping it
leaves every export up. A bad configuration value stops the start with one
line naming [group] option and exit status 2, before LIO is touched."""


@contextlib.contextmanager
def clean_environment() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in ENVIRONMENT if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def cli_parser() -> argparse.ArgumentParser:
    with clean_environment():
        return cli_args.parser()


def cli_page() -> str:
    return manpage.page("iscsiattach", 1, cli_args.package_version(),
                        "talk to iscsiattachd (or Cinder) with the devref's commands; "
                        "attach and detach volumes on a host", cli_parser(),
                        CLI_DESCRIPTION, after=CLI_AFTER,
                        common=("format", "show_secrets", "debug"))


def _config_section() -> Section:
    from iscsiattach import conf
    esc = manpage.esc
    roff = []
    for group, opts in conf.list_opts():
        roff.append(f".SS [{esc(group or 'DEFAULT')}]")
        for opt in opts:
            default = opt.default
            if isinstance(default, list):
                default = ",".join(str(d) for d in default)
            shown = "" if default is None else f" = {default}"
            roff += [".TP", f"\\fB{esc(opt.dest)}\\fR{esc(shown)}",
                     esc(" ".join((opt.help or "").split()))]
    return Section("Configuration", "The options of /etc/iscsiattach/iscsiattach.conf, by "
                   "section, with their defaults. The sample, every option commented "
                   "at its default, is /usr/share/doc/iscsiattach/iscsiattach.conf.sample.",
                   roff="\n".join(roff))


def daemon_parser() -> argparse.ArgumentParser:
    """The daemon's command line is oslo.config's: its own argparse parser,
    made when the options are parsed (here with no argument and no file)."""
    from oslo_config import cfg

    from iscsiattach import conf
    from iscsiattach.cmd.daemon import CLI_OPTS
    config = conf.register_all(cfg.ConfigOpts())
    config.register_cli_opts(CLI_OPTS)
    config([], project="iscsiattach", prog="iscsiattachd", default_config_files=[],
           default_config_dirs=[])
    found = getattr(config, "_oparser", None)
    if not isinstance(found, argparse.ArgumentParser):
        raise SystemExit("cli-files: oslo.config no longer keeps its parser in _oparser")
    return found


def daemon_page() -> str:
    after = [_config_section(),
             Section("Files", """\
/etc/iscsiattach/iscsiattach.conf
    the configuration (--config-file)
/var/lib/iscsiattach/
    the state: the store, the API token (api-token), file volumes
/lib/systemd/system/iscsiattachd.service
    the service, enabled and started at install""", literal=True),
             Section("Exit status", "0 after a clean stop; 1 when it could not start or "
                     "stopped on an error; 2 when the configuration is wrong."),
             Section("See also", "iscsiattach(1), targetcli(8), systemctl(1)")]
    return manpage.page("iscsiattachd", 8, cli_args.package_version(),
                        "iSCSI target integration daemon for Linux LIO storage nodes",
                        daemon_parser(), DAEMON_DESCRIPTION, after=after)


def generate() -> dict[str, str]:
    """Each file's path (from the top of the checkout) and its content."""
    makers = {"cli_page": cli_page, "daemon_page": daemon_page,
              "bash": lambda: complete.bash_script(cli_parser()),
              "zsh": lambda: complete.zsh_script(cli_parser())}
    return {path: makers[name]() for path, name in FILES.items()}


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    stale = []
    for path, text in generate().items():
        target = TOP / path
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    for path in stale:
        print(f"cli-files: {path} {'differs from what the code makes' if check else 'written'}",
              file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
