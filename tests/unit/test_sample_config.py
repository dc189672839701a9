"""The shipped sample config is what oslo-config-generator makes today."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
SAMPLE = TOP / "etc" / "iscsiattach" / "iscsiattach.conf.sample"


def test_sample_config_is_current(tmp_path):
    out = tmp_path / "sample.conf"
    generator = Path(sys.executable).with_name("oslo-config-generator")
    subprocess.run([str(generator), "--namespace", "iscsiattach", "--wrap-width", "79",
                    "--output-file", str(out)], check=True, cwd=TOP)
    assert out.read_text() == SAMPLE.read_text(), \
        "etc/iscsiattach/iscsiattach.conf.sample is stale: run " \
        "oslo-config-generator --config-file etc/iscsiattach/config-generator.conf"


def test_every_group_has_help_on_every_option():
    from iscsiattach.conf import list_opts
    for group, opts in list_opts():
        for opt in opts:
            assert opt.help and len(opt.help) > 20, f"[{group}] {opt.name} needs help text"
