"""PNG plots for docs/performance.md (matplotlib, small files)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"iscsiattachd (REST)": "o-", "rtslib + save_to_file (Cinder way)": "s--",  # noqa: E501
         "targetcli one-shot": "^:"}


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    # No software tag or date in the file: a re-render from the same data with
    # the same (pinned) matplotlib is the same bytes.
    fig.savefig(path, dpi=72, metadata={"Software": None})
    plt.close(fig)


def control_plane(series: dict[str, dict[str, list]], path: Path) -> None:
    """series[system][op] = [(n, p50_ms, estimated), ...]; an estimated
    point is drawn hollow and ringed, and the legend says so."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, op in zip(axes, ("create", "delete"), strict=True):
        ringed = False
        for system, ops in series.items():
            pts = sorted(ops.get(op, []))
            if pts:
                line, = ax.plot([p[0] for p in pts], [p[1] / 1e3 for p in pts],
                                STYLE.get(system, "o-"), label=system)
                est = [p for p in pts if len(p) > 2 and p[2]]
                if est:
                    ax.plot([p[0] for p in est], [p[1] / 1e3 for p in est], "o", ms=12,
                            mfc="none", color=line.get_color(),
                            label=None if ringed else "estimated, not measured")
                    ringed = True
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("existing exports")
        ax.set_title(f"attachment {op} (p50)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds (log)")
    for ax in axes:
        ax.legend(fontsize=7)
    _save(fig, path)


def concurrency(rows: list[tuple[int, float, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    clients = [r[0] for r in rows]
    ax.plot(clients, [r[1] for r in rows], "o-", label="ops/s")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("operations per second")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(clients, [r[2] / 1e3 for r in rows], "s--", color="tab:red", label="p95 latency")
    ax2.set_ylabel("p95 latency (s)")
    ax2.set_ylim(bottom=0)
    ax.set_xscale("log", base=2)
    ax.set_xticks(clients, [str(c) for c in clients])
    ax.set_title("attachment create+delete, distinct volumes")
    fig.legend(loc="upper left", fontsize=7)
    _save(fig, path)


def phases(bars: dict[str, dict[str, float]], path: Path, title: str) -> None:
    """Stacked horizontal bars: bars[label][phase] = seconds; one colour per phase."""
    names: list[str] = []
    for row in bars.values():
        names += [k for k in row if k not in names]
    colour = {k: plt.cm.tab20(i % 20) for i, k in enumerate(names)}
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.45 * len(bars) + 0.12 * len(names)))
    labels = list(bars)
    for i, label in enumerate(labels):
        left = 0.0
        for phase, sec in bars[label].items():
            ax.barh(i, sec, left=left, color=colour[phase], edgecolor="white",
                    label=phase if i == labels.index(next(
                        lb for lb in labels if phase in bars[lb])) else None)
            left += sec
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("seconds (p50 per phase)")
    ax.set_title(title)
    ax.invert_yaxis()
    ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    _save(fig, path)


def restore(ours: list[tuple[int, float]], ctl: list[tuple[int, float]],
            ctl_fit: list[tuple[int, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if ours:
        ax.plot(*zip(*sorted(ours), strict=True), "o-", label="iscsiattachd start until ready")
    if ctl:
        ax.plot(*zip(*sorted(ctl), strict=True), "s", color="tab:red",
                label="targetctl restore (measured)")
    if ctl_fit:
        ax.plot(*zip(*sorted(ctl_fit), strict=True), ":", color="tab:red",
                label="targetctl, a·N²+b·N estimate (see text)")
    ax.set_xlabel("exports restored (LIO empty)")
    ax.set_ylabel("seconds")
    ax.set_title("restore after a reboot")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def datapath(table: dict[str, dict[str, float]], path: Path) -> None:
    """table[system][job] = value normalised to raw = 1."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    systems = list(table)
    jobs = list(next(iter(table.values()))) if table else []
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        ax.bar([j + i * width for j in range(len(jobs))], [table[system][k] for k in jobs],
               width, label=system)
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(jobs))], jobs,
                  fontsize=7)
    ax.set_ylabel("throughput / raw backing")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_title("fio QD32 (1.0 = raw backing file)")
    ax.legend(fontsize=7)
    _save(fig, path)
