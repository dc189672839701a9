"""tools/render-docs: every figure in docs/ from the raw data in docs/data/.

    tools/render-docs            write docs/ from docs/data/
    tools/render-docs --check    exit 1, naming each file, where docs/ is not
                                 what docs/data/ renders to

Two kinds of output: docs/performance-results.md and its plots (rendered
whole by benchlib.render from docs/data/bench-full.json), and the blocks
between render markers in the other documents (reportlib.blocks).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from reportlib import reliability
from reportlib.blocks import render_file

TOP = Path(__file__).resolve().parents[2]
DOCS = TOP / "docs"
BENCH_DATA = DOCS / "data" / "bench-full.json"


def performance(check: bool) -> list[str]:
    """Files of the performance report that differ (check) or [] after writing."""
    env_cmd = [sys.executable, "-m", "benchlib.render", str(BENCH_DATA)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) if check else DOCS
        subprocess.run([*env_cmd, str(out)], check=True, capture_output=True,
                       cwd=TOP / "tools")
        if not check:
            return []
        return [f"docs/{p.name}" for p in sorted(out.iterdir())
                if p.read_bytes() != (DOCS / p.name).read_bytes()]


def documents(check: bool) -> list[str]:
    return [f"docs/{doc.name}" for doc in sorted(DOCS.glob("*.md"))
            if not render_file(doc, reliability.RENDERERS, check)]


def main(argv: list[str]) -> int:
    check = argv[:1] == ["--check"]
    stale = performance(check) + documents(check)
    for name in stale:
        print(f"render-docs: {name} is not what docs/data renders to "
              "(tools/render-docs writes it)", file=sys.stderr)
    if not check:
        print("render-docs: docs/ rendered from docs/data/")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
