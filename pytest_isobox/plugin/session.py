"""One pytest process's isobox session: its engine, the names it gives, what it started.

The engine opens on first use (never at collection), so a run without container tests costs
nothing and a missing prerequisite only skips the tests that need containers. Containers are
started, waited on, recorded and removed here; fixtures.py and imperative.py only decide when.
"""

from __future__ import annotations

import hashlib
import shlex
import time
import uuid
from pathlib import Path

import pytest

from pytest_isobox.engine import (
    BuildStep,
    ContainerNotFound,
    ContainerSpec,
    Engine,
    EngineUnavailable,
    ImageNotFound,
    InvalidSpec,
    IsoboxError,
    open_engine,
)
from pytest_isobox.plugin import wait
from pytest_isobox.plugin.container_options import CONFIG_HASH_LABEL, ContainerOptions, config_hash
from pytest_isobox.plugin.handles import Container, Image
from pytest_isobox.plugin.reports import ContainerRecord, ImageRecord, RunReport, limits_note
from pytest_isobox.plugin.rootfs import rootfs_digest
from pytest_isobox.plugin.settings import Settings


def docker_host_for(settings: Settings, worker_id: str) -> str | None:
    """The Docker host of one process: with --isobox-docker-hosts, worker gwN takes host N
    modulo their number (the controller and a run without xdist the first); else the URL
    option (None: found as Docker's CLI finds it)."""
    hosts = settings.docker_hosts
    if not hosts:
        return settings.docker_url
    index = int(worker_id[2:]) if worker_id.startswith("gw") and worker_id[2:].isdigit() else 0
    return hosts[index % len(hosts)]


def engine_choice(settings: Settings, worker_id: str = "master") -> tuple[str, dict]:
    """The engine's registry name and its options; the one place that picks them.

    The native engine decides by itself (rootful as root, rootless otherwise) unless
    --isobox-rootless forces rootless; --isobox-limits says what to do with limits a
    rootless user cannot apply. Its close at the session's end leaves the network teardown
    it would wait for (the last veths, the unused default bridge and its rules: some 0.1 s
    of the kernel's) to the run reaper, which finishes it while pytest reports and exits.
    """
    if settings.engine == "docker":
        return "docker", {"base_url": docker_host_for(settings, worker_id), "pull": settings.pull}
    options: dict = {"home": settings.home} if settings.home else {}
    if settings.engine == "native":
        options.update(rootless=settings.rootless, limits=settings.limits, pull=settings.pull,
                       finish_in_reaper=True)
    return settings.engine, options


