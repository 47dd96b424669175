"""Real Dockerfile builds on the native engine: steps, stages, files, args, errors and cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_isobox.builder.builder import Builder
from pytest_isobox.engine import BuildError, BuildStep, ContainerSpec, Engine, ImageNotFound
from tests.builder.conftest import BASE
from tests.conftest import needs_root

try:
    from pytest_isobox.native.engine import NativeEngine
except ImportError as exc:  # the native engine lands separately
    NativeEngine = None  # type: ignore[assignment,misc]
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = ""

pytestmark = [
    needs_root,
    pytest.mark.skipif(NativeEngine is None, reason=f"native engine not importable: {_IMPORT_ERROR}"),
]

SEED = f"""\
FROM {BASE}
MAINTAINER qingbing "qingbing@qq.com"
RUN mkdir /data && echo "hello world" > /data/hello.txt
EXPOSE 80
"""


def _context(root: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _build(engine: Engine, home: Path, context: Path, **kwargs: object) -> tuple[str,
                                                                                  list[BuildStep]]:
    steps: list[BuildStep] = []
    image = Builder(engine=engine, cache_dir=home / "buildcache").build(
        context, on_step=steps.append, **kwargs)  # type: ignore[arg-type]
    return image, steps


def _run(engine: Engine, image: str, *cmd: str) -> str:
    state = engine.create(ContainerSpec(image=image, entrypoint=[cmd[0]], command=list(cmd[1:]),
                                        network_mode="none"))
    try:
        engine.start(state.id)
        code = engine.wait(state.id, timeout=30)
        output = b"".join(chunk for _, chunk in engine.logs(state.id)).decode()
        assert code == 0, output
        return output
    finally:
        engine.remove(state.id, force=True)


def test_seed_example_builds_runs_and_rebuilds_from_cache(engine: Engine, isobox_home: Path,
                                                         tmp_path: Path) -> None:
    ctx = _context(tmp_path / "seed", SEED)
    image, steps = _build(engine, isobox_home, ctx, tag="seed:1")
    info = engine.image_inspect("seed:1")
    assert info.id == image
    assert info.config["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert info.config.get("author") == 'qingbing "qingbing@qq.com"'
    assert _run(engine, image, "cat", "/data/hello.txt") == "hello world\n"
    assert [s.index for s in steps] == [1, 2, 3, 4] and {s.total for s in steps} == {4}
    assert not any(s.cached for s in steps[1:])
    assert all(s.image_id for s in steps)
    again, steps2 = _build(engine, isobox_home, ctx)
    assert again == image
    assert all(s.cached for s in steps2[1:])
    # each step's image stays, so a user can run it to debug
    assert _run(engine, steps[2].image_id, "cat", "/data/hello.txt") == "hello world\n"


def test_no_cache_rebuilds(engine: Engine, isobox_home: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "c", SEED)
    _build(engine, isobox_home, ctx)
    _, steps = _build(engine, isobox_home, ctx, no_cache=True)
    assert not any(s.cached for s in steps[1:])


def test_cache_hit_is_verified_against_the_store(engine: Engine, isobox_home: Path,
                                                 tmp_path: Path) -> None:
    ctx = _context(tmp_path / "c", f"FROM {BASE}\nRUN echo one > /one\n")
    image, _ = _build(engine, isobox_home, ctx)
    engine.remove_image(image, force=True)
    with pytest.raises(ImageNotFound):
        engine.image_inspect(image)
    rebuilt, steps = _build(engine, isobox_home, ctx)
    assert not steps[1].cached
    assert _run(engine, rebuilt, "cat", "/one") == "one\n"


PRUNE_CHAIN = f"""\
FROM {BASE}
RUN echo 1 > /a
RUN echo 2 > /b
CMD ["sh"]
"""


def test_prune_keeps_the_step_images_of_a_tagged_build(engine: Engine, isobox_home: Path,
                                                       tmp_path: Path) -> None:
    ctx = _context(tmp_path / "c", PRUNE_CHAIN)
    image, steps = _build(engine, isobox_home, ctx, tag="seed")
    engine.prune()
    again, steps2 = _build(engine, isobox_home, ctx, tag="seed")
    assert again == image
    assert all(s.cached for s in steps2[1:])
    assert [s.image_id for s in steps2] == [s.image_id for s in steps]


def test_a_step_rebuilt_on_a_new_parent_rebuilds_every_later_step(engine: Engine,
                                                                  isobox_home: Path,
                                                                  tmp_path: Path) -> None:
    ctx = _context(tmp_path / "c", PRUNE_CHAIN)
    image, steps = _build(engine, isobox_home, ctx)
    engine.remove_image(steps[1].image_id, force=True)  # the cache of step 2 now points nowhere
    rebuilt, steps2 = _build(engine, isobox_home, ctx)
    assert [s.cached for s in steps2[1:]] == [False, False, False]
    assert rebuilt != image
    history = engine.image_inspect(rebuilt).config["history"]
    assert len(history) == len(engine.image_inspect(steps2[1].image_id).config["history"]) + 2
    assert _run(engine, rebuilt, "cat", "/a", "/b") == "1\n2\n"


def test_multi_stage_target_skips_unneeded_stages(engine: Engine, isobox_home: Path,
                                                  tmp_path: Path) -> None:
    ctx = _context(tmp_path / "m", f"""\
        FROM {BASE} AS build
        RUN mkdir /out && echo built > /out/artifact && chmod 640 /out/artifact
        FROM {BASE} AS broken
        RUN echo this stage must not run && exit 3
        FROM {BASE} AS final
        COPY --from=build /out/artifact /srv/
        COPY --from=0 /out /copied
        FROM final AS test
        RUN exit 7
        """)
    image, steps = _build(engine, isobox_home, ctx, target="final")
    assert not any("must not run" in s.instruction or "exit 7" in s.instruction for s in steps)
    assert len(steps) == 5 and steps[-1].total == 5
    assert _run(engine, image, "cat", "/srv/artifact", "/copied/artifact") == "built\nbuilt\n"
    assert _run(engine, image, "stat", "-c", "%a", "/srv/artifact") == "640\n"
    with pytest.raises(BuildError, match="target stage 'nope' could not be found"):
        _build(engine, isobox_home, ctx, target="nope")


def test_copy_chown_chmod_dockerignore_and_workdir(engine: Engine, isobox_home: Path,
                                                   tmp_path: Path) -> None:
    ctx = _context(tmp_path / "f", f"""\
        FROM {BASE}
        WORKDIR /app
        COPY --chown=nobody:nogroup --chmod=751 run.sh ./
        COPY --chown=1234 . src/
        COPY <<EOF /etc/motd
        hi from heredoc
        EOF
        ADD bundle.tar /opt/
        COPY --chown=1234:5 run.sh /deep/new/
        USER nobody
        WORKDIR /home/nobody/work
        """, {"run.sh": "echo run\n", "lib/a.py": "a", "secret.key": "k", "build/x.o": "o",
              ".dockerignore": "*.key\nbuild\n"})
    subprocess.run(["tar", "-cf", str(ctx / "bundle.tar"), "-C", str(ctx), "lib"], check=True)
    image, _ = _build(engine, isobox_home, ctx)
    stat = _run(engine, image, "stat", "-c", "%u:%g %a %n", "/app/run.sh", "/app/src",
                "/app/src/lib/a.py", "/app")
    assert stat.splitlines() == ["65534:65534 751 /app/run.sh", "1234:1234 755 /app/src",
                                 "1234:1234 644 /app/src/lib/a.py", "0:0 755 /app"]
    listing = _run(engine, image, "ls", "-a", "/app/src").split()
    assert "secret.key" not in listing and "build" not in listing and "run.sh" in listing
    assert _run(engine, image, "cat", "/etc/motd", "/opt/lib/a.py") == "hi from heredoc\na"
    assert engine.image_inspect(image).config["config"]["WorkingDir"] == "/home/nobody/work"
    owners = _run(engine, image, "stat", "-c", "%u:%g %n", "/deep", "/deep/new/run.sh", "/home",
                  "/home/nobody/work")
    assert owners.splitlines() == ["1234:5 /deep", "1234:5 /deep/new/run.sh",
                                   "65534:65534 /home", "65534:65534 /home/nobody/work"]


def test_copy_refuses_paths_outside_the_context(engine: Engine, isobox_home: Path,
                                                tmp_path: Path) -> None:
    (tmp_path / "outside").write_text("secret")
    ctx = _context(tmp_path / "ctx", f"FROM {BASE}\nCOPY ../outside /x\n")
    with pytest.raises(BuildError, match=r"Dockerfile:2: COPY: .*outside the build context"):
        _build(engine, isobox_home, ctx)
    os.symlink(tmp_path / "outside", ctx / "link")
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY link /x\n")
    with pytest.raises(BuildError, match="points outside the build context"):
        _build(engine, isobox_home, ctx)


def test_build_args_and_arg_scope(engine: Engine, isobox_home: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "a", f"""\
        ARG BASE_IMAGE={BASE}
        ARG GLOBAL=global-default
        FROM $BASE_IMAGE AS first
        ARG GREETING=hello
        ARG GLOBAL
        ENV FROM_ENV=$GREETING-env
        RUN echo "$GREETING $GLOBAL $FROM_ENV" > /args.txt
        FROM first
        RUN echo "second:${{GREETING:-unset}}:${{GLOBAL:-unset}}" > /scope.txt
        """)
    image, _ = _build(engine, isobox_home, ctx, buildargs={"GREETING": "bonjour"})
    assert _run(engine, image, "cat", "/args.txt", "/scope.txt") == \
        "bonjour global-default bonjour-env\nsecond:unset:unset\n"
    env = engine.image_inspect(image).config["config"].get("Env") or []
    assert "FROM_ENV=bonjour-env" in env
    assert not any(e.startswith(("GREETING=", "GLOBAL=")) for e in env)  # args not persisted
    _, steps = _build(engine, isobox_home, ctx, buildargs={"GREETING": "hola"})
    assert not steps[3].cached  # ENV uses the arg's value
    _, steps = _build(engine, isobox_home, ctx, buildargs={"GREETING": "bonjour"})
    assert all(s.cached for s in steps if not s.instruction.startswith("FROM"))


def test_metadata_instructions_in_config(engine: Engine, isobox_home: Path,
                                         tmp_path: Path) -> None:
    ctx = _context(tmp_path / "meta", f"""\
        FROM {BASE}
        LABEL org.example.name="demo app" version=1
        USER nobody
        VOLUME /data
        STOPSIGNAL SIGINT
        HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD cat /etc/passwd
        SHELL ["/bin/sh", "-ec"]
        ENTRYPOINT ["/bin/echo"]
        CMD echo hi
        ONBUILD RUN echo triggered > /tmp/onbuild.txt
        ONBUILD COPY <<EOF /tmp/from-heredoc.txt
        copied by a trigger
        EOF
        """)
    image, _ = _build(engine, isobox_home, ctx, tag="meta:1")
    config = engine.image_inspect(image).config["config"]
    assert config["Labels"]["org.example.name"] == "demo app"
    assert config["Labels"]["version"] == "1"
    assert config["User"] == "nobody"
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGINT"
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "cat /etc/passwd"],
                                     "Interval": 5_000_000_000, "Timeout": 2_000_000_000,
                                     "Retries": 4}
    assert config["Shell"] == ["/bin/sh", "-ec"]
    assert config["Entrypoint"] == ["/bin/echo"]
    assert config["Cmd"] == ["/bin/sh", "-ec", "echo hi"]
    assert config["OnBuild"] == ["RUN echo triggered > /tmp/onbuild.txt",
                                 "COPY <<EOF /tmp/from-heredoc.txt\ncopied by a trigger\nEOF"]
    child = _context(tmp_path / "child", "FROM meta:1\nUSER root\n")
    child_image, _ = _build(engine, isobox_home, child)
    assert _run(engine, child_image, "cat", "/tmp/onbuild.txt", "/tmp/from-heredoc.txt") == \
        "triggered\ncopied by a trigger\n"
    assert not engine.image_inspect(child_image).config["config"].get("OnBuild")


def test_failing_run_names_step_exit_code_and_output_and_tags_nothing(
        engine: Engine, isobox_home: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "fail", f"""\
        FROM {BASE}
        RUN echo first line && echo "it broke" >&2 && exit 42
        """)
    with pytest.raises(BuildError) as err:
        _build(engine, isobox_home, ctx, tag="broken:1")
    message = str(err.value)
    assert "Dockerfile:2: step 2/2: RUN echo first line" in message
    assert "exit code 42" in message and "it broke" in message
    with pytest.raises(ImageNotFound):
        engine.image_inspect("broken:1")
    assert engine.containers(all=True) == []


def test_dockerfile_errors_name_file_and_line(engine: Engine, isobox_home: Path,
                                              tmp_path: Path) -> None:
    ctx = _context(tmp_path / "bad", f"FROM {BASE}\nRUN true\nEXPOSE http\n")
    with pytest.raises(BuildError, match=r"Dockerfile:3: EXPOSE: .*'http'"):
        _build(engine, isobox_home, ctx)
    (ctx / "Dockerfile").write_text("FROM no-such-image:1\n")
    with pytest.raises(BuildError, match=r"Dockerfile:1: FROM no-such-image:1: No such image: "
                       r"no-such-image:1 \(ISOBOX_OFFLINE=1"):
        _build(engine, isobox_home, ctx)
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY missing.txt /\n")
    with pytest.raises(BuildError, match=r"Dockerfile:2: COPY: 'missing.txt' not found"):
        _build(engine, isobox_home, ctx)
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nADD https://example.com/x /x\n")
    with pytest.raises(BuildError, match="remote URLs need network access"):
        _build(engine, isobox_home, ctx)


def test_from_scratch(engine: Engine, isobox_home: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "s", """\
        FROM scratch
        COPY hello.txt /
        ENV A=1
        """, {"hello.txt": "hi"})
    image, _ = _build(engine, isobox_home, ctx)
    config = engine.image_inspect(image).config
    assert config["config"]["Env"] == ["A=1"]
    assert len(config["rootfs"]["diff_ids"]) == 1


_CHILD = """\
import json, sys, time
from pathlib import Path
from pytest_isobox.builder.builder import Builder
from pytest_isobox.native.engine import NativeEngine
home, context, barrier = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
engine = NativeEngine(home=home)
try:
    steps = []
    barrier.touch()
    while len(list(barrier.parent.glob("ready-*"))) < int(sys.argv[4]):
        time.sleep(0.001)
    image = Builder(engine=engine, cache_dir=home / "buildcache").build(
        context, on_step=steps.append)
    print(json.dumps({"image": image, "cached": [s.cached for s in steps]}))
