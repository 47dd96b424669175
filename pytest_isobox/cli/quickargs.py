"""The read-only verbs' arguments, and run's, create's and rm's, without argparse: `isobox
ps -a` and `isobox run --rm IMAGE true` as a user types them.

argparse costs a few milliseconds to import and build, as much as `docker ps` spends in all
(7-9 ms for run's 60 flags). The read-only verbs (ps, images, inspect, logs, port, network
ls, volume ls, image inspect, image ls), rm and `build` (whose fully cached run takes about as
little) take a few flags each; run and create take the flags cli/run_options.py lists (read
from that list, `_container_flags`, given a recorder for a parser). This reads the plain forms
of them into the namespace argparse would give. Anything else (-h/--help, an unknown,
abbreviated or combined flag, `--`, attached or dash-led values, a bad number or choice, a
wrong count of arguments) returns None and cli/arguments.py's parser parses it, so help and
every error message stay argparse's own; tests/cli/test_quickargs.py checks the two agree.
"""

from __future__ import annotations

from types import SimpleNamespace

# flag kinds: a switch, a value (the last one given wins), a repeatable value, an integer,
# and one whose forms only argparse reads (build's `--pull [POLICY]`: its default alone here)
_BOOL, _VALUE, _APPEND, _INT, _ARGPARSE = "bool", "value", "append", "int", "argparse"


def _flags(*specs: tuple[str, str, str]) -> dict[str, tuple[str, str]]:
    """{spelling: (dest, kind)} from (spellings separated by |, dest, kind)."""
    return {spelling: (dest, kind) for spellings, dest, kind in specs
            for spelling in spellings.split("|")}


_IMAGES = (_flags(("-a|--all", "all", _BOOL), ("-q|--quiet", "quiet", _BOOL),
                  ("-f|--filter", "filter", _APPEND), ("--format", "format", _VALUE),
                  ("--digests", "digests", _BOOL), ("--no-trunc", "no_trunc", _BOOL)),
           (("reference", "?"),), "images:cmd_images")
_INSPECT_FLAGS = _flags(("-f|--format", "format", _VALUE))

# verb words -> (flags, positionals (dest, count: 1, "?" or "+"), the verb's function); rm
# too, which `run -d` is followed by
VERBS: dict[tuple[str, ...], tuple[dict, tuple, str]] = {
    ("ps",): (_flags(("-a|--all", "all", _BOOL), ("-q|--quiet", "quiet", _BOOL),
                     ("-f|--filter", "filter", _APPEND), ("--format", "format", _VALUE),
                     ("--no-trunc", "no_trunc", _BOOL), ("-n|--last", "last", _INT),
                     ("-l|--latest", "latest", _BOOL), ("-s|--size", "size", _BOOL)),
              (), "containers:cmd_ps"),
    ("logs",): (_flags(("-f|--follow", "follow", _BOOL), ("-n|--tail", "tail", _VALUE),
                       ("-t|--timestamps", "timestamps", _BOOL), ("--since", "since", _VALUE),
                       ("--until", "until", _VALUE)),
                (("container", 1),), "containers:cmd_logs"),
    ("inspect",): ({**_INSPECT_FLAGS, **_flags(("--type", "type", _VALUE),
                                               ("-s|--size", "size", _BOOL))},
                   (("refs", "+"),), "containers:cmd_inspect"),
    ("port",): ({}, (("container", 1), ("port", "?")), "containers:cmd_port"),
    ("rm",): (_flags(("-f|--force", "force", _BOOL), ("-v|--volumes", "volumes", _BOOL)),
              (("containers", "+"),), "containers:cmd_rm"),
    ("images",): _IMAGES,
    ("image", "ls"): _IMAGES,
    ("image", "inspect"): (_INSPECT_FLAGS, (("images", "+"),), "images:cmd_image_inspect"),
    ("network", "ls"): (_flags(("-q|--quiet", "quiet", _BOOL),
                               ("-f|--filter", "filter", _APPEND),
                               ("--format", "format", _VALUE), ("--no-trunc", "no_trunc", _BOOL)),
                        (), "networks:cmd_network_ls"),
    ("volume", "ls"): (_flags(("-q|--quiet", "quiet", _BOOL), ("-f|--filter", "filter", _APPEND),
                              ("--format", "format", _VALUE)),
                       (), "volumes:cmd_volume_ls"),
    ("build",): (_flags(("-t|--tag", "tag", _APPEND), ("-f|--file", "file", _VALUE),
                        ("--build-arg", "build_arg", _APPEND), ("--label", "label", _APPEND),
                        ("--iidfile", "iidfile", _VALUE), ("--target", "target", _VALUE),
                        ("--no-cache", "no_cache", _BOOL), ("--network", "network", _VALUE),
                        ("--pull", "pull", _ARGPARSE), ("--progress", "progress", _VALUE),
                        ("-q|--quiet", "quiet", _BOOL)),
                 (("path", 1),), "images:cmd_build"),
}
_CHOICES = {"type": ("container", "image", "network", "volume"),
            "progress": ("auto", "plain", "tty", "quiet")}
