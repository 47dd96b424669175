"""The requests a function-scoped container costs on the docker engine, counted on the client.

A session of function-scoped containers with a published port and HTTP readiness (the
peers' benchmark, benchmarks/bench_peers.py): each container is create, start, inspect and
one forced removal; no stop, no wait, no kill, no stats, no image lookup (the image is there).
The client's requests are recorded as they go to the real daemon; nothing is answered here.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from pytest_isobox.docker.client import DockerClient
from pytest_isobox.docker.engine import DockerEngine
from tests.conftest import needs_docker
from tests.docker.conftest import podman_differs
from tests.plugin.conftest import base_conftest

pytestmark = needs_docker

_ID = re.compile(r"/containers/[0-9a-f]{64}(?=/|$)")


@podman_differs("an image imported under a short name is localhost/NAME: the first inspect "
                "by NAME misses, one pull request follows")
def test_each_container_is_create_start_inspect_and_one_forced_removal(
        pytester: pytest.Pytester, busybox_rootfs: Path, docker_engine: DockerEngine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    request, open_stream = DockerClient.request, DockerClient.open_stream

    def recorded(kind: object) -> object:
        def wrapper(self: DockerClient, method: str, path: str, query: object = None,
                    *args: object, **kwargs: object) -> object:
            force = isinstance(query, dict) and bool(query.get("force"))
            sent.append(f"{method} {_ID.sub('/containers/ID', path)}{' force' if force else ''}")
            return kind(self, method, path, query, *args, **kwargs)  # type: ignore[operator]
        return wrapper

    monkeypatch.setattr(DockerClient, "request", recorded(request))
    monkeypatch.setattr(DockerClient, "open_stream", recorded(open_stream))
    pytester.makeini("[pytest]\nisobox_engine = docker\n")
    pytester.makeconftest(base_conftest(busybox_rootfs, """
        web = container(image="{base}", ports=["8000/tcp"], scope="function",
                        command=["httpd", "-f", "-p", "8000", "-h", "/etc"],
                        ready=wait.http(8000, "/passwd", body="root"))
    """))
    pytester.makepyfile(test_it="".join(textwrap.dedent(f"""
        def test_{n}(web):
            assert web.get_addr("8000/tcp")[1]
    """) for n in range(3)))
    pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly").assert_outcomes(passed=3)
    per_container = Counter(s for s in sent if "/containers/ID" in s or "/create" in s)
    assert per_container == Counter({
        "POST /containers/create": 3, "POST /containers/ID/start": 3,
        "GET /containers/ID/json": 3, "DELETE /containers/ID force": 3}), sent
    assert sent.count("GET /containers/json") <= 2  # the session's: sweep at open, at close
