"""Dockerfile builds on any Engine: stages, steps, cache, and progress.

The builder speaks only to the Engine protocol: RUN runs in a container that is committed,
COPY/ADD/WORKDIR put a tar into a created container that is committed, and metadata
instructions derive an image with a new config and no layer. Every step's result is an image
(its id is reported), intermediate containers are always removed, and the tag is set only
when the whole build succeeded.

A cached-only builder (`cached_only=True`, the light path of a fully cached `isobox build`)
walks the very same steps and keys but stops with NotCached at the first step the cache has no
image for, before taking any lock or asking the engine to make anything.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time

from pytest_isobox.builder import instructions as ins_config
from pytest_isobox.builder.cache import BuildCache, NotCached, step_key
from pytest_isobox.builder.context import BuildContext, CopyEntry, write_tar
from pytest_isobox.builder.copying import CopyStep, resolve_chown
from pytest_isobox.builder.dockerfile import (
    DockerfileError,
    Heredoc,
    Instruction,
    onbuild_expression,
    parse,
    parse_flags,
)
from pytest_isobox.builder.dockerignore import DockerIgnore, ignore_file_for
from pytest_isobox.builder.expand import expand, expand_words
from pytest_isobox.builder.pathtext import path_text
from pytest_isobox.builder.stages import (
    Stage,
    base_stage,
    find_stage,
    required_stages,
    split_stages,
    target_stage,
)
from pytest_isobox.engine.errors import BuildError, ContainerError, ImageNotFound, IsoboxError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (the specs' dataclasses, contextlib, load only where a step is made)
    from collections.abc import Callable

    from pytest_isobox.engine import BuildStep, Engine
    from pytest_isobox.processes import ProcessIdentity

#: Build args every build knows without an ARG line (RUN sees them; the cache ignores them).
PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                        "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})
#: BuildKit's automatic platform args, in the global scope (a stage re-declares them with ARG).
PLATFORM_ARGS = {"TARGETPLATFORM": "linux/amd64", "TARGETOS": "linux", "TARGETARCH": "amd64",
                 "TARGETVARIANT": "", "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux",
                 "BUILDARCH": "amd64", "BUILDVARIANT": ""}
_TAIL_LINES = 10
_URL = r"^(https?://|git@|git://)"  # (compiled on first use: by ADD only)
_EMPTY_TAR = bytes(10240)  # a tar with no entries: two zero blocks, padded to a record


class _StageState:
    """Where one stage is: its current image, key, runtime config and ARGs in scope."""

    def __init__(self, image_id: str | None, key: str, config: dict) -> None:
        self.image_id = image_id
        self.key = key
        self.config = config
        self.args: dict[str, str | None] = {}
        self.cmd_set = False


class _Run:
    """One build's inputs and progress."""

    def __init__(self, *, context: BuildContext, filename: str, escape: str,
                 buildargs: dict[str, str], meta: dict[str, str], no_cache: bool,
                 network: str | None, on_step: Callable[[BuildStep], None] | None,
                 on_output: Callable[[BuildStep, str], None] | None, total: int,
                 stages: list[Stage]) -> None:
        self.context = context
        self.filename = filename
        self.escape = escape
        self.buildargs = buildargs
        self.meta = meta
        self.no_cache = no_cache
        self.network = network
        self.on_step = on_step
        self.on_output = on_output
        self.total = total
        self.stages = stages
        self.results: dict[int, str] = {}
        self.index = 0