_DEFAULTS = {"progress": "auto"}
_TOP = {"--engine": "engine", "--home": "home", "-H": "host", "--host": "host"}


class _Unsure(Exception):
    """Not a plain form: argparse decides."""


def parse(argv: list[str]) -> SimpleNamespace | None:
    """The namespace argparse gives for `argv`, or None when argparse must see it."""
    try:
        return _parse(argv)
    except _Unsure:
        return None


# run and create: their flags are run_options'; the image, then the command (REMAINDER)
RUN_VERBS = {"run": "containers:cmd_run", "create": "containers:cmd_create"}


class _FlagRecorder:
    """Stands for the argparse parser `run_options._container_flags` fills: it keeps each
    flag's spellings, dest, kind and default, as argparse would derive them. A flag of a
    kind it does not take (nargs, const, choices) is left to argparse whenever given."""

    def __init__(self) -> None:
        self.flags: dict[str, tuple[str, str, object]] = {}  # spelling -> (dest, kind, type)
        self.defaults: dict[str, object] = {}
        self.positionals: list[str] = []

    def add_argument(self, *names: str, **options: object) -> None:
        if not names[0].startswith("-"):
            self.positionals.append(names[0])
            return
        long = next((n for n in names if n.startswith("--")), names[0])
        dest = str(options.get("dest") or long.lstrip("-").replace("-", "_"))
        action = options.get("action", "store")
        self.defaults[dest] = options.get("default", False if action == "store_true" else None)
        if action == "store_true":
            kind = _BOOL
        elif "nargs" in options or "const" in options or "choices" in options:
            kind = _UNSURE_KIND
        else:
            kind = _APPEND if action == "append" else _VALUE
        for name in names:
            self.flags[name] = (dest, kind, options.get("type"))


_UNSURE_KIND = "unsure"
_run_flags: _FlagRecorder | None = None


def _recorded_run_flags() -> _FlagRecorder:
    global _run_flags
    if _run_flags is None:
        from pytest_isobox.cli.run_options import _container_flags

        _run_flags = _FlagRecorder()
        _container_flags(_run_flags)  # type: ignore[arg-type]
    return _run_flags


def _parse_run(verb: str, words: list[str], top: dict[str, str | None]) -> SimpleNamespace:
    """`run`/`create` FLAGS IMAGE [COMMAND...]: flags in their plain forms, then the image;
    every word after it is the command's, as argparse's REMAINDER takes it."""
    recorded = _recorded_run_flags()
    if recorded.positionals != ["image", "cmd"] or "--" in words:
        raise _Unsure
    values = dict(recorded.defaults)
    i = 0
    while i < len(words) and words[i].startswith("-"):
        (dest, kind, convert), given, i = _flag(words, i, recorded.flags)
        if kind == _UNSURE_KIND:
            raise _Unsure
        if kind == _BOOL:
            values[dest] = True
            continue
        if convert is not None:
            try:
                given = convert(given)  # type: ignore[operator]
            except Exception:  # noqa: BLE001 - argparse words the error
                raise _Unsure from None
        if kind == _APPEND:
            values[dest] = [*(values[dest] or ()), given]  # type: ignore[misc]
        else:
            values[dest] = given
    if i >= len(words):
        raise _Unsure  # no image: argparse says so
    values["image"], values["cmd"] = words[i], words[i + 1:]
    return SimpleNamespace(**top, **values, func=RUN_VERBS[verb])


