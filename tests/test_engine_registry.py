"""The engine registry: engines found by name, the seam, plugin and CLI importing none."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_isobox.engine import (
    EngineUnavailable,
    InvalidSpec,
    open_engine,
    register,
    registry,
    require,
)


class ToyEngine:
    """Only the core: no optional capability."""

    name = "toy"
    capabilities = frozenset()
    swept = ()

    def __init__(self, **options: object) -> None:
        self.options = options


def test_register_and_open_by_name() -> None:
    register("toy", ToyEngine)
    try:
        engine = open_engine("toy", home="/x")
        assert isinstance(engine, ToyEngine) and engine.options == {"home": "/x"}
        assert "toy" in registry.names()
        with pytest.raises(EngineUnavailable, match="the toy engine cannot build images "
                                                    r"\(it has no 'build' capability\)"):
            require(engine, "build", "build images")
    finally:
        registry._registered.pop("toy")


def test_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(InvalidSpec, match=r"unknown engine 'nope': expected one of .*docker.*native"):
        open_engine("nope")


def test_a_third_party_engine_by_entry_point(tmp_path: Path) -> None:
    (tmp_path / "toyengine.py").write_text(textwrap.dedent("""
        class Engine:
            name = "toy"
            capabilities = frozenset({"build"})
            def __init__(self, **options):
                self.options = options
    """))
    dist = tmp_path / "toyengine-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyengine\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest_isobox.engines]\ntoy = toyengine:Engine\n")
    code = ("from pytest_isobox.engine import open_engine, require; e = open_engine('toy', a=1); "
            "require(e, 'build', 'build'); print(type(e).__module__, e.options)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.stdout == "toyengine {'a': 1}\n"


def test_seam_plugin_and_cli_import_no_implementation() -> None:
    code = ("import sys, pytest_isobox.engine, pytest_isobox.plugin, pytest_isobox.cli, "
            "pytest_isobox.plugin.session, pytest_isobox.plugin.fixtures; "
            "print([m for m in sys.modules if m.split('.')[:2] in (['pytest_isobox', 'native'], "
            "['pytest_isobox', 'docker'])])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"


# What the native reader's verbs (native/reader.py) answer without: the engine's modules,
# argparse (cli/quickargs.py), the template engine (cli/output.render_table), dataclasses
# (engine/records.py), typing and pathlib; `docker ps` takes about as long as they load.
READER_NEVER_LOADS = (
    "pytest_isobox.native.engine", "pytest_isobox.native.state", "pytest_isobox.engine.specs",
    "pytest_isobox.engine.protocol", "pytest_isobox.processes", "pytest_isobox.gotemplate",
    "argparse", "dataclasses", "typing", "pathlib", "datetime", "inspect")


@pytest.mark.parametrize("argv", [["ps"], ["ps", "-a"], ["images"], ["volume", "ls"],
                                  ["ps", "-q"], ["ps", "-a", "--no-trunc"], ["volume", "ls", "-q"],
                                  ["network", "ls"]])
def test_read_only_verbs_sweep_nothing_and_load_no_network_code(argv, tmp_path) -> None:
    """`isobox ps` is a query, as `docker ps` is: the engine opens without the sweep (which
    creating verbs do) and loads neither the network manager nor the start path; the verbs
    the native reader answers load none of READER_NEVER_LOADS either."""
    reader = argv[0] in ("ps", "volume", "network")  # (tests/cli/test_light_verbs.py: all)
    probe = textwrap.dedent(f"""
        import sys
        at_start = set(sys.modules)  # what this interpreter's site loads anyway (.pth files)
        from pytest_isobox.cli import main
        code = main({argv!r})
        heavy = sorted(m for m in set(sys.modules) - at_start if m.startswith((
            "pytest_isobox.native.sweep", "pytest_isobox.native.network.manager",
            "pytest_isobox.native.shim", "pytest_isobox.native.planrunner", "pyroute2",
            "pytest_isobox.dockerargs", "pytest_isobox.cli.run_options",
            "pytest_isobox.run_options_table",
            "pytest_isobox.native.forked", "pytest_isobox.native.cgroups", "ssl", "secrets")))
        heavy += sorted(m for m in set(sys.modules) - at_start if {reader!r} and (
            m in {READER_NEVER_LOADS!r} or m.startswith({READER_NEVER_LOADS!r}[0] + ".")))
        print("LOADED", heavy)
        sys.exit(code)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False,
                          env={"ISOBOX_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout


def test_the_seam_loads_a_name_only_when_used() -> None:
    """`from pytest_isobox.engine import IsoboxError` (what every CLI verb needs) loads no
    dataclass of specs.py; each name of `__all__` is there when asked for."""
    code = ("import sys, pytest_isobox.engine as seam\n"
            "from pytest_isobox.engine import IsoboxError\n"
            "print('specs' if 'pytest_isobox.engine.specs' in sys.modules else 'lazy')\n"
            "print(all(getattr(seam, name) is not None for name in seam.__all__))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["lazy", "True"]


LAYERS_ABOVE_THE_SEAM = ("engine", "plugin", "cli", "server", "builder", "compose")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function (absolute names)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_layer_above_the_seam_imports_an_engine_not_even_lazily() -> None:
    """The plugin, CLI, server, builder and compose reach engines only by the registry's
    names; the docker engine shares nothing with the native one but the top-level modules."""
    package = Path(__file__).resolve().parent.parent / "pytest_isobox"
    offences = []
    for layer in (*LAYERS_ABOVE_THE_SEAM, "docker"):
        banned = ("pytest_isobox.native",) if layer == "docker" else (
            "pytest_isobox.native", "pytest_isobox.docker")
        for path in sorted((package / layer).rglob("*.py")):
            offences += [f"{path.relative_to(package)}: {name}" for name in _imports(path)
                         if any(name == b or name.startswith(b + ".") for b in banned)]
    assert offences == []
