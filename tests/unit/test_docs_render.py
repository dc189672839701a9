"""Every figure in docs/ is what its committed raw data renders to, byte for
byte: the performance report and its plots, and each block between render
markers in the other documents (tools/render-docs)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tools"))
from reportlib import blocks, reliability  # noqa: E402 - tools/ is not a package on the path


def test_docs_are_what_docs_data_renders_to():
    res = subprocess.run([str(TOP / "tools" / "render-docs"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_every_block_names_a_renderer_and_committed_data():
    found = 0
    for doc in sorted((TOP / "docs").glob("*.md")):
        for kind, files in blocks.blocks_in(doc.read_text()):
            found += 1
            assert kind in reliability.RENDERERS, (doc.name, kind)
            assert files and all((doc.parent / f).is_file() for f in files), (doc.name, files)
    assert found >= 4


def test_a_block_is_replaced_and_the_rest_kept(tmp_path):
    (tmp_path / "d.json").write_text("{}")
    text = ("before\n<!-- render: echo d.json -->\nstale 1\nstale 2\n<!-- end render -->\n"
            "after\n")
    made = blocks.render_text(text, tmp_path, {"echo": lambda ps: f"from {ps[0].name}"})
    assert made == "before\n<!-- render: echo d.json -->\nfrom d.json\n" \
                   "<!-- end render -->\nafter\n"
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    assert blocks.render_file(doc, {"echo": lambda ps: "x"}, check=True) is False
    assert doc.read_text() == text                      # a check writes nothing
    assert blocks.render_file(doc, {"echo": lambda ps: "x"}, check=False) is True
    assert blocks.render_file(doc, {"echo": lambda ps: "x"}, check=True) is True


def test_an_unknown_renderer_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown renderer"):
        blocks.render_text("<!-- render: nope x.json -->\n<!-- end render -->", tmp_path, {})