class Builder:
    """Builds Dockerfiles through an Engine, caching steps in `cache_dir` across processes."""

    def __init__(self, engine: Engine, cache_dir: str | os.PathLike, *, cached_only: bool = False
                 ) -> None:
        """`cached_only`: every step must be a cache hit, else NotCached (see the module doc)."""
        self.engine = engine
        self.cache = BuildCache(cache_dir)
        self.cached_only = cached_only

    # ------------------------------------------------------------------ the build

    def build(
        self,
        context: str | os.PathLike,
        *,
        dockerfile: str | None = None,
        tag: str | None = None,
        buildargs: dict[str, str] | None = None,
        target: str | None = None,
        no_cache: bool = False,
        network: str | None = None,
        on_step: Callable[[BuildStep], None] | None = None,
        labels: dict[str, str] | None = None,
        on_output: Callable[[BuildStep, str], None] | None = None,
    ) -> str:
        """Build and return the image id; tag it only if every step succeeded. `labels` are
        added to the final image as one more step (as Docker's classic builder does);
        `on_output` hears a RUN's output as it is written, with the step in progress."""
        root = path_text(context)  # (as pathlib.Path(context): "" is ".")
        if not os.path.isdir(root):
            raise BuildError(f"build context {str(context)!r} is not a directory")
        path = _dockerfile_path(root, dockerfile)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise BuildError(f"cannot read Dockerfile {path!r}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            with open(path, "rb") as f:
                raw = f.read()
            line = raw.count(b"\n", 0, exc.start) + 1
            raise BuildError(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x} at "
                             f"offset {exc.start})") from None
        df = parse(text, path)
        meta_instructions, stages = split_stages(df)
        buildargs = dict(buildargs or {})
        meta = _meta_args(meta_instructions, buildargs, df.escape, path)
        final = target_stage(stages, target, path)

        def expand_ref(_stage: Stage, ins: Instruction, ref: str) -> str:
            return _located(lambda: expand(ref, meta, df.escape), path, ins)
        needed = required_stages(stages, final, expand_ref, path)
        ignore = DockerIgnore.from_file(ignore_file_for(root, path))
        ctx = BuildContext(root, ignore, self.cache.stat_cache(root))
        run = _Run(context=ctx, filename=path, escape=df.escape, buildargs=buildargs,
                   meta=meta, no_cache=no_cache, network=None if network == "default" else network,
                   on_step=on_step, on_output=on_output,
                   total=sum(len(s.instructions) + 1 for s in needed) + (1 if labels else 0),
                   stages=stages)
        try:
            for stage in needed:
                run.results[stage.index] = self._build_stage(run, stage)
        finally:
            ctx.stat_cache.save()
        image_id = run.results[final.index]
        if labels:
            image_id = self._label(run, image_id, labels)
        if tag:
            self.engine.tag(image_id, tag)
        return image_id

    def _label(self, run: _Run, image_id: str, labels: dict[str, str]) -> str:
        """`build --label`: the final image's config with the labels, one empty-layer step."""
        if self.cached_only:
            raise NotCached("--label makes a new image")
        started = time.perf_counter()
        config = dict(self.engine.image_inspect(image_id).config.get("config") or {})
        config["Labels"] = {**(config.get("Labels") or {}), **labels}
        text = "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
        labelled = self.engine.derive_image(image_id, config=config, created_by=text)
        run.index += 1
        if run.on_step is not None:
            from pytest_isobox.engine import BuildStep

            run.on_step(BuildStep(index=run.index, total=run.total, instruction=text,
                                  cached=False, seconds=time.perf_counter() - started,
                                  image_id=labelled))
        return labelled

    def _build_stage(self, run: _Run, stage: Stage) -> str:
        state = self._from(run, stage)
        for ins in stage.instructions:
            self._step(run, state, ins)
        if state.image_id is None:
            state.image_id = self.engine.derive_image(None, config=state.config,
                                                      created_by="FROM scratch")
        return state.image_id

    # ------------------------------------------------------------------ FROM and triggers

    def _from(self, run: _Run, stage: Stage) -> _StageState:
        started = time.perf_counter()
        ins = stage.from_instruction
        base = _located(lambda: expand(stage.base, run.meta, run.escape), run.filename, ins)
        if not base:
            raise BuildError(f"{run.filename}:{ins.start_line}: FROM requires an image name")
        if stage.platform:
            platform = _located(lambda: expand(stage.platform or "", run.meta, run.escape),
                                run.filename, ins)
            if platform not in ("linux", "linux/amd64", "linux/x86_64"):
                raise BuildError(f"{run.filename}:{ins.start_line}: FROM --platform={platform}:"
                                 " only linux/amd64 images can be built here")
        earlier = base_stage(run.stages, stage, base)
        if earlier is not None:
            image_id = run.results[earlier.index]
            config = self.engine.image_inspect(image_id).config.get("config") or {}
        elif base == "scratch":
            image_id, config = None, {}
        else:
            ensure = getattr(self.engine, "ensure_image", None)
            try:
                info = self.engine.image_inspect(ensure(base) if ensure else base)
            except ImageNotFound as exc:
                raise BuildError(f"{run.filename}:{ins.start_line}: FROM {base}: {exc}"
                                 ) from None
            except IsoboxError as exc:  # the registry refused or could not be reached
                raise BuildError(f"{run.filename}:{ins.start_line}: FROM {base}: {exc}"
                                 ) from None
            image_id, config = info.id, dict(info.config.get("config") or {})
        state = _StageState(image_id=image_id, config=dict(config),
                            key=step_key("", f"FROM {image_id or 'scratch'}"))
        self._report(run, ins, cached=False, started=started, image_id=image_id)
        triggers = state.config.pop("OnBuild", None) or []
        if triggers:
            run.total += len(triggers)
            for trigger in triggers:
                doc = parse(trigger, f"{run.filename} (ONBUILD trigger of {base})")
                for trigger_ins in doc.instructions:
                    self._step(run, state, trigger_ins)
        return state

    # ------------------------------------------------------------------ one step

    def _step(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        handler = getattr(self, f"_do_{ins.cmd}", None)
        if handler is None:
            raise BuildError(f"{run.filename}:{ins.start_line}: unknown instruction:"
                             f" {ins.cmd.upper()}")
        try:
            handler(run, state, ins)
        except DockerfileError as exc:
            raise exc.located(run.filename, ins.start_line) if exc.filename is None else exc
        except BuildError as exc:
            message = str(exc)
            if not message.startswith(run.filename):
                message = f"{run.filename}:{ins.start_line}: {ins.cmd.upper()}: {message}"
            raise BuildError(message) from None
        except (ContainerError, ImageNotFound) as exc:
            raise BuildError(f"{run.filename}:{ins.start_line}: {ins.cmd.upper()}: {exc}"
                             ) from None

    def _cached(self, run: _Run, state: _StageState, ins: Instruction, text: str,
                produce: Callable[[], tuple[str, dict, str]], *,
                args: dict[str, str] | None = None, content: str = "") -> None:
        """Reuse the image of this step's key, or produce it under the key's lock."""
        started = time.perf_counter()
        # Keyed on the image this step starts from (as Docker does), not on the previous
        # step's key: a step re-run on a new parent image never reuses a child of the old one.
        key = step_key(state.image_id or state.key, text, args, content)
        hit = None if run.no_cache else self._lookup(key)
        output = ""
        if hit is None and self.cached_only:
            raise NotCached(f"{run.filename}:{ins.start_line}: not cached")
        if hit is None:
            with self.cache.lock(key):
                hit = None if run.no_cache else self._lookup(key)
                if hit is None:
                    image_id, config, output = produce()
                    self.cache.put(key, image_id)
        cached = hit is not None
        if hit is not None:
            image_id, config = hit
        state.key, state.image_id, state.config = key, image_id, config
        self._report(run, ins, cached=cached, started=started, image_id=image_id, output=output)

    def _lookup(self, key: str) -> tuple[str, dict] | None:
        image_id = self.cache.get(key)
        if image_id is None:
            return None
        try:
            info = self.engine.image_inspect(image_id)
        except ImageNotFound:
            self.cache.forget(key)
            return None
        return info.id, dict(info.config.get("config") or {})

    def _report(self, run: _Run, ins: Instruction, *, cached: bool, started: float,
                image_id: str | None, output: str = "") -> None:
        run.index += 1
        if run.on_step is not None:
            from pytest_isobox.engine import BuildStep

            run.on_step(BuildStep(index=run.index, total=run.total,
                                  instruction=_display(ins), cached=cached,
                                  seconds=time.perf_counter() - started,
                                  image_id=image_id, output=output))

    def _metadata(self, run: _Run, state: _StageState, ins: Instruction, text: str,
                  config: dict, *, author: str | None = None,
                  args: dict[str, str] | None = None) -> None:
        """A step that changes only the config: a derived image, no layer."""
        def produce() -> tuple[str, dict, str]:
            image_id = self.engine.derive_image(state.image_id, config=config,
                                                created_by=f"/bin/sh -c #(nop)  {text}",
                                                author=author)
            return image_id, config, ""
        self._cached(run, state, ins, text, produce, args=args)

    # ------------------------------------------------------------------ scopes

    def _env(self, run: _Run, state: _StageState) -> dict[str, str]:
        """What expansion sees: ARGs in scope, overridden by the config's Env."""
        scope = {k: v for k, v in state.args.items() if v is not None}
        scope.update(ins_config.env_dict(state.config))
        return scope

    def _run_args(self, state: _StageState) -> dict[str, str]:
        """Build args a RUN sees as environment (and in its key), ENV winning over them."""
        env = ins_config.env_dict(state.config)
        return {k: v for k, v in state.args.items() if v is not None and k not in env}

    def _expand(self, run: _Run, state: _StageState, word: str) -> str:
        return expand(word, self._env(run, state), run.escape)

    # ------------------------------------------------------------------ metadata instructions

    def _do_arg(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        started = time.perf_counter()
        for word in ins.args:
            name, sep, default = word.partition("=")
            if not name:
                raise BuildError(f"ARG requires a name: {word!r}")
            if name in run.buildargs:
                state.args[name] = run.buildargs[name]
            elif sep:
                state.args[name] = self._expand(run, state, default)
            else:
                state.args[name] = run.meta.get(name)
        self._report(run, ins, cached=True, started=started, image_id=state.image_id)

    def _do_env(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        pairs = [(self._expand(run, state, k), self._expand(run, state, v))
                 for k, v in _triples(ins.args)]
        config = dict(state.config)
        ins_config.set_env(config, pairs)
        text = "ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in pairs)
        self._metadata(run, state, ins, text, config)

    def _do_label(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        pairs = [(self._expand(run, state, k), self._expand(run, state, v))
                 for k, v in _triples(ins.args)]
        config = dict(state.config)
        ins_config.set_labels(config, pairs)
        self._metadata(run, state, ins, "LABEL " + json.dumps(pairs), config)

    def _do_maintainer(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        author = " ".join(ins.args)
        self._metadata(run, state, ins, f"MAINTAINER {author}", dict(state.config),
                       author=author)

    def _do_expose(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        env = self._env(run, state)
        ports = [p for word in ins.args for p in expand_words(word, env, run.escape)]
        config = dict(state.config)
        ins_config.expose(config, ports)
        self._metadata(run, state, ins, "EXPOSE " + " ".join(ports), config)

    def _do_volume(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        paths = [self._expand(run, state, w) for w in ins.args]
        config = dict(state.config)
        ins_config.add_volumes(config, paths)
        self._metadata(run, state, ins, "VOLUME " + json.dumps(paths), config)

    def _do_user(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        user = self._expand(run, state, " ".join(ins.args))
        if not user:
            raise BuildError("USER requires a user name or id")
        config = {**state.config, "User": user}
        self._metadata(run, state, ins, f"USER {user}", config)

    def _do_stopsignal(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        sig = ins_config.stop_signal(self._expand(run, state, " ".join(ins.args)))
        self._metadata(run, state, ins, f"STOPSIGNAL {sig}",
                       {**state.config, "StopSignal": sig})

    def _do_cmd(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        cmd = ins_config.command_form(state.config, ins.args, ins.json_form)
        state.cmd_set = True
        self._metadata(run, state, ins, "CMD " + json.dumps(cmd), {**state.config, "Cmd": cmd})

    def _do_entrypoint(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        entrypoint = ins_config.command_form(state.config, ins.args, ins.json_form)
        config = {**state.config, "Entrypoint": entrypoint}
        if not state.cmd_set:
            config["Cmd"] = None
        self._metadata(run, state, ins, "ENTRYPOINT " + json.dumps(entrypoint), config)

    def _do_shell(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        if not ins.json_form or not ins.args:
            raise BuildError('SHELL requires the JSON form, e.g. SHELL ["/bin/bash", "-c"]')
        self._metadata(run, state, ins, "SHELL " + json.dumps(ins.args),
                       {**state.config, "Shell": list(ins.args)})

    def _do_healthcheck(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        flags = parse_flags(ins, strings=("interval", "timeout", "start-period",
                                          "start-interval", "retries"), filename=run.filename)
        config = dict(state.config)
        ins_config.healthcheck(config, {k: str(v) for k, v in flags.items()}, list(ins.args),
                               ins.json_form)
        self._metadata(run, state, ins, "HEALTHCHECK " + json.dumps(config["Healthcheck"]),
                       config)

    def _do_onbuild(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        trigger = onbuild_expression(ins)  # the parser refused ONBUILD ONBUILD/FROM/MAINTAINER
        config = {**state.config, "OnBuild": [*(state.config.get("OnBuild") or []), trigger]}
        self._metadata(run, state, ins, f"ONBUILD {trigger}", config)

    # ------------------------------------------------------------------ file instructions

    def _do_workdir(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        path = ins_config.working_dir(state.config, self._expand(run, state, " ".join(ins.args)))
        config = {**state.config, "WorkingDir": path}
        created_by = f"/bin/sh -c #(nop) WORKDIR {path}"

        def produce() -> tuple[str, dict, str]:
            with self._scratch_container(state) as container:
                missing = self._missing_dirs(container, path)
                if not missing:
                    return self.engine.derive_image(state.image_id, config=config,
                                                    created_by=created_by), config, ""
                # BuildKit makes the directories it creates belong to the current USER
                owner = resolve_chown(state.config.get("User"), self.engine, container)
                self._put(container, [CopyEntry(dest=d, kind="dir", mode=0o755) for d in missing],
                          chown=owner)
                return self._commit(container, config, created_by), config, ""
        self._cached(run, state, ins, f"WORKDIR {path}", produce)

    def _do_copy(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        self._copy(run, state, ins, add=False)

    def _do_add(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        self._copy(run, state, ins, add=True)

    def _copy(self, run: _Run, state: _StageState, ins: Instruction, *, add: bool) -> None:
        given = parse_flags(
            ins, booleans=("link", "keep-git-dir") if add else ("link", "parents"),
            strings=("chown", "chmod", "checksum") if add else ("chown", "chmod", "from"),
            lists=() if add else ("exclude",), filename=run.filename)
        unsupported = [name for name in ("parents", "exclude") if given.get(name)]
        if unsupported:
            raise BuildError(f"--{unsupported[0]} is not supported")
        flags = {k: self._expand(run, state, v) for k, v in given.items() if isinstance(v, str)}
        words = [self._expand(run, state, w) for w in ins.args]
        if len(words) < 2:
            raise BuildError(f"{ins.cmd.upper()} requires at least two arguments:"
                             " source(s) and destination")
        step = CopyStep.plan(
            cmd=ins.cmd.upper(), sources=words[:-1], dest=words[-1],
            workdir=state.config.get("WorkingDir") or "/", flags=flags, add=add,
            heredocs={h.name: _heredoc_text(h, self._env(run, state)) for h in ins.heredocs},
        )
        if add:
            remote = [s for s in step.sources if re.match(_URL, s)]
            if remote:
                raise BuildError(f"{remote[0]}: remote URLs need network access and are not"
                                 " supported offline; put the file in the build context and"
                                 " COPY it")
        source_image = self._copy_source(run, flags.get("from"))
        content = step.context_checksum(run.context) if source_image is None else source_image
        text = f"{ins.cmd.upper()} {json.dumps(flags, sort_keys=True)} {json.dumps(words)}"

        def produce() -> tuple[str, dict, str]:
            with self._scratch_container(state) as container:
                entries = step.entries(run.context, self.engine, source_image,
                                       dest_is_dir=lambda p: self._is_dir(container, p))
                chown = resolve_chown(flags.get("chown"), self.engine, container)
                if chown and entries:
                    # directories the copy creates belong to the --chown owner too
                    parent = posixpath.dirname(min(e.dest for e in entries))
                    entries[:0] = [CopyEntry(dest=d, kind="dir", mode=0o755)
                                   for d in self._missing_dirs(container, parent)]
                self._put(container, entries, chown=chown, chmod=step.chmod)
                created_by = f"/bin/sh -c #(nop) {ins.cmd.upper()} {content[:64]} in {step.dest}"
                return self._commit(container, state.config, created_by), state.config, ""
        self._cached(run, state, ins, text, produce, content=content)

    def _copy_source(self, run: _Run, ref: str | None) -> str | None:
        """The image id a `--from` names: an earlier stage (name or index) or an image."""
        if not ref:
            return None
        stage = find_stage(run.stages, ref)
        if stage is not None and stage.index in run.results:
            return run.results[stage.index]
        try:
            return self.engine.image_inspect(ref).id
        except ImageNotFound:
            raise BuildError(f"--from={ref}: no stage or image of that name") from None

    # ------------------------------------------------------------------ RUN

    def _do_run(self, run: _Run, state: _StageState, ins: Instruction) -> None:
        flags = parse_flags(ins, strings=("network", "security"), lists=("mount",),
                            filename=run.filename)
        if "mount" in flags or "security" in flags:
            raise BuildError("RUN --mount and --security are not supported")
        value = flags.get("network")
        network = self._expand(run, state, value) if isinstance(value, str) else None
        network_mode = {"none": "none", "host": "host", "default": None, None: None}.get(network)
        if network and network not in ("none", "host", "default"):
            raise BuildError(f"RUN --network={network}: expected default, none or host")
        argv, script = _run_argv(state.config, ins)
        args = {k: v for k, v in self._run_args(state).items() if k not in PROXY_ARGS}
        text = "RUN " + json.dumps({"argv": argv, "script": script, "network": network})

        def produce() -> tuple[str, dict, str]:
            return self._execute(run, state, ins, argv, script, network_mode, args)
        self._cached(run, state, ins, text, produce, args=args)

    def _execute(self, run: _Run, state: _StageState, ins: Instruction, argv: list[str],
                 script: tuple[str, str] | None, network_mode: str | None,
                 args: dict[str, str]) -> tuple[str, dict, str]:
        import tempfile
        from contextlib import ExitStack

        from pytest_isobox.engine import ContainerSpec, MountSpec

        env = {**args, **{k: v for k, v in run.buildargs.items() if k in PROXY_ARGS}}
        env.update(ins_config.env_dict(state.config))
        with ExitStack() as cleanup:
            mounts = []
            if script is not None:  # BuildKit mounts a heredoc script at /dev/pipes/<name>
                pipes = cleanup.enter_context(tempfile.TemporaryDirectory(prefix=heredoc_prefix()))
                with open(os.path.join(pipes, script[0]), "w") as f:
                    f.write(script[1])
                os.chmod(os.path.join(pipes, script[0]), 0o755)
                mounts.append(MountSpec(type="bind", source=pipes, target="/dev/pipes",
                                        read_only=True))
            spec = ContainerSpec(image=self._materialize(state), entrypoint=argv[:1],
                                 command=argv[1:], env=env, mounts=mounts,
                                 working_dir=state.config.get("WorkingDir") or None,
                                 user=state.config.get("User") or None,
                                 network_mode=network_mode or run.network or "bridge")
            container = self.engine.create(spec).id
            try:
                return self._run_container(run, state, ins, container, argv, args)
            finally:
                self._remove(container)

    def _run_container(self, run: _Run, state: _StageState, ins: Instruction, container: str,
                       argv: list[str], args: dict[str, str]) -> tuple[str, dict, str]:
        """Start a created RUN container; commit it if the command succeeded."""
        self.engine.start(container)
        if run.on_output is not None:  # --progress=plain: the output as it comes
            from pytest_isobox.engine import BuildStep

            step = BuildStep(index=run.index + 1, total=run.total, instruction=_display(ins),
                             cached=False, seconds=0.0, image_id=None)
            for _, chunk in self.engine.logs(container, follow=True):
                run.on_output(step, chunk.decode("utf-8", "replace"))
        code = self.engine.wait(container)
        output = b"".join(chunk for _, chunk in self.engine.logs(container)).decode(
            "utf-8", "replace")
        if code != 0:
            tail = "\n".join(output.rstrip("\n").splitlines()[-_TAIL_LINES:])
            raise BuildError(f"{run.filename}:{ins.start_line}: step {run.index + 1}/{run.total}:"
                             f" RUN {_display_args(ins)} failed with exit code {code}"
                             + (f"; last output:\n{tail}" if tail else ""))
        prefix = f"|{len(args)} " + "".join(f"{k}={v} " for k, v in args.items()) if args else ""
        created_by = prefix + " ".join(argv)
        return (self.engine.commit(container, config=state.config, created_by=created_by,
                                   remove=True), state.config, output)

    # ------------------------------------------------------------------ engine helpers

    def _materialize(self, state: _StageState) -> str:
        """The stage's image id, making the empty image of `FROM scratch` when needed."""
        if state.image_id is None:
            state.image_id = self.engine.derive_image(None, config=state.config,
                                                      created_by="FROM scratch")
        return state.image_id

    def _scratch_container(self, state: _StageState) -> _ScratchContainer:
        """A created (never started) container of the stage's image, removed afterwards."""
        return _ScratchContainer(self, state)

    def _put(self, container: str, entries: list[CopyEntry], *,
             chown: tuple[int, int] | None = None, chmod: int | None = None) -> None:
        import tempfile

        with tempfile.TemporaryFile() as tar:
            write_tar(entries, tar, chown=chown, chmod=chmod)
            tar.seek(0)
            self.engine.put_archive(container, "/", tar)

    def _commit(self, container: str, config: dict, created_by: str) -> str:
        return self.engine.commit(container, config=config, created_by=created_by)

    def _remove(self, container: str) -> None:
        try:
            self.engine.remove(container, force=True)
        except IsoboxError:
            pass

    def _is_dir(self, container: str, path: str) -> bool:
        """Whether `path` is a directory in the container: extracting an empty tar there works
        only then (Docker's archive rule), and costs nothing however big the directory is."""
        try:
            self.engine.put_archive(container, path, _EMPTY_TAR)
        except ContainerError:
            return False
        return True

    def _missing_dirs(self, container: str, path: str) -> list[str]:
        """`path` and its ancestors that do not exist yet, outermost first."""
        missing: list[str] = []
        while path not in ("/", "") and not self._is_dir(container, path):
            missing.insert(0, path)
            path = posixpath.dirname(path)
        return missing


class _ScratchContainer:
    """`with builder._scratch_container(state) as container:` (a class, not a
    contextlib.contextmanager: a cached build loads no contextlib)."""

    def __init__(self, builder: Builder, state: _StageState) -> None:
        self._builder, self._state = builder, state

    def __enter__(self) -> str:
        from pytest_isobox.engine import ContainerSpec

        spec = ContainerSpec(image=self._builder._materialize(self._state),
                             entrypoint=["/bin/true"], command=[], network_mode="none")
        self._container = self._builder.engine.create(spec).id
        return self._container

    def __exit__(self, *_exc: object) -> None:
        self._builder._remove(self._container)


# ---------------------------------------------------------------------- helpers


def _dockerfile_path(root: str, dockerfile: str | None) -> str:
    """-f's file: in the context, else as given (relative to the current directory); written
    as pathlib writes it (error messages name it so)."""
    if dockerfile is None:
        return path_text(os.path.join(root, "Dockerfile"))
    path = path_text(dockerfile)
    in_context = path_text(os.path.join(root, path))
    if path.startswith("/") or not os.path.exists(in_context) and os.path.exists(path):
        return path
    return in_context


def _meta_args(instructions: list[Instruction], buildargs: dict[str, str],
               escape: str, filename: str) -> dict[str, str]:
    """The global scope: ARGs before the first FROM, with --build-arg overriding defaults."""
    meta = dict(PLATFORM_ARGS)
    for ins in instructions:
        for word in ins.args:
            name, sep, default = word.partition("=")
            if name in buildargs:
                meta[name] = buildargs[name]
            elif sep:
                meta[name] = _located(lambda d=default: expand(d, meta, escape), filename, ins)
    return meta


def _located(fn: Callable[[], str], filename: str, ins: Instruction) -> str:
    """Run an expansion, naming the file and line of `ins` in its error."""
    try:
        return fn()
    except DockerfileError as exc:
        raise exc.located(filename, ins.start_line) from None


def _triples(args: list[str]) -> list[tuple[str, str]]:
    """ENV/LABEL arguments (name, value, separator, ...) as (name, value) pairs."""
    return [(args[i], args[i + 1]) for i in range(0, len(args) - 2, 3)]


def _heredoc_text(heredoc: Heredoc, env: dict[str, str]) -> str:
    """A COPY heredoc's file content: chomped, `$v`/`${v}` expanded unless the name was quoted."""
    content = heredoc.text
    if heredoc.expand:
        content = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                         lambda m: env.get(m.group(1) or m.group(2), ""), content)
    return content


def _run_argv(config: dict, ins: Instruction) -> tuple[list[str], tuple[str, str] | None]:
    """RUN's argv and, for a heredoc with a shebang, the script file to mount (BuildKit's rules)."""
    if ins.json_form:
        return list(ins.args), None
    shell = list(config.get("Shell") or ins_config.DEFAULT_SHELL)
    command = " ".join(ins.args)
    if not ins.heredocs:
        return [*shell, command], None
    first = ins.heredocs[0]
    content = first.text
    if len(ins.heredocs) == 1 and re.fullmatch(r"<<-?['\"]?\w+['\"]?", command.strip()):
        if content.startswith("#!"):
            return [posixpath.join("/dev/pipes", first.name)], (first.name, content)
        return [*shell, content], None
    full = command
    for heredoc in ins.heredocs:
        full += "\n" + heredoc.content + heredoc.name
    return [*shell, full], None


def _display(ins: Instruction) -> str:
    first = re.sub(r"\\\r?\n\s*", " ", ins.original).strip().splitlines()
    return first[0] if first else ins.cmd.upper()


def _display_args(ins: Instruction) -> str:
    return _display(ins).split(None, 1)[-1]


def heredoc_prefix(owner: ProcessIdentity | None = None) -> str:
    """The temp dir name of a RUN's heredoc scripts, naming the process that makes it, so the
    run reaper of a build killed mid-step finds it (`native/reaping.reap_home`)."""
    from pytest_isobox.names import HEREDOC_DIR_PREFIX, owned_temp_prefix
    from pytest_isobox.processes import ProcessIdentity

    return owned_temp_prefix(HEREDOC_DIR_PREFIX, (owner or ProcessIdentity.current()).token("-"))
