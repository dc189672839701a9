"""Output: the devref's Property/Value tables, or JSON for scripts.

The CHAP secret in connection_info is masked unless --show-secrets.
"""
from __future__ import annotations

import json
from typing import Any

MASK = "***"
SECRET_KEYS = ("auth_password", "discovery_auth_password")


def masked(info: dict[str, Any], show_secrets: bool) -> dict[str, Any]:
    if show_secrets:
        return info
    return {k: (MASK if k in SECRET_KEYS and v else v) for k, v in info.items()}


def _cell(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    out = [line, fmt.format(*header), line]
    out += [fmt.format(*r) for r in rows] + [line]
    return "\n".join(out)


def property_table(obj: dict[str, Any]) -> str:
    return table([[k, _cell(v)] for k, v in sorted(obj.items())], ["Property", "Value"])


def show_attachment(att: dict[str, Any], fmt: str, show_secrets: bool) -> str:
    att = dict(att)
    info = masked(att.pop("connection_info", None) or {}, show_secrets)
    if fmt == "json":
        return json.dumps({**att, "connection_info": info}, indent=2, sort_keys=True)
    out = property_table(att)
    if info:
        out += "\n" + property_table(info)
    return out


def show_object(obj: dict[str, Any], fmt: str) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) if fmt == "json" else property_table(obj)


def show_list(items: list[dict[str, Any]], columns: list[tuple[str, str]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(items, indent=2, sort_keys=True)
    rows = [[_cell(i.get(key)) if i.get(key) is not None else "-" for key, _ in columns]
            for i in items]
    return table(rows, [title for _, title in columns])
