"""The README's operator commands, as the node suites run them.

README.md marks each shell block an operator pastes on a node or a host with
an HTML comment, ``<!-- node-suite: NAME -->``, on the line before its
```sh fence. The suites run exactly those blocks, so a command in the README
that stops working fails a suite instead of misleading a reader.
"""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^<!-- node-suite: ([a-z0-9-]+) -->\n```sh\n(.*?)^```$", re.M | re.S)


def blocks(path: Path = README) -> dict[str, str]:
    """Every marked block by name; a name may be used once."""
    found: dict[str, str] = {}
    for name, body in BLOCK.findall(path.read_text()):
        if name in found:
            raise ValueError(f"{path.name}: the node-suite block {name!r} is there twice")
        found[name] = body
    return found


def block(name: str, path: Path = README) -> str:
    try:
        return blocks(path)[name]
    except KeyError:
        raise ValueError(f"{path.name} has no block marked '<!-- node-suite: {name} -->'") \
            from None
