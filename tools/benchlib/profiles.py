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
    ctl_ns: tuple[int, ...]                 # item 4, targetctl restore sizes
    concurrency_stage: int                  # item 2 runs at this stage
    clients: tuple[int, ...] = (1, 8, 32)
    ops_per_level: int = 96                 # item 2: creates+deletes per client count
    e2e_samples: int = 8                    # item 3 in-process, each variant
    floor_samples: int = 8
    cli_samples: int = 2
    fio_runtime: int = 8
    fio_size: str = "512M"
    idle_window: float = 30.0
    spares: int = 40
    extra: dict = field(default_factory=dict)


FULL = Profile("full", stages=(1, 100, 1000), ours_samples=20,
               rts_samples={1: 5, 100: 3, 1000: 2}, tcli_samples={1: 2, 100: 1, 1000: 1},
               ctl_ns=(100, 300), concurrency_stage=100)
QUICK = Profile("quick", stages=(1, 20), ours_samples=5, rts_samples={1: 2, 20: 2},
                tcli_samples={1: 1, 20: 1}, ctl_ns=(20,), concurrency_stage=20,
                ops_per_level=32, e2e_samples=2, floor_samples=2, cli_samples=1,
                fio_runtime=2, fio_size="128M", idle_window=5.0, spares=36)
PROFILES = {"full": FULL, "quick": QUICK}
