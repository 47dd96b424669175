"""`isobox completion bash|zsh`: bash runs the script and completes as a user's TAB would
(COMP_WORDS/COMP_CWORD in, COMPREPLY out), names asked of each engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, isobox
from tests.conftest import needs_root


@pytest.fixture
def completer(tmp_path: Path):
    """complete(*words) -> the completions bash offers for the last word."""
    script = tmp_path / "isobox.bash"
    script.write_bytes(isobox("completion", "bash").stdout)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "isobox"  # the command being completed, as on a user's PATH
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m pytest_isobox.cli \"$@\"\n")
    wrapper.chmod(0o755)

    def complete(*words: str) -> list[str]:
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in ("isobox", *words))
        program = (f"source {script}\nCOMP_WORDS=({quoted})\n"
                   "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n_isobox\n"
                   "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
        done = subprocess.run(["bash", "--norc", "-c", program], capture_output=True,
                              text=True, check=True, timeout=60,
                              env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path),
                                   **_isobox_env()})
        assert done.stderr == "", done.stderr
        return [line for line in done.stdout.splitlines() if line]

    return complete


def _isobox_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith(("ISOBOX_", "DOCKER_"))}


def test_verbs_subverbs_and_flags(completer) -> None:
    assert completer("ne") == ["network"]
    assert set(completer("")) >= {"run", "ps", "network", "volume", "completion", "inspect"}
    assert completer("network", "co") == ["connect"]
    assert completer("system", "") == ["check", "info", "df", "prune"]
    assert completer("run", "--rea") == ["--read-only"]
    assert "--privileged" in completer("exec", "--p")
    assert completer("--engine", "native", "ps", "--la") == ["--last", "--latest"]
    assert completer("--e") == ["--engine"]
    assert completer("run", "--name", "") == []  # a flag's value, not a name


@needs_root
def test_names_from_the_engine(completer, cli: Cli) -> None:
    name = cli.run_d()
    net, vol = cli.name("network"), cli.name("volume")
    cli("network", "create", net)
    cli("volume", "create", vol)
    engine = ("--engine", cli.engine)
    assert completer(*engine, "logs", name[:14]) == [name]
    assert name in completer(*engine, "rm", "-f", "")
    assert completer(*engine, "network", "connect", net[:14]) == [net]
    assert completer(*engine, "volume", "rm", vol[:14]) == [vol]
    repo = cli.image.split(":")[0]
    assert cli.image in completer(*engine, "run", "-d", repo[:8])
    assert cli.image in completer(*engine, "inspect", repo[:8])


def test_zsh_script_loads() -> None:
    text = isobox("completion", "zsh").stdout.decode()
    assert text.startswith("#compdef isobox") and "bashcompinit" in text
    if shutil.which("zsh"):
        subprocess.run(["zsh", "-fc", text + "\nwhence -w _isobox"], check=True, timeout=60)
    bad = isobox("completion", "fish", check=False)
    assert bad.returncode == 125 and bad.stderr.decode().count("\n") == 1
