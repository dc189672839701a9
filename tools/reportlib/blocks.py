"""Render markers in Markdown files, and their contents made from data.

A block is written in a document as

    <!-- render: KIND data/FILE.json [data/MORE.json ...] -->
    ...what the renderer KIND makes of those files...
    <!-- end render -->

Paths are relative to the document's folder. ``render_file`` puts what the
renderers make between the markers; ``--check`` (tools/render-docs) fails
when a document differs from that, so no figure between markers is typed
by hand or left behind by new data.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

BLOCK = re.compile(r"(<!-- render: (?P<kind>[a-z-]+) (?P<files>[^>]*?) -->\n)"
                   r"(?P<body>.*?)"
                   r"(<!-- end render -->)", re.S)

Renderer = Callable[[list[Path]], str]


def render_text(text: str, folder: Path, renderers: dict[str, Renderer]) -> str:
    def one(m: re.Match) -> str:
        kind = m["kind"]
        if kind not in renderers:
            raise ValueError(f"unknown renderer {kind!r} (known: {', '.join(renderers)})")
        paths = [folder / f for f in m["files"].split()]
        body = renderers[kind](paths).rstrip("\n") + "\n"
        return m.group(1) + body + m.group(5)
    return BLOCK.sub(one, text)


def blocks_in(text: str) -> list[tuple[str, list[str]]]:
    return [(m["kind"], m["files"].split()) for m in BLOCK.finditer(text)]


def render_file(doc: Path, renderers: dict[str, Renderer], check: bool) -> bool:
    """Render ``doc``'s blocks; with ``check``, only say whether it is up to
    date. True when the document is (or now is) what its data renders to."""
    text = doc.read_text()
    made = render_text(text, doc.parent, renderers)
    if made == text:
        return True
    if not check:
        doc.write_text(made)
        return True
    return False
