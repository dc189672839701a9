"""The text of docs/performance.md, computed from one results JSON."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from benchlib import plots
from benchlib import report_text as T

OURS, RTS, TCLI = ("iscsiattachd (REST)", "rtslib + save_to_file (Cinder way)",
                   "targetcli one-shot")


def ms(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return f"{value / 1e3:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def sec(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, (int, float)) else "—"


def ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "—"
    r = a / b
    return f"{r:.0f}x" if r >= 10 else f"{r:.2f}x"


def verdict(ok: bool | None) -> str:
    return {True: "met", False: "**short**", None: "not measured"}[ok]


FLAT_GOAL = 1.2     # ours at the largest stage / at the smallest, p50


# targetcli one-shot call, uncontended, in this VM (shared/vm/NOTES.md): 3 s, 8 s
# and ~60 s per call at 1, 100 and 1000 exports (every call rebuilds the tree).
NOTES_TCLI_CALL = {1: 3.0, 100: 8.0, 1000: 60.0}


class Report:
    def __init__(self, data: dict[str, Any], src: Path) -> None:
        self.meta, self.s, self.src = data["meta"], data["sections"], src
        self.figures: dict[str, Any] = {}

    def get(self, section: str, key: Any, *path: str) -> Any:
        node = self.s.get(section, {}).get(str(key))
        for p in path:
            if not isinstance(node, dict):
                return None
            node = node.get(p)
        return node

    def tcli(self, n: int) -> tuple[dict, bool]:
        """Baseline (b) at n; if the run did not reach it, an estimate: this run's
        per-call time at its first stage, grown as NOTES measured it."""
        got = self.get("control_targetcli", n) or {}
        if (got.get("create") or {}).get("p50_ms"):
            return got, bool(got.get("estimated"))
        first = self.get("control_targetcli", min(self.stages() or [1])) or {}
        per = (first.get("per_call") or {}).get("p50_ms")
        lo = min(self.stages() or [1])
        if not per or n not in NOTES_TCLI_CALL or lo not in NOTES_TCLI_CALL:
            return got, False
        call = per * NOTES_TCLI_CALL[n] / NOTES_TCLI_CALL[lo]
        return {"create": {"p50_ms": call * 7, "n": 0}, "delete": {"p50_ms": call * 2, "n": 0},
                "per_call": {"p50_ms": call}, "estimated_from_notes": True}, True

    def stages(self) -> list[int]:
        """Sizes whose stage ran (a stage the time budget skipped is left out)."""
        return sorted(int(k) for k, v in self.s.get("restore_ours", {}).items()
                      if isinstance(v, dict) and "ready_s" in v)

    def flatness(self, op: str) -> float | None:
        """Ours, p50 at the largest stage / p50 at the smallest (``op``:
        create or delete); None if either is missing."""
        st = self.stages()
        a = self.get("control_ours", st[0], op, "p50_ms") if st else None
        b = self.get("control_ours", st[-1], op, "p50_ms") if st else None
        return b / a if a and b else None

    def skipped(self) -> list[str]:
        return [f"{section}/{key}" for section, items in self.s.items()
                for key, value in items.items() if isinstance(value, dict) and "skipped" in value]

    def where(self) -> str:
        m = self.meta
        return (f"{m.get('accel')} VM, {m.get('vcpus')} vCPU, {m.get('mem_mib')} MiB, kernel "
                f"{m.get('kernel')} (`{m.get('cpu')}`), started {m.get('started')}, commit "
                f"{m.get('commit')}, profile `{m.get('profile')}`")

    def render(self, docs: Path) -> str:
        from benchlib import findings
        parts = [T.header(self), self.control(), self.concurrency(), self.e2e(),
                 self.restore(), self.datapath(), self.footprint(), findings.section(self),
                 T.errors(self)]
        return "\n".join(p for p in parts if p) + "\n"

    # -- item 1 ------------------------------------------------------------
    def control(self) -> str:
        rows, series = [], {OURS: {}, RTS: {}, TCLI: {}}
        for n in self.stages():
            o, a = (self.get(k, n) or {} for k in ("control_ours", "control_rtslib"))
            b, b_est = self.tcli(n)
            for system, d in ((OURS, o), (RTS, a), (TCLI, b)):
                for op in ("create", "delete"):
                    p50 = (d.get(op) or {}).get("p50_ms")
                    if p50 is not None:
                        series[system].setdefault(op, []).append((n, p50))
            oc, od = (o.get("create") or {}), (o.get("delete") or {})
            ac, ad = (a.get("create") or {}), (a.get("delete") or {})
            bc, bd = (b.get("create") or {}), (b.get("delete") or {})
            rows.append(f"| {n} | {ms(oc.get('p50_ms'))} / {ms(oc.get('p95_ms'))} "
                        f"({ms(oc.get('min_ms'))}) | "
                        f"{ms(od.get('p50_ms'))} / {ms(od.get('p95_ms'))} "
                        f"({ms(od.get('min_ms'))}) | "
                        f"{ms(ac.get('p50_ms'))} / {ms(ad.get('p50_ms'))} ({ac.get('n', 0)}) | "
                        f"{'~' if b_est else ''}{ms(bc.get('p50_ms'))} / "
                        f"{'~' if b_est else ''}{ms(bd.get('p50_ms'))} "
                        f"({'estimated' if b.get('estimated_from_notes') else bc.get('n', 0)}"
                        f"{', cut short' if b.get('estimated') else ''}) | "
                        f"{ratio(ac.get('p50_ms'), oc.get('p50_ms'))} / "
                        f"{ratio(ad.get('p50_ms'), od.get('p50_ms'))} | "
                        f"{ratio(bc.get('p50_ms'), oc.get('p50_ms'))} / "
                        f"{ratio(bd.get('p50_ms'), od.get('p50_ms'))} | "
                        f"{o.get('create', {}).get('n', 0)} |")
        cpu = [f"{n}: {(self.get('control_ours', n) or {}).get('cpu_per_op_ms')} ms"
               for n in self.stages() if (self.get("control_ours", n) or {}).get("cpu_per_op_ms")]
        if cpu:
            rows.append("\niscsiattachd CPU seconds per operation (create and delete averaged), "
                        "by existing exports — " + ", ".join(cpu) + ".")
        self.figures["performance-control-plane.png"] = partial(plots.control_plane, series)
        return T.control(self, rows, self.control_goals())

    def control_goals(self) -> list[str]:
        st = self.stages()
        if not st:
            return []
        lo, hi = st[0], st[-1]
        out = []
        for op in ("create", "delete"):
            a = self.get("control_ours", lo, op, "p50_ms")
            b = self.get("control_ours", hi, op, "p50_ms")
            flat = self.flatness(op)
            amin = self.get("control_ours", lo, op, "min_ms")
            bmin = self.get("control_ours", hi, op, "min_ms")
            out.append(f"| ours flat, {op}: p50 at {hi} / p50 at {lo} ≤ {FLAT_GOAL} | "
                       f"{ratio(b, a)} (fastest samples: {ratio(bmin, amin)}) | "
                       f"{verdict(flat <= FLAT_GOAL if flat else None)} |")
        for key, name, goal in (("control_rtslib", "(a) rtslib + save", 100),
                                ("control_targetcli", "(b) targetcli", 50)):
            b, b_est = self.tcli(hi)
            for op in ("create", "delete"):
                base = self.get(key, hi, op, "p50_ms") if key == "control_rtslib" else \
                    (b.get(op) or {}).get("p50_ms")
                if key == "control_targetcli" and b_est:
                    name = "(b) targetcli (estimated)"
                mine = self.get("control_ours", hi, op, "p50_ms")
                r = base / mine if base and mine else None
                out.append(f"| {name} / ours at {hi} exports, {op} ≥ {goal}x | {ratio(base, mine)} "
                           f"| {verdict(r >= goal if r else None)} |")
        return out

    # -- item 2 ------------------------------------------------------------
    def concurrency(self) -> str:
        data = self.s.get("concurrency", {})
        rows, pts = [], []
        base = (data.get("1") or {}).get("ops_per_s")
        for c in sorted(data, key=int):
            d = data[c]
            lat = d.get("latency") or {}
            rows.append(f"| {c} | {d.get('ops', '—')} | {d.get('ops_per_s', '—')} | "
                        f"{ratio(d.get('ops_per_s'), base)} | {ms(lat.get('p50_ms'))} | "
                        f"{ms(lat.get('p95_ms'))} | {d.get('error_count', d.get('error', '—'))} |")
            if "ops_per_s" in d:
                pts.append((int(c), d["ops_per_s"], lat.get("p95_ms", 0)))
        if pts:
            self.figures["performance-concurrency.png"] = partial(plots.concurrency, pts)
        return T.concurrency(self, rows)

    # -- item 3 ------------------------------------------------------------
    def e2e(self) -> str:
        from benchlib.report_e2e import e2e
        return e2e(self)

    # -- item 4 ------------------------------------------------------------
    def restore(self) -> str:
        from benchlib.report_e2e import restore
        return restore(self)

    # -- item 5 ------------------------------------------------------------
    def datapath(self) -> str:
        from benchlib.report_e2e import datapath
        return datapath(self)

    # -- item 6 ------------------------------------------------------------
    def footprint(self) -> str:
        rows = []
        for n in self.stages():
            f = self.get("footprint", n) or {}
            r = self.get("restart_ours", n) or {}
            rows.append(f"| {n} | {f.get('rss_mib', '—')} MiB | {f.get('idle_cpu_pct', '—')} % "
                        f"over {f.get('idle_window_s', '—')} s | {sec(r.get('ready_s'))} | "
                        f"{sec((r.get('reconcile') or {}).get('seconds'))} |")
        return T.footprint(self, rows)
