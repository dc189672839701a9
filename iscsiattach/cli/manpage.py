"""Manual pages in roff (man(7)) from an argparse parser.

``page`` renders a parser's options and, when it has commands, each command
with its usage and options; the caller adds its own sections (environment,
files, exit status...). No date and no terminal width go in: the same
parser always gives the same bytes, so a committed page can be checked
against the code (tools/cli-files --check, tests/unit/test_cli_files.py).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    title: str
    text: str                   # paragraphs separated by a blank line; roff escaped here
    literal: bool = False       # keep the lines as they are (.nf)
    roff: str = ""              # already roff, put after the text as it is


def esc(text: str) -> str:
    """Text for roff: backslashes and minus signs escaped, no line starting
    with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line
                     for line in text.split("\n"))


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {"default": action.default, "prog": "", "choices": action.choices}
    return " ".join(text.split())


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _shown(action: argparse.Action) -> bool:
    return action.help != argparse.SUPPRESS and not isinstance(
        action, argparse._SubParsersAction)


def _option_names(action: argparse.Action) -> list[str]:
    # A second spelling with underscores (cinderclient's hidden aliases) is
    # not documented.
    names = [n for n in action.option_strings if "_" not in n.lstrip("-") or
             len(action.option_strings) == 1]
    return names


def synopsis(prog: str, p: argparse.ArgumentParser, skip: Sequence[str] = ()) -> str:
    """The usage line, in roff: options bold, values italic."""
    parts = [f"\\fB{esc(prog)}\\fR"]
    for a in p._actions:
        if not _shown(a) or isinstance(a, argparse._HelpAction) or a.dest in skip:
            continue
        if a.option_strings:
            name = f"\\fB{esc(_option_names(a)[0])}\\fR"
            if a.nargs != 0:
                name += f" \\fI{esc(_metavar(a))}\\fR"
            parts.append(f"[{name}]")
        else:
            word = f"\\fI{esc(_metavar(a))}\\fR"
            parts.append(word + (" ..." if a.nargs in ("+", "*") else ""))
    return " ".join(parts)


def options(p: argparse.ArgumentParser, skip: Sequence[str] = ()) -> list[str]:
    """.TP entries for each shown option and positional of ``p`` (but the
    options whose dest is in ``skip``)."""
    out = []
    for a in p._actions:
        if not _shown(a) or a.dest in skip:
            continue
        if a.option_strings:
            names = ", ".join(f"\\fB{esc(n)}\\fR" for n in _option_names(a))
            if a.nargs != 0:
                names += f" \\fI{esc(_metavar(a))}\\fR"
        else:
            names = f"\\fI{esc(_metavar(a))}\\fR"
        out += [".TP", names, esc(_help(a)) or esc("(no description)")]
    return out


def _section(s: Section) -> list[str]:
    out = [f".SH {esc(s.title.upper())}"]
    if s.literal:
        return out + [".nf", esc(s.text), ".fi"] + ([s.roff] if s.roff else [])
    paragraphs = [para for para in s.text.strip().split("\n\n") if para.strip()]
    for n, para in enumerate(paragraphs):
        if n:
            out.append(".PP")
        out.append(esc(" ".join(para.split())))
    return out + ([s.roff] if s.roff else [])


def page(prog: str, section: int, version: str, summary: str, p: argparse.ArgumentParser,
         description: str, before: Sequence[Section] = (),
         after: Sequence[Section] = (), common: Sequence[str] = ()) -> str:
    """The whole page: NAME, SYNOPSIS, DESCRIPTION, the ``before`` sections,
    OPTIONS, COMMANDS (if ``p`` has any), the ``after`` sections. The
    options whose dest is in ``common`` (every command takes them too) are
    described once, under OPTIONS."""
    manual = "User Commands" if section == 1 else "System Administration"
    out = [f'.TH {esc(prog.upper())} {section} "" "{esc(prog)} {esc(version)}" "{manual}"',
           ".SH NAME", f"{esc(prog)} \\- {esc(summary)}", ".SH SYNOPSIS"]
    commands: dict[str, argparse.ArgumentParser] = {}
    helps: dict[str, str] = {}
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            commands = dict(a.choices)
            helps = {c.dest: c.help or "" for c in a._choices_actions}
    if commands:
        out.append(f"\\fB{esc(prog)}\\fR [\\fIoptions\\fR] \\fICOMMAND\\fR "
                   f"[\\fIcommand options\\fR] [\\fIarguments\\fR]")
    else:
        out.append(synopsis(prog, p))
    out += _section(Section("Description", description))
    for s in before:
        out += _section(s)
    out += [".SH OPTIONS"] + options(p)
    if commands:
        out.append(".SH COMMANDS")
        for name, sub in commands.items():
            skip = [*common, "help"]
            out += [f".SS {esc(name)}", synopsis(f"{prog} {name}", sub, skip), ".PP",
                    esc(helps.get(name, ""))]
            out += options(sub, skip)
    for s in after:
        out += _section(s)
    return "\n".join(out) + "\n"
