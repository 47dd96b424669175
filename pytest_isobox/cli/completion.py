"""`isobox completion bash|zsh`: a shell script completing verbs, sub-verbs, flags and the
names of containers, images, networks and volumes.

The script is generated from the parser itself, so a new verb or flag completes without
anyone editing it. Names are asked of the engine when completing, through the very command
being completed (`${COMP_WORDS[0]}`, with the `--engine`/`--home`/`-H` already typed), so they
are the ones that engine has. zsh runs the same function through bashcompinit.
"""

from __future__ import annotations

import argparse

# What a verb's positional arguments name, by the parser's dest for them.
_KINDS = {
    "container": "containers", "containers": "containers", "src": "containers",
    "dst": "containers", "image": "images", "images": "images", "source": "images",
    "reference": "images", "refs": "containers images", "path": "files", "ref": "images",
}
_GROUP_KINDS = {"network": "networks", "volume": "volumes"}  # their `names`, `network`
_TOP_VALUE_FLAGS = ("--engine", "--home", "-H", "--host")


def cmd_completion(engine: object, args: argparse.Namespace) -> int:
    from pytest_isobox.cli.arguments import parser

    print(script(parser(), args.shell))
    return 0


def verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every verb path ("run", "network connect") and its parser, groups included."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(prefix: str, p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    path = f"{prefix} {name}".strip()
                    found[path] = child
                    walk(path, child)

    walk("", parser)
    return found


def _subverbs(p: argparse.ArgumentParser) -> list[str]:
    return [name for action in p._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices]


def _flags(p: argparse.ArgumentParser) -> list[str]:
    return [flag for action in p._actions for flag in action.option_strings]


def _value_flags(p: argparse.ArgumentParser) -> list[str]:
    """Flags followed by a value (their value is not a positional word)."""
    return [flag for action in p._actions if action.option_strings and action.nargs != 0
            for flag in action.option_strings]


def _kinds(path: str, p: argparse.ArgumentParser) -> str:
    group = path.split()[0]
    kinds: list[str] = []
    for action in p._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        if group in _GROUP_KINDS and action.dest in ("names", "name"):
            kind = _GROUP_KINDS[group] if action.dest == "names" else ""
        elif group == "network" and action.dest == "network":
            kind = "networks"
        else:
            kind = _KINDS.get(action.dest, "")
        for word in kind.split():
            if word not in kinds:
                kinds.append(word)
    return " ".join(kinds)


def _quote(words: list[str]) -> str:
    return " ".join(words).replace("'", "")


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    table = verbs(parser)
    groups = [path for path, p in table.items() if _subverbs(p)]
    cases_flags, cases_values, cases_kinds = [], [], []
    for path, p in table.items():
        cases_flags.append(f"        '{path}') echo '{_quote(_flags(p))}' ;;")
        cases_values.append(f"        '{path}') echo '{_quote(_value_flags(p))}' ;;")
        kinds = _subverbs(p) and "" or _kinds(path, p)
        if kinds:
            cases_kinds.append(f"        '{path}') echo '{kinds}' ;;")
    top_flags = _quote(_flags(parser))
    top_verbs = _quote(_subverbs(parser))
    body = _BASH.format(
        top_flags=top_flags, top_verbs=top_verbs, groups=_quote(groups),
        top_value_flags=" | ".join(_TOP_VALUE_FLAGS),
        subverbs="\n".join(f"        '{g}') echo '{_quote(_subverbs(table[g]))}' ;;"
                           for g in groups),
        flags="\n".join(cases_flags), values="\n".join(cases_values),
        kinds="\n".join(cases_kinds))
    if shell == "zsh":
        return "#compdef isobox\nautoload -U +X bashcompinit && bashcompinit\n" + body
    return body


_BASH = r"""# isobox completion (bash): source it, e.g. `source <(isobox completion bash)`
_isobox_subverbs() {{
    case "$1" in
{subverbs}
    esac
}}
_isobox_flags() {{
    case "$1" in
{flags}
    esac
}}
_isobox_value_flags() {{
    case "$1" in
{values}
    esac
}}
_isobox_kinds() {{
    case "$1" in
{kinds}
    esac
}}
_isobox_names() {{
    local cmd=("$@")
    case "$_isobox_kind" in
        containers) "${{cmd[@]}}" ps -a --format '{{{{.Names}}}}' 2>/dev/null ;;
        images) "${{cmd[@]}}" images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' 2>/dev/null \
                | grep -v '<none>' ;;
        networks) "${{cmd[@]}}" network ls --format '{{{{.Name}}}}' 2>/dev/null ;;
        volumes) "${{cmd[@]}}" volume ls -q 2>/dev/null ;;
    esac
}}
_isobox() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" word i skip=""
    local cmd=("${{COMP_WORDS[0]}}")
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if [[ -n "$skip" ]]; then skip=""; continue; fi
        if [[ -z "$path" ]]; then
            case "$word" in
                {top_value_flags}) cmd+=("$word" "${{COMP_WORDS[i+1]}}"); skip=1; continue ;;
            esac
        fi
        if [[ "$word" == -* ]]; then
            [[ " $(_isobox_value_flags "$path") " == *" $word "* ]] && skip=1
            continue
        fi
        if [[ -z "$path" ]]; then
            path="$word"
        elif [[ " {groups} " == *" $path "* && -n "$(_isobox_subverbs "$path")" ]]; then
            path="$path $word"
        else
            break
        fi
    done
    if [[ -n "$skip" ]]; then COMPREPLY=(); return 0; fi
    if [[ -z "$path" ]]; then
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "{top_flags}" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{top_verbs}" -- "$cur"))
        fi
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_isobox_flags "$path")" -- "$cur"))
        return 0
    fi
    local sub
    sub="$(_isobox_subverbs "$path")"
    if [[ -n "$sub" ]]; then
        COMPREPLY=($(compgen -W "$sub" -- "$cur"))
        return 0
    fi
    local names="" _isobox_kind
    for _isobox_kind in $(_isobox_kinds "$path"); do
        if [[ "$_isobox_kind" == files ]]; then
            COMPREPLY+=($(compgen -f -- "$cur"))
        else
            names="$names $(_isobox_names "${{cmd[@]}}")"
        fi
    done
    COMPREPLY+=($(compgen -W "$names" -- "$cur"))
    return 0
}}
complete -F _isobox isobox
"""
