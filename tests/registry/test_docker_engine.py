"""The docker engine and registries: pulls and pushes go through the real dockerd, to Debian's
docker-registry on loopback (dockerd allows plain http for 127.0.0.0/8), with credentials from
a private config.json given for the one registry asked, and the native engine's pull policy."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_isobox.docker import registries
from pytest_isobox.docker.engine import DockerEngine
from pytest_isobox.engine import BuildError, ContainerSpec, ImageNotFound, IsoboxError
from pytest_isobox.images.reference import parse_reference
from pytest_isobox.images.registry import credentials
from pytest_isobox.images.registry.errors import NameUnknown, RegistryError, Unauthorized
from tests.conftest import needs_docker
from tests.registry import credhelper
from tests.registry.servers import Registry, run

USER, PASSWORD = "pusher", "docker-engine-pass"


@pytest.fixture
def daemon_images() -> Iterator[list[str]]:
    """Image references a test put on the daemon, removed from it at the end."""
    refs: list[str] = []
    yield refs
    with DockerEngine() as engine:
        for ref in reversed(refs):
            try:
                engine.remove_image(ref, force=True)
            except IsoboxError:  # never pulled, or removed by the test
                pass


@pytest.fixture
def docker_engine_for(docker_config: Path) -> Iterator[Callable[..., DockerEngine]]:
    """DockerEngine(pull=...) factories; every engine made is closed at the end."""
    made: list[DockerEngine] = []

    def make(**options: object) -> DockerEngine:
        made.append(DockerEngine(**options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for engine in made:
        engine.close()


@pytest.fixture
def pushed(docker_engine_for: Callable[..., DockerEngine], busybox_rootfs: Path,
           registry: Registry, daemon_images: list[str]) -> Callable[[str], str]:
    """Push busybox from the daemon as `<registry>/<repo>:1`, untagged on the daemon after."""

    def push(repo: str, server: Registry = registry) -> str:
        engine = docker_engine_for()
        ref = f"{server.netloc}/{repo}-{uuid.uuid4().hex[:8]}:1"
        daemon_images.append(ref)
        engine.import_rootfs(busybox_rootfs, ref)
        assert engine.push(ref).startswith("sha256:")
        engine.remove_image(ref, force=True)
        return ref

    return push


def _output(engine: DockerEngine, image: str, command: list[str]) -> bytes:
    state = engine.run(ContainerSpec(image=image, command=command))
    try:
        assert engine.wait(state.id, timeout=60) == 0
        return b"".join(chunk for _, chunk in engine.logs(state.id))
    finally:
        engine.remove(state.id, force=True)


def _manifest_gets(server: Registry, ref: str) -> int:
    """Requests for `ref`'s manifest by its tag (HEAD or GET) so far: one per pull."""
    parsed = parse_reference(ref)
    text = server.log_path.read_text(errors="replace")
    return sum(text.count(f'"{method} /v2/{parsed.path}/manifests/{parsed.tag} ')
               for method in ("GET", "HEAD"))


@needs_docker
def test_a_container_pulls_its_missing_image_through_the_daemon(
        pushed: Callable[[str], str], docker_engine_for: Callable[..., DockerEngine],
        registry: Registry) -> None:
    ref = pushed("isobox/ondemand")
    engine = docker_engine_for()
    with pytest.raises(ImageNotFound):
        engine.image_inspect(ref)
    events: list[tuple] = []
    engine.pull_policy.progress = lambda *event: events.append(event)
    before = _manifest_gets(registry, ref)
    assert _output(engine, ref, ["echo", "pulled"]) == b"pulled\n"
    kinds = {e[0] for e in events}  # the daemon's progress as ours (the busybox layer may
    assert kinds & {"done", "exists"} and kinds <= {"waiting", "download", "done", "exists"}
    # be on the daemon already from another test's import: "exists")
    asked = _manifest_gets(registry, ref)
    assert asked > before
    assert _output(engine, ref, ["echo", "again"]) == b"again\n"
    assert _manifest_gets(registry, ref) == asked  # present: the registry is not asked again
    image = engine.image_inspect(ref)
    digest = image.id  # by digest too: a pull of name@digest gives the same image
    repo_digests = engine.client.get_json(f"/images/{ref}/json")["RepoDigests"]
    by_digest = repo_digests[0]
    assert engine.pull(by_digest) == digest