def _flag(words: list[str], i: int, known: dict[str, tuple]) -> tuple[tuple, str | None, int]:
    """The flag at words[i] in a plain form (`--name VALUE`, `--name=VALUE`, `-n VALUE`, a
    switch alone): its entry in `known`, its value (None for a switch) and the next word's
    index. _Unsure for any other form (`-`, `--`, a negative number, -dit, -fVALUE, -eX=1, a
    switch given a value, --help, an abbreviation, an unknown flag): argparse's to read."""
    word = words[i]
    if word in ("-", "--") or word[1:2].isdigit():
        raise _Unsure
    name, eq, attached = word.partition("=")
    if not name.startswith("--"):
        name, eq = word, ""
    entry = known.get(name)
    if entry is None:
        raise _Unsure
    if entry[1] == _BOOL:
        if eq:
            raise _Unsure
        return entry, None, i + 1
    if eq:
        return entry, attached, i + 1
    return entry, _value(words, i + 1), i + 2


def _value(words: list[str], at: int) -> str:
    if at >= len(words) or words[at].startswith("-"):
        raise _Unsure
    return words[at]


def _parse(argv: list[str]) -> SimpleNamespace:
    top: dict[str, str | None] = {"engine": None, "home": None, "host": None}
    at = 0
    while at < len(argv) and argv[at].startswith("-"):
        word = argv[at]
        name, eq, attached = word.partition("=")
        if word.startswith("-H") and len(word) > 2 and not eq:
            top["host"], at = word[2:], at + 1
        elif name in _TOP and eq and name != "-H":
            top[_TOP[name]], at = attached, at + 1
        elif word in _TOP:
            top[_TOP[word]], at = _value(argv, at + 1), at + 2
        else:
            raise _Unsure
    if at < len(argv) and argv[at] in RUN_VERBS:
        return _parse_run(argv[at], argv[at + 1:], top)
    for length in (2, 1):
        verb = tuple(argv[at:at + length])
        if verb in VERBS:
            break
    else:
        raise _Unsure
    flags, positionals, func = VERBS[verb]
    values: dict[str, object] = {dest: [] if kind == _APPEND else False if kind == _BOOL
                                 else _DEFAULTS.get(dest) for dest, kind in flags.values()}
    runs: list[list[str]] = []
    words = argv[at + len(verb):]
    i, last_positional = 0, -2
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            (dest, kind), given, i = _flag(words, i, flags)
            if kind == _ARGPARSE:
                raise _Unsure
            if kind == _BOOL:
                values[dest] = True
                continue
            if kind == _APPEND:
                values[dest].append(given)  # type: ignore[union-attr]
            elif kind == _INT:
                try:
                    values[dest] = int(given)
                except ValueError:
                    raise _Unsure from None
            else:
                if given not in _CHOICES.get(dest, (given,)):
                    raise _Unsure
                values[dest] = given
            continue
        if last_positional != i - 1:
            runs.append([])
        runs[-1].append(word)
        last_positional, i = i, i + 1
    if len(runs) > 1:
        raise _Unsure  # positionals split by a flag: argparse's way of reading them differs
    given = runs[0] if runs else []
    for dest, count in positionals:
        if count == "+":
            if not given:
                raise _Unsure
            values[dest], given = given, []
        elif count == "?":
            values[dest] = given.pop(0) if given else None
        else:
            if not given:
                raise _Unsure
            values[dest] = given.pop(0)
    if given:
        raise _Unsure
    for dest, kind in flags.values():
        if kind == _APPEND and not values[dest]:
            values[dest] = None  # argparse's default for an append never given
    return SimpleNamespace(**top, **values, func=func)
