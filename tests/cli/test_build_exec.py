"""build's Docker flags (several -t, --label, --iidfile, --pull, --progress with RUN output as
it comes, a context from stdin) and exec -d / --env-file, on both engines."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from tests.cli.conftest import Cli
from tests.conftest import needs_root

pytestmark = needs_root


def _dockerfile(cli: Cli, *lines: str) -> str:
    return "\n".join([f"FROM {cli.image}", *lines]) + "\n"


def test_build_tags_labels_iidfile(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(_dockerfile(cli, "RUN echo first; echo second"))
    one, two = cli.name("image") + ":1", cli.name("image") + ":2"
    cli.made[-2:] = [("image", one), ("image", two)]
    iid = tmp_path / "iid"
    out = cli.out("build", "--no-cache", "--progress=plain", "-t", one, "-t", two,
                  "--label", "team=qa", "--iidfile", str(iid), str(tmp_path))
    assert f"Successfully tagged {one}" in out and f"Successfully tagged {two}" in out
    # the RUN's output under its step, before the step's image id
    lines = out.splitlines()
    run = next(i for i, line in enumerate(lines) if "RUN echo first" in line)
    assert [lines[run + 1].strip(), lines[run + 2].strip()] == ["first", "second"]
    assert lines[run + 3].startswith(" ---> ")
    [doc] = json.loads(cli.out("image", "inspect", one))
    assert doc["Config"]["Labels"]["team"] == "qa"
    assert set(doc["RepoTags"]) >= {one, two}
    assert iid.read_text() == doc["Id"]


def test_build_context_from_stdin(cli: Cli) -> None:
    tag = cli.name("image") + ":stdin"
    cli.made[-1] = ("image", tag)
    dockerfile = _dockerfile(cli, "RUN echo from-stdin > /made").encode()
    cli("build", "-q", "-t", tag, "-", input=dockerfile)
    assert cli.out("run", "--rm", tag, "cat", "/made") == "from-stdin\n"
    buf = io.BytesIO()  # a tar context: the Dockerfile and a file it copies
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, data in (("Dockerfile", _dockerfile(cli, "COPY hello /hello").encode()),
                           ("hello", b"hi from the tar\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    cli("build", "-q", "-t", tag, "-", input=buf.getvalue())
    assert cli.out("run", "--rm", tag, "cat", "/hello") == "hi from the tar\n"


def test_exec_detached_and_env_file(cli: Cli, tmp_path: Path) -> None:
    name = cli.run_d()
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nA=1\n\nB=two words\n")
    assert cli.out("exec", "--env-file", str(env_file), "-e", "A=override", name, "sh", "-c",
                   'echo "$A|$B"') == "override|two words\n"
    started = cli("exec", "-d", name, "sh", "-c", "echo done > /tmp/detached; exec sleep 1000")
    assert started.stdout == b"" and started.returncode == 0
    for _ in range(500):  # the command runs on its own: wait until it has written
        if cli("exec", name, "test", "-s", "/tmp/detached", check=False).returncode == 0:
            break
    assert cli.out("exec", name, "cat", "/tmp/detached") == "done\n"
    assert cli.out("top", name).count("sleep 1000") == 2  # run's and the detached one
    missing = cli("exec", "-d", name, "isobox-no-such-command", check=False)
    assert missing.returncode in (126, 127) and missing.stderr
    bad = tmp_path / "bad"
    bad.write_text("GOOD=1\nBAD KEY=2\n")
    refused = cli("exec", "--env-file", str(bad), name, "true", check=False)
    assert refused.returncode != 0 and f"{bad}:2" in refused.stderr.decode()
