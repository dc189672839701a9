"""How much of each measurement a run takes: --quick (CI smoke) or full."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    name: str
    stages: tuple[int, ...]                 # existing exports for items 1, 4, 6
    ours_samples: int                       # item 1, ours, per stage
    rts_samples: dict[int, int]             # item 1, baseline (a), per stage
    tcli_samples: dict[int, int]            # item 1, baseline (b), per stage
    restore_ns: tuple[int, ...]             # item 4: ours and targetctl restore these sizes
    concurrency_stage: int                  # item 2 runs at this stage
    restore_rounds: int = 2                 # item 4: each size, in turns, this many times
    clients: tuple[int, ...] = (1, 8, 32)
    ops_per_level: int = 96                 # item 2: creates+deletes per client count
    e2e_samples: int = 8                    # item 3 in-process, each variant
    floor_samples: int = 8
    cli_samples: int = 2
    fio_runtime: int = 8
    fio_rounds: int = 3                     # item 5: each job this many times per target
    fio_size: str = "512M"
    idle_window: float = 30.0
    steady_runs: int = 0                    # item 6: periodic runs timed; 0: one whole round
    reconcile_only: bool = False            # each stage: its restore, footprint and reconciles
    spares: int = 40
    tcli_cap_s: dict = field(default_factory=dict)   # per stage, seconds
    budget_s: float = 3600.0                # the whole run in the VM
    reserve_s: float = 240.0                # kept for the final cleanup
    extra: dict = field(default_factory=dict)


# Stages run in this order: the headline sizes first, in case the budget ends.
FULL = Profile("full", stages=(1, 1000, 100), ours_samples=15,
               rts_samples={1: 3, 1000: 1, 100: 1}, tcli_samples={1: 1, 1000: 1, 100: 1},
               tcli_cap_s={1: 900, 1000: 1200, 100: 240},
               restore_ns=(100, 1000), concurrency_stage=1, ops_per_level=32,
               e2e_samples=4, floor_samples=5, cli_samples=1, fio_runtime=5,
               fio_size="256M", idle_window=20.0, budget_s=5000.0, reserve_s=360.0)
QUICK = Profile("quick", stages=(1, 20), ours_samples=5, rts_samples={1: 2, 20: 2},
                tcli_samples={1: 1, 20: 1}, restore_ns=(20,), restore_rounds=1, concurrency_stage=1,
                ops_per_level=16, e2e_samples=2, floor_samples=2, cli_samples=1,
                fio_runtime=2, fio_size="128M", fio_rounds=1, idle_window=5.0, steady_runs=3,
                spares=36,
                tcli_cap_s={1: 900, 20: 60}, budget_s=1500.0, reserve_s=60.0)

# Item 6 alone at the size that matters: the restore, the idle footprint, a
# restart (every volume compared in full) and a round of periodic runs.
STEADY = Profile("steady", stages=(1000,), ours_samples=0, rts_samples={}, tcli_samples={},
                 restore_ns=(), concurrency_stage=0, idle_window=20.0, reconcile_only=True,
                 budget_s=1800.0, reserve_s=120.0)

PROFILES = {"full": FULL, "quick": QUICK, "steady": STEADY}
