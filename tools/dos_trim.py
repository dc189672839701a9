"""Trim a DoS suite result for docs/data/: long lists of bad log lines keep
their first 20 (the count stays in log_bad_total); everything else as measured.

    python tools/dos_trim.py IN.json OUT.json [KEY=VALUE ...]

KEY=VALUE pairs are added to the top level (where the run was made, which
server), for results written before the suite recorded them itself.
"""
from __future__ import annotations

import json
import sys


def main() -> int:
    src, dst, *extra = sys.argv[1:]
    data = json.loads(open(src).read())
    for r in data["results"]:
        bad = r.get("log_bad") or []
        r["log_bad_total"] = len(bad)
        r["log_bad"] = bad[:20]
    data.update(dict(pair.split("=", 1) for pair in extra))
    with open(dst, "w") as f:
        f.write(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
