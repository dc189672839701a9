"""Read access to one results JSON of tools/bench (benchlib.run writes it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

# targetcli one-shot call, uncontended, in this VM (shared/vm/NOTES.md): 3 s,
# 8 s and ~60 s per call at 1, 100 and 1000 exports (every call rebuilds the
# tree): how an estimate grows a per-call time this run measured.
NOTES_TCLI_CALL = {1: 3.0, 100: 8.0, 1000: 60.0}
TCLI_CALLS = {"create": 7, "delete": 2}


class View:
    def __init__(self, data: dict[str, Any], src: Path) -> None:
        self.meta: dict[str, Any] = data["meta"]
        self.s: dict[str, Any] = data["sections"]
        self.src = src

    def section(self, name: str) -> dict[str, Any]:
        return self.s.get(name) or {}

    def get(self, section: str, key: Any, *path: str) -> Any:
        """sections[section][key][path...], None where any step is missing."""
        node = self.section(section).get(str(key))
        for p in path:
            if not isinstance(node, dict):
                return None
            node = node.get(p)
        return node

    def stages(self) -> list[int]:
        """Sizes whose stage ran (a stage the time budget skipped is left out)."""
        return sorted(int(k) for k, v in self.section("restore_ours").items()
                      if isinstance(v, dict) and "ready_s" in v)

    def flatness(self, op: str, figure: str = "p50_ms") -> float | None:
        """Ours at the largest stage / at the smallest (``op``: create or
        delete); None if either is missing."""
        st = self.stages()
        a = self.get("control_ours", st[0], op, figure) if st else None
        b = self.get("control_ours", st[-1], op, figure) if st else None
        return b / a if a and b else None

    def tcli(self, n: int) -> tuple[dict[str, Any], str]:
        """Baseline (b) at n and how its figures came: "measured", "cut short"
        (estimated from its own per-call time), "grown" (this run's per-call
        time at the first stage, grown as NOTES_TCLI_CALL) or "" (none)."""
        got = self.get("control_targetcli", n) or {}
        if (got.get("create") or {}).get("p50_ms"):
            return got, "cut short" if got.get("estimated") else "measured"
        lo = min(self.stages() or [1])
        per = self.get("control_targetcli", lo, "per_call", "p50_ms")
        if not per or n not in NOTES_TCLI_CALL or lo not in NOTES_TCLI_CALL:
            return got, ""
        call = per * NOTES_TCLI_CALL[n] / NOTES_TCLI_CALL[lo]
        return {op: {"p50_ms": call * k, "n": 0} for op, k in TCLI_CALLS.items()} | \
            {"per_call": {"p50_ms": call}}, "grown"

    def marked(self, mark: str) -> list[tuple[str, str, Any]]:
        """(section, key, value) of every item that carries ``mark``
        ("error": failed, "skipped": the time budget ran out first)."""
        return [(section, key, value[mark]) for section, items in self.s.items()
                if isinstance(items, dict) for key, value in items.items()
                if isinstance(value, dict) and mark in value]
