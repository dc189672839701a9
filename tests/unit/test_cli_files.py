"""The manual pages and completion scripts the packages install: committed
files that must be what the code makes now (tools/cli-files), valid roff and
shell, installed by the Debian packaging; and the bash completion, run in
bash, completes commands, options, values and ids from the API."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
DEBIAN = TOP / "packaging" / "debian"
sys.path.insert(0, str(TOP / "tools"))
try:
    import cli_files
finally:
    sys.path.remove(str(TOP / "tools"))

GENERATED = cli_files.generate()


@pytest.mark.parametrize("path", sorted(GENERATED))
def test_committed_file_is_what_the_code_makes(path):
    committed = TOP / path
    assert committed.exists(), f"{path} is missing: run tools/cli-files and commit it"
    assert committed.read_text() == GENERATED[path], (
        f"{path} differs from what the code makes: run tools/cli-files and commit it")


def test_the_check_mode_names_a_stale_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_files, "TOP", tmp_path)
    assert cli_files.main(["--check"]) == 1
    assert "packaging/man/iscsiattach.1 differs" in capsys.readouterr().err
    assert cli_files.main([]) == 0 and cli_files.main(["--check"]) == 0


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is needed (tools/setup installs it)"
    return found


@pytest.mark.parametrize("page", ["packaging/man/iscsiattach.1", "packaging/man/iscsiattachd.8"])
def test_manual_page_is_clean_roff(page):
    run = subprocess.run([_tool("groff"), "-man", "-ww", "-z", str(TOP / page)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    text = (TOP / page).read_text()
    assert text.startswith(".TH ISCSIATTACH")


def test_the_cli_page_documents_every_command_and_option():
    text = GENERATED["packaging/man/iscsiattach.1"]
    parser = cli_files.cli_parser()
    from iscsiattach.cli.args import subcommands
    for name, sub in subcommands(parser).items():
        assert f".SS {name.replace('-', chr(92) + '-')}" in text
        for action in sub._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and "_" not in opt:
                    assert opt.replace("-", "\\-") in text, (name, opt)
    for opt in ("--os-volume-api-version", "--show-secrets", "--debug", "--version"):
        assert opt.replace("-", "\\-") in text
    assert "\\-\\-complete" not in text                  # hidden: for the scripts only
    daemon = GENERATED["packaging/man/iscsiattachd.8"]
    assert "\\-\\-config\\-file" in daemon and "tls_cert_file" in daemon


def test_zsh_script_parses():
    script = TOP / "packaging/completion/_iscsiattach"
    run = subprocess.run([_tool("zsh"), "-n", str(script)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert script.read_text().startswith("#compdef iscsiattach\n")


# -- bash, for real ---------------------------------------------------------------
@pytest.fixture
def complete(tmp_path):
    """complete(words...) -> COMPREPLY for the last word, with a stand-in
    `iscsiattach` that answers --complete as the CLI does and logs its argv."""
    stub = tmp_path / "iscsiattach"
    log = tmp_path / "argv"
    stub.write_text("#!/bin/sh\n"
                    f'echo "$*" >> {log}\n'
                    'for a; do last=$a; done\n'
                    'case $last in volumes) echo vol-1; echo vol-2 ;; '
                    'attachments) echo att-1 ;; esac\n')
    stub.chmod(0o755)
    script = TOP / "packaging/completion/iscsiattach"

    def run(*words: str) -> list[str]:
        words_ = [str(stub), *words]
        code = (f"source {script}\n"
                f"COMP_WORDS=({' '.join(repr(w) for w in words_)})\n"
                f"COMP_CWORD={len(words_) - 1}\n"
                "_iscsiattach\n"
                'printf "%s\\n" "${COMPREPLY[@]}"\n')
        out = subprocess.run([_tool("bash"), "--norc", "-c", code], capture_output=True,
                             text=True, check=True, cwd=tmp_path, env={**os.environ})
        return [w for w in out.stdout.split("\n") if w]
    run.log = log
    return run


def test_bash_completes_commands_options_and_values(complete):
    assert complete("attachment-c") == ["attachment-create", "attachment-complete"]
    assert complete("--os-vol") == ["--os-volume-api-version"]
    assert complete("--format", "") == ["table", "json"]
    assert complete("volume-show", "x", "--format", "j") == ["json"]
    assert complete("attachment-create", "v", "i", "--mo") == ["--mode", "--mountpoint"]
    assert complete("attachment-create", "v", "i", "--connect", "") == ["True", "False"]
    assert complete("attach", "--multipath", "--mode", "") == ["rw", "ro"]


def test_bash_completes_ids_from_the_api(complete):
    assert complete("volume-show", "") == ["vol-1", "vol-2"]
    assert complete("volume-show", "vol-1", "") == []          # one volume only
    assert complete("attachment-delete", "att-1", "") == ["att-1"]    # several
    assert complete("attachment-create", "") == ["vol-1", "vol-2"]
    assert complete("attachment-create", "vol-1", "") == []     # an instance uuid
    assert complete("detach", "") == ["att-1", "vol-1", "vol-2"]
    # A flag (attach's --multipath) takes no value: the id still comes next.
    assert complete("attach", "--multipath", "") == ["vol-1", "vol-2"]
    # The daemon options typed so far go to the API call.
    complete("--url", "https://node:8776/v3", "--cacert", "ca.pem", "--format", "json",
             "volume-delete", "")
    assert complete.log.read_text().splitlines()[-1] == (
        "--url https://node:8776/v3 --cacert ca.pem --complete volumes")


# -- the packages install them ------------------------------------------------------
def test_the_packages_install_the_pages_and_the_scripts():
    cli_man = (DEBIAN / "iscsiattach.manpages").read_text().split()
    daemon_man = (DEBIAN / "iscsiattachd.manpages").read_text().split()
    assert cli_man == ["packaging/man/iscsiattach.1"]
    assert daemon_man == ["packaging/man/iscsiattachd.8"]
    installs = [line.split() for line in (DEBIAN / "iscsiattach.install").read_text()
                .splitlines() if line.strip() and not line.startswith("#")]
    assert ["packaging/completion/iscsiattach",
            "usr/share/bash-completion/completions/"] in installs
    assert ["packaging/completion/_iscsiattach", "usr/share/zsh/vendor-completions/"] in installs
    for path in cli_man + daemon_man + [src for src, _ in installs]:
        assert (TOP / path).is_file(), path
    overrides = (DEBIAN / "iscsiattach.lintian-overrides").read_text()
    assert "manual-page" not in overrides and "manpage" not in overrides