finally:
    engine.close()
"""


def _child_builds(home: Path, ctx: Path, tmp_path: Path, count: int) -> list[dict]:
    import json

    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(home), str(ctx),
                               str(tmp_path / f"ready-{i}"), str(count)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(count)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_cache_is_shared_across_processes(engine: Engine, isobox_home: Path,
                                          tmp_path: Path) -> None:
    ctx = _context(tmp_path / "x", SEED)
    [child] = _child_builds(isobox_home, ctx, tmp_path, 1)
    assert not any(child["cached"][1:])
    image, steps = _build(engine, isobox_home, ctx)
    assert image == child["image"]
    assert all(s.cached for s in steps[1:])


def test_concurrent_identical_builds_build_once(engine: Engine, isobox_home: Path,
                                                tmp_path: Path) -> None:
    # The RUN writes something unique: two real executions would give two different images.
    ctx = _context(tmp_path / "y", f"FROM {BASE}\nRUN cat /proc/sys/kernel/random/uuid > /id\n")
    one, two = _child_builds(isobox_home, ctx, tmp_path, 2)
    assert one["image"] == two["image"]
    assert sorted([one["cached"][1], two["cached"][1]]) == [False, True]


def test_run_forms_heredocs_shell_and_workdir(engine: Engine, isobox_home: Path,
                                              tmp_path: Path) -> None:
    ctx = _context(tmp_path / "h", f"""\
        FROM {BASE}
        WORKDIR /work
        WORKDIR sub
        RUN ["/bin/sh", "-c", "pwd > /pwd.txt"]
        RUN <<EOF
        echo one > /one.txt
        echo two >> /one.txt
        EOF
        RUN <<EOT
        #!/bin/sh
        echo "script $0" > /script.txt
        EOT
        RUN cat <<EOF > /cat.txt
        from cat
        EOF
        SHELL ["/bin/sh", "-ec"]
        RUN echo "$0 $-" > /shell.txt
        """)
    image, _ = _build(engine, isobox_home, ctx)
    out = _run(engine, image, "cat", "/pwd.txt", "/one.txt", "/script.txt", "/cat.txt")
    assert out == "/work/sub\none\ntwo\nscript /dev/pipes/EOT\nfrom cat\n"
    assert "e" in _run(engine, image, "cat", "/shell.txt").split()[1]


def test_copy_cache_follows_content_not_mtime(engine: Engine, isobox_home: Path,
                                              tmp_path: Path) -> None:
    ctx = _context(tmp_path / "k", f"""\
        FROM {BASE}
        COPY . /app/
        RUN cat /app/a.txt > /copy.txt
        """, {"a.txt": "one", "ignored.log": "x", ".dockerignore": "*.log\n"})
    first, _ = _build(engine, isobox_home, ctx)
    os.utime(ctx / "a.txt", (1_600_000_000, 1_600_000_000))
    (ctx / "ignored.log").write_text("changed, but excluded")
    again, steps = _build(engine, isobox_home, ctx)
    assert again == first and all(s.cached for s in steps[1:])
    (ctx / "a.txt").write_text("two")
    changed, steps = _build(engine, isobox_home, ctx)
    assert [s.cached for s in steps[1:]] == [False, False]
    assert _run(engine, changed, "cat", "/copy.txt") == "two"


def test_proxy_args_reach_run_but_not_the_image_or_the_cache(engine: Engine, isobox_home: Path,
                                                             tmp_path: Path) -> None:
    ctx = _context(tmp_path / "p", f"""\
        FROM {BASE}
        RUN echo "proxy=$http_proxy undeclared=${{UNDECLARED:-none}}" > /proxy.txt
        """)
    image, _ = _build(engine, isobox_home, ctx,
                      buildargs={"http_proxy": "http://127.0.0.1:3128", "UNDECLARED": "x"})
    assert _run(engine, image, "cat", "/proxy.txt") == \
        "proxy=http://127.0.0.1:3128 undeclared=none\n"
    env = engine.image_inspect(image).config["config"].get("Env") or []
    assert not any(e.startswith("http_proxy=") for e in env)
    again, steps = _build(engine, isobox_home, ctx, buildargs={"http_proxy": "http://other:1"})
    assert again == image and steps[1].cached