@needs_docker
def test_pull_policy_and_offline_on_the_docker_engine(
        pushed: Callable[[str], str], docker_engine_for: Callable[..., DockerEngine],
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = pushed("isobox/policy")
    before = registry.log_path.read_text()
    monkeypatch.setenv("ISOBOX_OFFLINE", "1")
    with pytest.raises(ImageNotFound, match=rf"No such image: {ref} \(ISOBOX_OFFLINE=1"):
        docker_engine_for().create(ContainerSpec(image=ref))
    monkeypatch.delenv("ISOBOX_OFFLINE")
    with pytest.raises(ImageNotFound, match=rf"No such image: {ref} \(pull policy never"):
        docker_engine_for(pull="never").create(ContainerSpec(image=ref))
    assert registry.log_path.read_text() == before  # not one request
    monkeypatch.setenv("ISOBOX_PULL", "always")
    engine = docker_engine_for()
    assert engine.pull_policy.value == "always"
    pushed_only = _manifest_gets(registry, ref)
    engine.pull(ref)
    assert _manifest_gets(registry, ref) == pushed_only + 1
    fresh = docker_engine_for()  # another engine: "always" pulls once more, then not again
    assert _output(fresh, ref, ["true"]) == b""
    assert _output(fresh, ref, ["true"]) == b""
    assert _manifest_gets(registry, ref) == pushed_only + 2
    with pytest.raises(IsoboxError, match="invalid pull policy 'sometimes'"):
        DockerEngine(pull="sometimes")


@needs_docker
def test_unknown_tags_and_names_are_one_line_errors(
        pushed: Callable[[str], str], docker_engine_for: Callable[..., DockerEngine],
        registry: Registry) -> None:
    ref = pushed("isobox/known")
    engine = docker_engine_for()
    missing = ref.rsplit(":", 1)[0] + ":2"
    with pytest.raises(NameUnknown, match=rf"pull {missing} through the Docker daemon at .*"
                                          "manifest unknown") as caught:
        engine.run(ContainerSpec(image=missing))
    assert "\n" not in str(caught.value)
    with pytest.raises(ImageNotFound):  # NameUnknown is an ImageNotFound
        engine.pull(f"{registry.netloc}/isobox/nothing-here:1")
    with pytest.raises(ImageNotFound, match="No such image"):
        engine.push(f"{registry.netloc}/isobox/never-made:1")


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry with htpasswd Basic auth over plain http on loopback."""
    root = tmp_path_factory.mktemp("auth-registry")
    htpasswd = root / "htpasswd"
    run("htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD)
    server = Registry(root / "server", htpasswd=htpasswd).start()
    try:
        yield server
    finally:
        server.stop()


def _logged_in(docker_config: Path, *servers: tuple[str, str, str]) -> None:
    auths = {host: {"auth": base64.b64encode(f"{user}:{secret}".encode()).decode()}
             for host, user, secret in servers}
    (docker_config / "config.json").write_text(json.dumps({"auths": auths}))


def _decoded(header: str | None) -> dict:
    assert header is not None
    return json.loads(base64.urlsafe_b64decode(header))


@needs_docker
def test_credentials_go_to_their_registry_only(
        auth_registry: Registry, docker_config: Path, pushed: Callable[..., str],
        docker_engine_for: Callable[..., DockerEngine], daemon_images: list[str]) -> None:
    other = ("other.registry.test:5000", "someone", "not-for-this-registry")
    with pytest.raises(Unauthorized, match=rf"registry {auth_registry.netloc}: no credentials: "
                                           rf"run isobox login {auth_registry.netloc}"):
        docker_engine_for().pull(f"{auth_registry.netloc}/private/app:1")
    _logged_in(docker_config, (auth_registry.netloc, USER, PASSWORD), other)
    assert _decoded(registries.registry_auth(auth_registry.netloc)) == {
        "username": USER, "password": PASSWORD, "serveraddress": auth_registry.netloc}
    ref = pushed("private/app", auth_registry)  # pushed with X-Registry-Auth
    engine = docker_engine_for()
    assert _output(engine, ref, ["echo", "authorised"]) == b"authorised\n"
    _logged_in(docker_config, (auth_registry.netloc, USER, "wrong"))
    engine.remove_image(ref, force=True)
    with pytest.raises(Unauthorized, match="credentials refused"):
        engine.pull(ref)


@needs_docker
def test_a_cred_helper_gives_the_daemon_its_credentials(
        auth_registry: Registry, docker_config: Path, pushed: Callable[..., str],
        docker_engine_for: Callable[..., DockerEngine], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = credhelper.install(tmp_path / "bin", "test", {auth_registry.netloc: (USER, PASSWORD)},
                             monkeypatch)
    (docker_config / "config.json").write_text(json.dumps({
        "credHelpers": {auth_registry.netloc: "test", "other.registry.test": "test"}}))
    ref = pushed("private/helped", auth_registry)
    assert _output(docker_engine_for(), ref, ["echo", "helped"]) == b"helped\n"
    assert set(credhelper.calls(log)) == {f"get {auth_registry.netloc}"}


@needs_docker
def test_builds_pull_their_bases_with_credentials(
        auth_registry: Registry, docker_config: Path, pushed: Callable[..., str],
        docker_engine_for: Callable[..., DockerEngine], daemon_images: list[str],
        tmp_path: Path) -> None:
    """A literal FROM is pulled first (X-Registry-Auth); a FROM the daemon expands from an ARG
    is pulled by the daemon's builder with X-Registry-Config."""
    _logged_in(docker_config, (auth_registry.netloc, USER, PASSWORD))
    ref = pushed("private/base", auth_registry)
    context = tmp_path / "ctx"
    context.mkdir()
    engine = docker_engine_for()
    tag = f"isobox-test/built:{uuid.uuid4().hex[:8]}"
    daemon_images.append(tag)
    (context / "Dockerfile").write_text(f"FROM {ref}\nRUN echo literal > /built\n")
    engine.build(context, tag=tag)
    assert _output(engine, tag, ["cat", "/built"]) == b"literal\n"
    engine.remove_image(tag, force=True)
    engine.remove_image(ref, force=True)
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN echo from-arg > /built\n")
    assert list(_decoded(registries.registry_config(credentials.configured_domains()))) \
        == [auth_registry.netloc]  # what the daemon's builder is given for FROM ${BASE}
    engine.build(context, tag=tag, buildargs={"BASE": ref})
    assert _output(engine, tag, ["cat", "/built"]) == b"from-arg\n"
    engine.remove_image(ref, force=True)
    never = docker_engine_for(pull="never")
    (context / "Dockerfile").write_text(f"FROM {ref}\n")
    with pytest.raises(BuildError, match=rf"Dockerfile: FROM {ref}: No such image: .*pull "
                                         "policy never"):
        never.build(context, tag=tag)


def test_the_daemons_messages_become_progress_and_errors() -> None:
    events: list[tuple] = []
    reader = registries.DaemonProgress(lambda *event: events.append(event))
    for message in [
        {"status": "Pulling from isobox/app", "id": "1"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "abc"},
        {"status": "Downloading", "progressDetail": {"current": 5, "total": 10}, "id": "abc"},
        {"status": "Pull complete", "progressDetail": {}, "id": "abc"},
        {"status": "Digest: sha256:" + "a" * 64},
    ]:
        reader.feed(message)
    assert events == [("waiting", "abc", 0, 0), ("download", "abc", 5, 10),
                      ("done", "abc", 0, 0)]
    assert reader.digest == "sha256:" + "a" * 64 and reader.error is None
    reader.feed({"errorDetail": {"message": "boom"}, "error": "boom"})
    assert reader.error == "boom"
    ref = parse_reference("127.0.0.1:5000/a/b:1")
    assert type(registries.registry_error(
        "pull", ref, "manifest for x not found: manifest unknown", sent_credentials=False,
        daemon="unix://s")) is NameUnknown
    denied = registries.registry_error(
        "pull", ref, "pull access denied for x, repository does not exist or may require "
        "'docker login'", sent_credentials=False, daemon="unix://s")
    assert isinstance(denied, Unauthorized) and "run isobox login 127.0.0.1:5000" in str(denied)
    assert type(registries.registry_error("push", ref, "dial tcp: refused\nmore",
                                          sent_credentials=False, daemon="unix://s")) \
        is RegistryError
    assert registries.pull_query(parse_reference("busybox")) == {"fromImage": "busybox",
                                                                 "tag": "latest"}
    assert registries.pull_query(parse_reference("h:5/a@sha256:" + "b" * 64)) == {
        "fromImage": "h:5/a", "tag": "sha256:" + "b" * 64}
    assert registries.domain_of("sha256:" + "c" * 64) is None
    assert registries.domain_of("ghcr.io/o/app:1") == "ghcr.io"


@needs_docker
def test_the_plugin_pulls_through_the_daemon_as_its_policy_says(
        pytester: pytest.Pytester, pushed: Callable[[str], str], daemon_images: list[str],
        docker_config: Path) -> None:
    ref = pushed("isobox/plugin")
    pytester.makeconftest(f"""
        from pytest_isobox import container
        box = container(image={ref!r}, command=["sleep", "30"], scope="function", ready=False)
    """)
    pytester.makepyfile("def test_it(box):\n    assert box.status == 'running'\n")
    never = pytester.runpytest("-p", "no:cacheprovider", "--isobox-engine=docker",
                               "--isobox-pull=never")
    never.assert_outcomes(errors=1)
    never.stdout.fnmatch_lines([f"*No such image: {ref} (pull policy never*"])
    pulled = pytester.runpytest("-p", "no:cacheprovider", "--isobox-engine=docker")
    pulled.assert_outcomes(passed=1)
    pulled.stdout.fnmatch_lines([f"isobox: pulled {ref} (*) in *s"])
