"""docs/performance.md and its plots from a results JSON (re-runnable on the
host): ``python -m benchlib.render results/bench/full.json docs/``."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchlib import plots
from benchlib.report import Report


def failed_sections(data: dict[str, Any]) -> list[str]:
    return [f"{section}/{key}: {value['error']}"
            for section, items in data.get("sections", {}).items()
            for key, value in items.items() if isinstance(value, dict) and "error" in value]


def main() -> int:
    if sys.argv[1] == "--check":
        # CI smoke: every measurement ran (times are never judged).
        bad = failed_sections(json.loads(Path(sys.argv[2]).read_text()))
        for line in bad:
            print(f"tools/bench: failed: {line}", file=sys.stderr)
        return 1 if bad else 0
    src, docs = Path(sys.argv[1]), Path(sys.argv[2])
    docs.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = json.loads(src.read_text())
    rep = Report(data, src)
    text = rep.render(docs)
    (docs / "performance.md").write_text(text)
    for name, fn in rep.figures.items():
        fn(docs / name)
    print(f"wrote {docs / 'performance.md'} and {len(rep.figures)} plots")
    return 0


__all__ = ["plots"]

if __name__ == "__main__":
    sys.exit(main())
