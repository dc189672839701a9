"""Tables of section 4: restore after a reboot, ours against targetctl. A
run with ``restore_pair`` measured both at the same sizes in turns on an
LIO empty of both; an older run (restores of each at other times and
sizes) is rendered with the model that estimated targetctl where it was
not measured."""
from __future__ import annotations

from functools import partial

from benchlib import plots
from benchlib.fmt import DASH, sec, seconds, table, times, verdict
from benchlib.tables_host import RESTORE_GOAL, Figures
from benchlib.view import View

# targetctl restore measured earlier in this VM, uncontended (shared/vm/NOTES.md):
# the curve's shape when this run has a single targetctl point.
NOTES_CTL = [(100, 19.0), (1000, 762.0)]
Model = tuple[float, float, str]        # t = a·N² + b·N seconds, and where a, b came from


def _fit(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """t = a·N² + b·N through the points (least squares, no constant)."""
    if len(points) < 2:
        return None
    s4, s3, s2 = (sum(n ** k for n, _ in points) for k in (4, 3, 2))
    y2, y1 = sum(t * n * n for n, t in points), sum(t * n for n, t in points)
    det = s4 * s2 - s3 * s3
    if not det:
        return None
    return (y2 * s2 - y1 * s3) / det, (s4 * y1 - s3 * y2) / det


def ctl_model(ctl: list[tuple[int, float]]) -> Model | None:
    """Fitted to this run's targetctl points if there are two, else the
    NOTES curve scaled to this run's largest point (same machine, other load)."""
    if fit := _fit(ctl):
        return fit[0], fit[1], "fit to this run's targetctl points"
    if not ctl:
        return None
    a, b = _fit(NOTES_CTL) or (0.0, 0.0)
    m, t = max(ctl)
    k = t / (a * m * m + b * m)
    return a * k, b * k, (f"the curve measured earlier in this VM ({NOTES_CTL}) scaled by "
                          f"{k:.2f} to this run's {m}-export point")


def _points(v: View) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    ours = [(int(n), d["ready_s"]) for n, d in v.section("restore_ours").items()
            if isinstance(d, dict) and "ready_s" in d]
    ctl = [(int(n), d["seconds"]) for n, d in v.section("restore_targetctl").items()
           if isinstance(d, dict) and "seconds" in d and d.get("errors") == 0]
    return sorted(ours), sorted(ctl)


def restore(v: View, figures: Figures) -> str:
    if v.section("restore_pair"):
        return pairs(v, figures)
    ours, ctl = _points(v)
    model = ctl_model(ctl)
    xs = sorted({n for n, _ in ours} | {n for n, _ in ctl})
    top = max(xs or [1])
    curve = [(n, _at(model, n)) for n in range(0, top + 1, max(1, top // 50))] if model else []
    figures["performance-restore.png"] = partial(plots.restore, ours, ctl, curve)
    mine, theirs = dict(ours), dict(ctl)
    rows = []
    for n in xs:
        rec = v.get("restore_ours", n, "reconcile") or {}
        secs, vols = rec.get("seconds"), rec.get("volumes")
        # No constant term in the model: estimate only above the smallest measured N.
        est = _at(model, n) if model and n not in theirs and ctl and n > ctl[0][0] else None
        c = theirs.get(n, est)
        rows.append([n, sec(mine.get(n)), sec(secs), vols,
                     f"{1e3 * secs / vols:.0f} ms" if secs and vols else DASH,
                     sec(theirs[n]) if n in theirs else (f"~{est:.0f} s (estimated)" if est
                                                         else DASH),
                     times(c, mine.get(n))])
    return table(["N", "iscsiattachd start until ready", "of which first reconcile",
                  "volumes reconciled", "per volume", "targetctl restore", "targetctl / ours"],
                 rows)


def restore_goals(v: View) -> str:
    if v.section("restore_pair"):
        return pair_goals(v)
    ours, ctl = _points(v)
    if not (ours and ctl and ours[-1][0] > ctl[0][0]):
        return ""
    model = ctl_model(ctl)
    (n, o), (m, t) = ours[-1], ctl[-1]
    c = dict(ctl).get(n) or _at(model, n)
    ok = c / o >= RESTORE_GOAL if c and o else None
    how = "measured" if n in dict(ctl) else "targetctl estimated"
    rows = [[f"ours ≥ {RESTORE_GOAL}x faster than targetctl at {n} ({how})", times(c, o),
             verdict(ok)]]
    if n > m:       # even scaled only linearly, targetctl takes this long
        rows.append([f"lower bound: targetctl scaled only linearly from {m} ({t * n / m:.0f} s)"
                     f" / ours at {n}", times(t * n / m, o), ""])
    return table(["goal", "measured", ""], rows)


def restore_model(v: View) -> str:
    """The targetctl model and the targetctl restores that failed."""
    if v.section("restore_pair"):
        return pair_rounds(v)
    _, ctl = _points(v)
    model = ctl_model(ctl)
    rows = [["targetctl, t = a·N² + b·N", f"a = {model[0]:.2e}, b = {model[1]:.3f}",
             model[2]]] if model else []
    rows += [[f"targetctl at {n} failed", f"{d.get('errors')} errors",
              str(d.get("stderr", ""))[:200]]
             for n, d in v.section("restore_targetctl").items()
             if isinstance(d, dict) and d.get("errors")]
    return table(["", "", "from"], rows)


def _at(model: Model | None, n: int) -> float | None:
    return model[0] * n * n + model[1] * n if model else None



# -- ours and targetctl in turns (restore_pair) ---------------------------------
def _pairs(v: View) -> list[tuple[int, dict]]:
    return sorted((int(n), d) for n, d in v.section("restore_pair").items()
                  if isinstance(d, dict) and d.get("rounds"))


def _range(s: dict) -> str:
    p50, lo, hi = (seconds({"p50_ms": s.get(k)}) for k in ("p50_ms", "min_ms", "max_ms"))
    return sec(p50) if lo == hi else f"{sec(p50)} ({sec(lo)}–{sec(hi)})"


def pairs(v: View, figures: Figures) -> str:
    rows, ours, ctl = [], [], []
    for n, d in _pairs(v):
        o, c = d.get("ours_s") or {}, d.get("targetctl_s") or {}
        rec = [r["ours"].get("reconcile") or {} for r in d["rounds"]]
        ours += [(n, r["ours"]["seconds"]) for r in d["rounds"]]
        ctl += [(n, r["targetctl"]["seconds"]) for r in d["rounds"]
                if r["targetctl"].get("errors") == 0]
        first = [x["seconds"] for x in rec if "seconds" in x]
        rows.append([n, o.get("n"), _range(o), sec(min(first)) if first else DASH, _range(c),
                     times(seconds(c), seconds(o))])
    figures["performance-restore.png"] = partial(plots.restore, ours, ctl, [])
    return table(["N", "rounds", "iscsiattachd start until ready, p50 (range)",
                  "of which first reconcile (fastest)", "targetctl restore, p50 (range)",
                  "targetctl / ours (p50)"], rows)


def pair_goals(v: View) -> str:
    got = _pairs(v)
    if not got:
        return ""
    n, d = got[-1]
    o, c = seconds(d.get("ours_s") or {}), seconds(d.get("targetctl_s") or {})
    ok = c / o >= RESTORE_GOAL if c and o else None
    return table(["goal", "measured", ""],
                 [[f"ours ≥ {RESTORE_GOAL}x faster than targetctl at {n}, both measured in "
                   "turns", times(c, o), verdict(ok)]])


def pair_rounds(v: View) -> str:
    """Each round: who went first, each restore's time, and what LIO held of
    either before each restore (0 and 0: the same starting state)."""
    rows = []
    for n, d in _pairs(v):
        for i, r in enumerate(d["rounds"], 1):
            before = " / ".join(
                f"{who}: " + ", ".join(f"{k} {sum(c[k] for c in r[f'lio_before_{who}'].values())}"
                                       for k in ("targets", "storage_objects"))
                for who in r["order"])
            c = r["targetctl"]
            rows.append([n, i, " then ".join(r["order"]), sec(r["ours"]["seconds"]),
                         sec(c.get("seconds")) + ("" if c.get("errors") == 0 else
                                                  f" ({c.get('errors')} errors)"), before])
    return table(["N", "round", "order", "ours", "targetctl",
                  "LIO objects of either before each (ours / targetctl prefixes)"], rows)