class IsoboxSession:
    """State of one pytest process (one xdist worker, or the whole run without xdist)."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        workerinput = getattr(config, "workerinput", None) or {}
        self.worker_id: str = workerinput.get("workerid", "master")
        self.worker_count: int = int(workerinput.get("workercount", 1))
        self.run_id: str = workerinput.get("testrunuid") or uuid.uuid4().hex
        self.controller: str | None = workerinput.get("isobox_controller")
        self.report = RunReport()
        self.failed_ids: set[str] = set()
        self._engine: Engine | None = None
        self._shared_engine: Engine | None = None  # the first Docker host's, when not ours
        self._unavailable: str | None = None
        self._records: dict[str, ContainerRecord] = {}
        self._images: dict[str, Image] = {}
        self._names: dict[str, int] = {}
        self._generated_names: set[str] = set()  # names no one else asks for: removed lazily

    # ------------------------------------------------------------------ engine
    def engine(self) -> Engine:
        """The open engine; raises EngineUnavailable (the same, every time) when it cannot be."""
        if self._engine is not None:
            return self._engine
        if self._unavailable is not None:
            raise EngineUnavailable(self._unavailable)
        try:
            kind, options = engine_choice(self.settings, self.worker_id)
            self._engine = open_engine(kind, **options)
        except (EngineUnavailable, ImportError) as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            self._unavailable = f"{self.settings.engine} engine: {lines[0]}"
            self.report.unavailable = self._unavailable
            raise EngineUnavailable(self._unavailable) from None
        self._after_open(self._engine)
        return self._engine

    def shared_engine(self) -> Engine:
        """The engine for what all workers share (shared containers and their networks): the
        first host of --isobox-docker-hosts, where every worker finds them; this worker's
        own engine otherwise."""
        engine = self.engine()
        hosts = self.settings.docker_hosts
        if self.settings.engine != "docker" or len(hosts) < 2 or \
                docker_host_for(self.settings, self.worker_id) == hosts[0]:
            return engine
        if self._shared_engine is None:
            try:
                self._shared_engine = open_engine("docker", base_url=hosts[0],
                                                  pull=self.settings.pull)
            except EngineUnavailable as exc:
                raise EngineUnavailable(f"docker engine (first host, for shared containers): "
                                        f"{exc}") from None
        return self._shared_engine

    def require_engine(self) -> Engine:
        """The engine, or a skip of the current test with the one-line reason."""
        try:
            return self.engine()
        except EngineUnavailable as exc:
            pytest.skip(f"isobox: {exc}")

    def _after_open(self, engine: Engine) -> None:
        from pytest_isobox.plugin.sharing import SharedRegistry

        policy = getattr(engine, "pull_policy", None)
        if policy is not None:
            policy.on_pull = self._pulled
        swept = [str(s) for s in getattr(engine, "swept", None) or []]
        swept += SharedRegistry.sweep_dead_runs(self, engine)
        if swept:
            self.report.swept += swept
            self.announce(f"isobox: cleaned up after earlier runs that died: {', '.join(swept)}")

    def _pulled(self, ref: str, image_id: str, seconds: float) -> None:
        """One line per image pulled on demand, and a row in the summary's images."""
        short = image_id.removeprefix("sha256:")[:12]
        self.announce(f"isobox: pulled {ref} ({short}) in {seconds:.1f}s")
        self.report.images.append(ImageRecord(f"pull {ref}", image_id, seconds, 0, 0,
                                              self.worker_id))

    def close(self) -> None:
        if self._shared_engine is not None:
            self._shared_engine.close()
            self._shared_engine = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    # ------------------------------------------------------------------ names and output
    @property
    def home(self) -> Path:
        return self.settings.store

    def resource_name(self, fixture: str, *, shared: bool = False, stable: bool = False) -> str:
        """A name no other worker, run or earlier instance of this fixture uses at once.

        Stable names (--isobox-reuse) are the same in every run, per project and worker.
        """
        fixture = fixture.replace("_", "-")
        if stable:
            project = hashlib.sha256(str(self.config.rootpath).encode()).hexdigest()[:6]
            base = f"isobox-{fixture}-{project}-{'shared' if shared else self.worker_id}"
        else:
            base = f"isobox-{fixture}-{self.run_id[:8]}-{'shared' if shared else self.worker_id}"
        count = self._names[base] = self._names.get(base, 0) + 1
        return base if count == 1 else f"{base}-{count}"

    def announce(self, line: str) -> None:
        """Write a line to the terminal now, even while output is captured (no-op in workers)."""
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        capture = self.config.pluginmanager.getplugin("capturemanager")
        if reporter is None or hasattr(self.config, "workerinput"):
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    # ------------------------------------------------------------------ images
    def bootstrap_image(self, name: str, *, variant: str = "minbase",
                        include: list[str] | None = None, tag: str | None = None) -> Image:
        """A Debian base made by debootstrap (native engine), cached by its inputs."""
        engine = self.engine()
        make = getattr(engine, "bootstrap", None)
        if make is None:
            raise InvalidSpec(f"image(bootstrap={name!r}) needs the native engine")
        started = time.monotonic()
        image_id = make(name, variant=variant, include=include, tag=tag)
        image = Image(image_id, tag or name, f"bootstrap {name}", time.monotonic() - started)
        self._remember_image(image)
        return image

    def build_image(self, context: Path, *, dockerfile: str | None = None,
                    buildargs: dict[str, str] | None = None, target: str | None = None,
                    tag: str | None = None, source: str = "") -> Image:
        """Build (cached across runs by the engine's build cache unless --isobox-no-cache)."""
        engine = self.engine()
        steps: list[BuildStep] = []
        label = source or str(context)

        def on_step(step: BuildStep) -> None:
            steps.append(step)
            self.config.hook.pytest_isobox_build_step(step=step)
            if self.config.get_verbosity() > 0:
                how = ("base" if _is_from(step) else "CACHED" if step.cached
                       else f"{step.seconds:.2f}s")
                self.announce(f"isobox build {label}: step {step.index}/{step.total} "
                              f"{step.instruction}  {how}")

        def on_note(note: str) -> None:  # the docker engine's: which builder, and why
            if self.config.get_verbosity() > 0:
                self.announce(f"isobox build {label}: {note}")

        started = time.monotonic()
        image_id = engine.build(context, dockerfile=dockerfile, tag=tag, buildargs=buildargs,
                                target=target, no_cache=self.settings.no_cache,
                                on_step=on_step, on_note=on_note)
        image = Image(image_id, tag, label, time.monotonic() - started, steps)
        self._remember_image(image)
        return image

    def import_rootfs(self, source: Path, *, tag: str | None, label: str = "") -> Image:
        """Import a rootfs directory or tar once per content: unchanged content, same image."""
        engine = self.engine()
        started = time.monotonic()
        ref = f"isobox-rootfs:{rootfs_digest(source)[:16]}"
        try:
            if self.settings.no_cache:
                raise ImageNotFound(ref)
            image_id = engine.image_inspect(ref).id
        except ImageNotFound:
            image_id = engine.import_rootfs(source, ref)
        if tag:
            engine.tag(ref, tag)
        image = Image(image_id, tag or ref, label or str(source), time.monotonic() - started)
        self._remember_image(image)
        return image

    def _carry_image(self, target: Engine, ref: str) -> None:
        """An image this worker made (built, imported) onto the host of the shared engine,
        when that is another Docker host: saved here, loaded there (once per host)."""
        if target is self._engine or ref not in self._images:
            return
        try:
            target.image_inspect(ref)
            return
        except ImageNotFound:
            pass
        import tempfile

        with tempfile.TemporaryDirectory(prefix="isobox-carry-") as folder:
            archive = Path(folder) / "image.tar"
            self.engine().save_images([ref], archive)  # type: ignore[attr-defined]
            target.load_images(archive)  # type: ignore[attr-defined]

    def _remember_image(self, image: Image) -> None:
        self._images[image.ref] = self._images[image.id] = image
        steps = [s for s in image.steps if not _is_from(s)]
        self.report.images.append(ImageRecord(
            image.source, image.id, image.seconds, len(steps), sum(s.cached for s in steps),
            self.worker_id))

    # ------------------------------------------------------------------ containers
    def launch(self, options: ContainerOptions, *, fixture: str, name: str | None,
               ready: wait.Strategy | bool | None, timeout: float | None, base: Path,
               network_names: dict[str, str] | None = None, shared: bool = False,
               persistent: bool = False, reusable: bool = False) -> Container:
        """Create, start and wait for a container; on failure nothing is left (unless kept).

        A reusable container (a session fixture's, under --isobox-reuse) gets a stable name,
        is adopted when an earlier run left it with the same configuration, and is left
        running at the end for the next run.
        """
        engine = self.shared_engine() if shared else self.engine()
        reuse = reusable and self.settings.reuse
        if name is None:
            name = self.resource_name(fixture, shared=shared, stable=reuse)
            self._generated_names.add(name)
        keep = self.settings.keep != "never"
        spec = options.to_spec(name=name, fixture=fixture, worker=self.worker_id, base=base,
                               persistent=persistent or keep or reuse or shared)
        record = ContainerRecord(fixture, name, "", self._image_label(spec.image),
                                 self.worker_id, self._build_seconds(spec.image),
                                 how="shared" if shared else "started")
        if reuse:
            reused = self._reusable(engine, spec)
            if reused is not None:
                return self._adopt(reused, record, ready, timeout, network_names, "reused")
            record.how = "reusable"
        started = time.monotonic()
        if shared:
            self._carry_image(engine, spec.image)
        state = engine.run(spec)
        record.start_seconds = time.monotonic() - started
        container = Container(engine, state, spec, fixture=fixture, network_names=network_names)
        return self._track(container, record, ready, timeout)

    def attach(self, container_id: str, spec: ContainerSpec, *, fixture: str,
               network_names: dict[str, str] | None = None) -> Container:
        """A handle on a container another worker started (a shared one)."""
        engine = self.shared_engine()
        container = Container(engine, engine.state(container_id), spec, fixture=fixture,
                              network_names=network_names)
        self.config.hook.pytest_isobox_container_created(container=container)
        return container

    def _reusable(self, engine: Engine, spec: ContainerSpec) -> ContainerSpec | None:
        """Find the container of an earlier run by name: reuse when its hash matches, else drop."""
        ensure = getattr(engine, "ensure_image", None)  # pulled first, as the policy says
        image_id = engine.image_inspect(ensure(spec.image) if ensure else spec.image).id
        spec.labels[CONFIG_HASH_LABEL] = config_hash(spec, image_id)
        try:
            state = engine.state(str(spec.name))
        except ContainerNotFound:
            return None
        if state.labels.get(CONFIG_HASH_LABEL) == spec.labels[CONFIG_HASH_LABEL]:
            if not state.running:
                engine.start(state.id)
            return spec
        engine.remove(state.id, force=True)
        return None

    def _adopt(self, spec: ContainerSpec, record: ContainerRecord,
               ready: wait.Strategy | bool | None,
               timeout: float | None, network_names: dict[str, str] | None,
               how: str) -> Container:
        engine = self.engine()
        container = Container(engine, engine.state(str(spec.name)), spec, fixture=record.fixture,
                              network_names=network_names)
        record.how, record.start_seconds = how, 0.0
        return self._track(container, record, ready, timeout)

    def _track(self, container: Container, record: ContainerRecord,
               ready: wait.Strategy | bool | None, timeout: float | None) -> Container:
        """A container this session started or adopted: recorded for the report, announced
        to the hook, then waited for."""
        record.id = container.id
        record.limits = limits_note(container.engine, container.id)
        self._records[container.id] = record
        self.report.containers.append(record)
        self.config.hook.pytest_isobox_container_created(container=container)
        self._wait_ready(container, record, ready, timeout)
        return container

    def _wait_ready(self, container: Container, record: ContainerRecord,
                    ready: wait.Strategy | bool | None, timeout: float | None) -> None:
        if ready is False:
            return
        strategy = wait.default() if ready is None or ready is True else ready
        try:
            record.ready_seconds = wait.wait_until_ready(
                container, strategy, timeout or self.settings.timeout,
                known=container.last_state)
        except BaseException as exc:
            self.failed_ids.add(container.id)
            if self.dispose(container) and isinstance(exc, wait.ReadinessError):
                exc.args = (f"{exc.args[0]}\n{record.exec_hint}",)
            raise
        self.config.hook.pytest_isobox_container_ready(container=container,
                                               seconds=record.ready_seconds)

    def dispose(self, container: Container) -> bool:
        """Record stats, then remove the container, or keep it by policy. True when kept."""
        record = self._records.get(container.id)
        self.record_stats(container)
        if self._keeps(container):
            if record is not None:
                record.kept = True
                record.exec_hint = self.exec_hint(container)
            return True
        if record is not None and record.how in ("reused", "reusable"):
            return False
        remove_later = getattr(container.engine, "remove_later", None)
        if remove_later is not None and container.name in self._generated_names:
            remove_later(container.id)  # gone before the engine closes; no one reuses its name
        else:
            try:
                container.engine.remove(container.id, force=True)
            except ContainerNotFound:
                pass
        self.config.hook.pytest_isobox_container_removed(container=container)
        return False

    def record_stats(self, container: Container) -> None:
        """Keep the container's peak memory and CPU time for the summary (before removal)."""
        record = self._records.get(container.id)
        if record is None or not getattr(container.engine, "cheap_stats", True):
            return  # an engine whose stats cost a slow request: teardown is the removal only
        try:
            stats = container.stats()
        except IsoboxError:  # an exited or vanished container may have none
            return
        record.peak_memory = stats.memory_peak or stats.memory_current
        record.cpu_seconds = stats.cpu_time_ns / 1e9

    def _keeps(self, container: Container) -> bool:
        keep = self.settings.keep
        return keep == "always" or (keep == "failed" and container.id in self.failed_ids)

    def exec_hint(self, container: Container) -> str:
        tool = "docker" if self.settings.engine == "docker" else "isobox"
        if tool == "isobox" and self.settings.home:  # the command must find the same store
            tool += f" --home {shlex.quote(str(self.settings.home))}"
        return f"kept {container.name}: {tool} exec -it {container.id[:12]} sh"

    def _image_label(self, ref: str) -> str:
        image = self._images.get(ref)
        return image.source if image else ref

    def _build_seconds(self, ref: str) -> float | None:
        image = self._images.get(ref)
        return image.seconds if image else None


def _is_from(step: BuildStep) -> bool:
    """FROM only names the base: there is nothing to cache or run."""
    return step.instruction.lstrip().upper().startswith("FROM")
