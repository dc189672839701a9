"""The project's .deb that the node installs: given, or the newest in dist/,
or built with tools/package when there is none. Packages of the same build
beside it (iscsiattach*_<same version>_amd64.deb) are installed with it."""
from __future__ import annotations

import subprocess
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]


def find_deb(given: Path | None) -> Path:
    if given is not None:
        if not given.is_file():
            raise SystemExit(f"tools/node-vm: no such .deb: {given}")
        return given.resolve()
    newest = _newest()
    if newest is None:
        package = TOP / "tools" / "package"
        if not package.exists():
            raise SystemExit("tools/node-vm: no dist/iscsiattach_*.deb and no tools/package "
                             "in this tree to build one; pass --deb PATH")
        subprocess.run([str(package)], check=True, cwd=TOP)
        newest = _newest()
        if newest is None:
            raise SystemExit("tools/node-vm: tools/package made no dist/iscsiattach_*.deb")
    return newest


def with_siblings(deb: Path) -> list[Path]:
    """The .deb and the other packages of its build in the same folder."""
    version = deb.name.split("_")[1]
    return sorted({deb, *deb.parent.glob(f"iscsiattach*_{version}_amd64.deb")})


def _newest() -> Path | None:
    debs = sorted((TOP / "dist").glob("iscsiattach_*_amd64.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def deb_fields(deb: Path) -> dict[str, str]:
    """Package, Version, Depends... of the .deb (dpkg-deb --field)."""
    out = subprocess.run(["dpkg-deb", "--field", str(deb)], check=True, capture_output=True,
                         text=True).stdout
    fields: dict[str, str] = {}
    key = ""
    for line in out.splitlines():
        if line.startswith(" ") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields
