"""Shell completion: the ids behind ``iscsiattach --complete KIND``, and the
bash and zsh scripts, generated from the argument parser (tools/cli-files
writes them into packaging/completion/; a unit test fails when they drift).

The scripts complete commands, options, the choices of an option, file
names where an option takes a file, and volume / attachment ids asked of
the API with the --url, --token-file and --cacert typed so far.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from iscsiattach.cli import apiversion
from iscsiattach.cli.args import ID_KINDS, PROG, subcommands
from iscsiattach.cli.client import Client, find_token

TIMEOUT = 2.0                   # seconds: a completion must never hang a shell
DAEMON_OPTIONS = ("--url", "--token-file", "--cacert")
FILE_OPTIONS = ("--token-file", "--cacert", "--source")
COLLECTIONS = {"volumes": ("/volumes", "volumes"),
               "attachments": ("/attachments", "attachments")}


def list_ids(kind: str, url: str, token_file: str | None, cacert: str | None) -> list[str]:
    """The ids of ``kind`` the daemon has; [] on any error, without a word."""
    path, key = COLLECTIONS[kind]
    try:
        token = find_token(token_file)
        client = Client(url, token.value, apiversion.DEFAULT, timeout=TIMEOUT, cacert=cacert)
        body = client.checked(client.call("GET", path), 200)
        return [str(item["id"]) for item in body[key]]
    except Exception:           # a completion stays silent, whatever failed
        return []


# -- what the scripts are made from --------------------------------------------------
@dataclass
class Option:
    names: list[str]
    takes_value: bool
    choices: list[str]
    help: str


@dataclass
class Command:
    name: str
    help: str
    options: list[Option] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)      # per positional: id kinds or ""
    repeats: bool = False                               # the last positional takes several


def _options(p: argparse.ArgumentParser) -> list[Option]:
    out = []
    for a in p._actions:
        if not a.option_strings or a.help == argparse.SUPPRESS:
            continue
        choices = [str(c) for c in a.choices or []]
        if a.metavar == "True|False":
            choices = ["True", "False"]
        out.append(Option(list(a.option_strings), a.nargs != 0, choices, a.help or ""))
    return out


def model(top: argparse.ArgumentParser) -> tuple[list[Option], list[Command]]:
    commands = []
    helps = {}
    for a in top._actions:
        if isinstance(a, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in a._choices_actions}
    for name, p in subcommands(top).items():
        cmd = Command(name, helps.get(name, ""), _options(p))
        for a in p._actions:
            if not a.option_strings:
                cmd.kinds.append(ID_KINDS.get(str(a.metavar), ""))
                cmd.repeats = a.nargs in ("+", "*")
        commands.append(cmd)
    return _options(top), commands


def _words(options: list[Option]) -> str:
    return " ".join(n for o in options for n in o.names if n.startswith("--") and "_" not in n)


# -- bash ---------------------------------------------------------------------------
BASH_HEAD = f"""\
# bash completion for {PROG}                              -*- shell-script -*-
# Generated from {PROG}'s argument parser by tools/cli-files: do not edit.

_{PROG}_ids()
{{
    # The ids of $1 (volumes, attachments) from the API, with the --url,
    # --token-file and --cacert typed so far; nothing on any error.
    local i args=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
            {"|".join(DAEMON_OPTIONS)}) args+=("${{COMP_WORDS[i]}}" "${{COMP_WORDS[i+1]}}") ;;
        esac
    done
    "${{COMP_WORDS[0]}}" "${{args[@]}}" --complete "$1" 2>/dev/null
}}
"""


def _valued(options: list[Option]) -> str:
    return " " + " ".join(n for o in options if o.takes_value for n in o.names) + " "


def bash_script(top: argparse.ArgumentParser) -> str:
    glob, commands = model(top)
    lines = [BASH_HEAD, f"_{PROG}_value()", "{",
             "    # The values of option $1; the word being completed is $2.",
             '    case $1 in']
    seen: set[str] = set()
    for o in glob + [o for c in commands for o in c.options]:
        name = "|".join(o.names)
        if not o.takes_value or name in seen:
            continue
        seen.add(name)
        if o.choices:
            reply = f'COMPREPLY=($(compgen -W "{" ".join(o.choices)}" -- "$2"))'
        elif set(o.names) & set(FILE_OPTIONS):
            reply = 'COMPREPLY=($(compgen -f -- "$2"))'
        else:
            reply = "COMPREPLY=()"
        lines.append(f"        {name}) {reply} ;;")
    lines += ["    esac",
              "}",
              "",
              f"_{PROG}()",
              "{",
              "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}",
              "    local i w cmd= at=0 npos=0 opts valued kinds=() repeats=0 kind k",
              f'    local top_valued="{_valued(glob)}"',
              "    for ((i = 1; i < COMP_CWORD; i++)); do",
              "        w=${COMP_WORDS[i]}",
              '        if [[ $top_valued == *" $w "* ]]; then ((i++)); continue; fi',
              "        [[ $w == -* ]] && continue",
              "        cmd=$w; at=$i; break",
              "    done",
              '    if [[ -z $cmd ]]; then',
              f'        if [[ $top_valued == *" $prev "* ]]; then _{PROG}_value "$prev" "$cur"',
              f'        elif [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "{_words(glob)}" '
              '-- "$cur"))',
              f'        else COMPREPLY=($(compgen -W "{" ".join(c.name for c in commands)}" '
              '-- "$cur")); fi',
              "        return",
              "    fi",
              "    case $cmd in"]
    for c in commands:
        kinds = " ".join(f'"{k}"' for k in c.kinds)
        lines += [f"        {c.name})",
                  f'            opts="{_words(c.options)}"',
                  f'            valued="{_valued(c.options)}"',
                  f"            kinds=({kinds}); repeats={int(c.repeats)} ;;"]
    lines += ["        *) return ;;",
              "    esac",
              '    if ((COMP_CWORD > at + 1)) && [[ $valued == *" $prev "* ]]; then',
              f'        _{PROG}_value "$prev" "$cur"',
              "        return",
              "    fi",
              '    if [[ $cur == -* ]]; then',
              '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
              "        return",
              "    fi",
              "    for ((i = at + 1; i < COMP_CWORD; i++)); do",
              "        w=${COMP_WORDS[i]}",
              '        if [[ $valued == *" $w "* ]]; then ((i++)); continue; fi',
              "        [[ $w == -* ]] || ((npos++))",
              "    done",
              "    if ((npos >= ${#kinds[@]})); then",
              "        ((repeats)) || return",
              "        npos=$((${#kinds[@]} - 1))",
              "    fi",
              "    kind=${kinds[npos]}",
              "    [[ -n $kind ]] || return",
              f'    COMPREPLY=($(compgen -W "$(for k in $kind; do _{PROG}_ids "$k"; done)" '
              '-- "$cur"))',
              "}",
              f"complete -F _{PROG} {PROG}",
              ""]
    return "\n".join(lines)


# -- zsh ----------------------------------------------------------------------------
def _zq(text: str) -> str:
    """Text inside a single-quoted _arguments spec: its first clause, no
    bracket, quotes escaped."""
    text = text.replace("e.g. ", "e.g.\0").split(". ")[0].split(" (")[0].replace("\0", " ")
    for ch in "[]\\`":
        text = text.replace(ch, " ")
    return " ".join(text.split()).replace("'", "'\\''")


def _zspec(o: Option) -> list[str]:
    action = ""
    if o.takes_value:
        if o.choices:
            action = f":{o.names[-1].lstrip('-')}:({' '.join(o.choices)})"
        elif set(o.names) & set(FILE_OPTIONS):
            action = ":file:_files"
        else:
            action = ":value: "
    names = [n for n in o.names if "_" not in n]
    if len(names) > 1:
        group = "(" + " ".join(names) + ")"
        return [f"'{group}'{{{','.join(names)}}}'[{_zq(o.help)}]{action}'"]
    return [f"'{names[0]}[{_zq(o.help)}]{action}'"]


def zsh_script(top: argparse.ArgumentParser) -> str:
    glob, commands = model(top)
    out = [f"#compdef {PROG}",
           f"# zsh completion for {PROG}.",
           f"# Generated from {PROG}'s argument parser by tools/cli-files: do not edit.",
           "",
           f"_{PROG}_ids() {{",
           "    # The ids of $1 (volumes, attachments) from the API, with the --url,",
           "    # --token-file and --cacert given so far; nothing on any error.",
           "    local -a args ids",
           "    local o k",
           f"    for o in {' '.join(DAEMON_OPTIONS)}; do",
           "        [[ -n ${opt_args[$o]} ]] && args+=($o ${(Q)opt_args[$o]})",
           "    done",
           "    for k in ${=1}; do",
           f'        ids+=(${{(f)"$(_call_program ids {PROG} ${{(q)args}} --complete $k '
           '2>/dev/null)"})',
           "    done",
           "    _describe -t ids id ids",
           "}",
           "",
           f"_{PROG}() {{",
           '    local curcontext="$curcontext" state line',
           "    typeset -A opt_args",
           "    _arguments -C \\"]
    for o in glob:
        out += [f"        {s} \\" for s in _zspec(o)]
    out += ["        '1:command:->command' \\",
            "        '*::argument:->args'",
            "    case $state in",
            "        command)",
            "            local -a commands",
            "            commands=("]
    out += [f"                '{c.name}:{_zq(c.help)}'" for c in commands]
    out += ["            )",
            "            _describe -t commands command commands",
            "            ;;",
            "        args)",
            "            case $line[1] in"]
    for c in commands:
        specs = [s for o in c.options for s in _zspec(o)]
        for n, kind in enumerate(c.kinds, start=1):
            where = "*" if c.repeats and n == len(c.kinds) else str(n)
            specs.append(f"'{where}:id:{{_{PROG}_ids \"{kind}\"}}'" if kind
                         else f"'{where}:argument: '")
        out.append(f"                {c.name})")
        out.append("                    _arguments \\")
        out += [f"                        {s} \\" for s in specs[:-1]]
        out.append(f"                        {specs[-1]}" if specs else "")
        out.append("                    ;;")
    out += ["            esac",
            "            ;;",
            "    esac",
            "}",
            "",
            f'_{PROG} "$@"',
            ""]
    return "\n".join(out)
