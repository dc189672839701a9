"""pytest plugin (-p tests.unit.fuzz_report, used by tools/fuzz): prints how
many requests and CLI runs the hostile-input and concurrency suites made."""
from __future__ import annotations

from tests.unit.fuzz_world import CASES


def pytest_terminal_summary(terminalreporter) -> None:
    if CASES:
        terminalreporter.section("iscsiattach fuzz cases")
        for name, count in sorted(CASES.items()):
            terminalreporter.write_line(f"{name}: {count}")
        cases = sum(n for name, n in CASES.items() if " answered " not in name
                    and " exit " not in name)
        terminalreporter.write_line(f"total cases: {cases}")
