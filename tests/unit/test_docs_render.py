"""The performance report in docs/ is what its committed raw data renders to,
byte for byte (tables and plots): no figure in it was typed by hand."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
DATA = TOP / "docs" / "data" / "bench-full.json"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    subprocess.run([sys.executable, "-m", "benchlib.render", str(DATA), str(out)],
                   cwd=TOP, env={"PYTHONPATH": str(TOP / "tools"), "MPLBACKEND": "Agg",
                                 "PATH": "/usr/bin:/bin"},
                   check=True, capture_output=True, timeout=120)
    return out


def test_every_rendered_file_is_in_docs_unchanged(rendered):
    made = sorted(p.name for p in rendered.iterdir())
    assert "performance-results.md" in made and len(made) >= 2
    for name in made:
        assert (rendered / name).read_bytes() == (TOP / "docs" / name).read_bytes(), (
            f"docs/{name} differs from what docs/data/bench-full.json renders to "
            "(tools/bench --render)")


def test_every_plot_the_report_links_is_rendered(rendered):
    text = (TOP / "docs" / "performance-results.md").read_text()
    linked = {line.split("](", 1)[1].rstrip(")") for line in text.splitlines()
              if line.startswith("![")}
    assert linked and linked <= {p.name for p in rendered.iterdir()}
