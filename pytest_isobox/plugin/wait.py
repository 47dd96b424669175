"""Readiness: when a started container is ready for the tests, judged from the host.

A strategy answers one question per poll (`check` returns when ready, raises `NotReady` with
the reason when not). `wait_until_ready` polls it from about 1 ms, backing off, and fails at
once when the container exits, with its exit code and last log lines; on timeout it says what
it waited for, the last attempt's error and the last log lines.

    wait.tcp(6379)                      a TCP connection to the port succeeds
    wait.http(8000, "/health", status=200, body="ok")
    wait.log(r"listening on \\d+")      a regex matches the container's output
    wait.command(["pg_isready"])        an exec exits 0
    wait.healthcheck()                  the image's HEALTHCHECK command exits 0 (via exec)
    wait.healthy()                      State.Health is healthy (the container's own check)
    wait.all_of(a, b)                   every one, in order
    wait.ports()                        every published TCP port accepts
    wait.health()                       Docker's State.Health is healthy (the engine's checks)
    wait.default()                      (the default) healthy when a healthcheck is in force
                                        (the container's or its image's), then ports()
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from pytest_isobox.engine import ContainerState, InvalidSpec, IsoboxError
from pytest_isobox.polling import readable

# A server in a fresh container typically listens a few ms after the start; a refused connect
# costs some microseconds, so the first rounds are close together (10 ms at first made half
# the containers of a session wait a whole round for a server that was up 1 ms later).
FIRST_POLL = 0.001
MAX_POLL = 0.25
BACKOFF = 1.5
LOG_LINES = 20
_PROBE_TIMEOUT = 2.0
_CLOSED_AT_ONCE = 0.02  # a relay with no server behind it closes a connection about this fast


class ReadinessError(IsoboxError):
    """A container did not become ready; the message says why and ends with its last logs."""


class ContainerExited(ReadinessError):
    """The container exited while it was waited on."""


class ReadinessTimeout(ReadinessError):
    """The container kept running but was not ready in time."""


class NotReady(Exception):
    """Raised by a strategy's check: not ready yet, for the reason given."""


class WaitTarget(Protocol):
    """What strategies need from a container (the `Container` handle provides it)."""

    name: str

    def poll_state(self) -> ContainerState: ...
    def published_ports(self) -> list[str]: ...
    def probe_addr(self, port: int | str) -> tuple[str, int]: ...
    def direct_addr(self, port: int | str) -> tuple[str, int] | None: ...
    def logs(self, *, tail: int | None = None) -> str: ...
    def exec(self, cmd: str | Sequence[str]) -> tuple[int, str]: ...
    def image_config(self) -> dict: ...


class Strategy(Protocol):
    def describe(self, target: WaitTarget) -> str: ...
    def check(self, target: WaitTarget) -> None: ...


# --------------------------------------------------------------------------- strategies

@dataclass(frozen=True)
class Tcp:
    port: int | str

    def describe(self, target: WaitTarget) -> str:
        host, port = target.probe_addr(self.port)
        return f"a TCP connection to {_key(self.port)} at {host}:{port}"

    def check(self, target: WaitTarget) -> None:
        probe_port(target, self.port)


@dataclass(frozen=True)
class Ports:
    """Every published TCP port accepts connections; with none published, running is enough."""

    def describe(self, target: WaitTarget) -> str:
        tcp = [p for p in target.published_ports() if p.endswith("/tcp")]
        return f"published ports {', '.join(tcp)} to accept connections" if tcp else "running"

    def check(self, target: WaitTarget) -> None:
        for key in target.published_ports():
            if key.endswith("/tcp"):
                try:
                    probe_port(target, key)
                except NotReady as exc:
                    raise NotReady(f"port {key}: {exc}") from None


@dataclass(frozen=True)
class Http:
    port: int | str
    path: str = "/"
    status: int | Collection[int] = 200
    body: str | None = None
    method: str = "GET"

    def describe(self, target: WaitTarget) -> str:
        host, port = target.probe_addr(self.port)
        want = f"status {self._statuses()}" + (f" and a body matching {self.body!r}"
                                                if self.body else "")
        return f"{self.method} http://{host}:{port}{self.path} to answer {want}"

    def check(self, target: WaitTarget) -> None:
        from http.client import HTTPConnection, HTTPException  # with ssl: ~7 ms, only here

        host, port = target.probe_addr(self.port)
        conn = HTTPConnection(host, port, timeout=_PROBE_TIMEOUT)
        try:
            conn.request(self.method, self.path)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, HTTPException) as exc:
            raise NotReady(f"{type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        if response.status not in self._statuses():
            raise NotReady(f"status {response.status}: {_first_line(text)}")
        if self.body is not None and not re.search(self.body, text):
            raise NotReady(f"status {response.status} but body does not match {self.body!r}: "
                           f"{_first_line(text)}")

    def _statuses(self) -> Collection[int]:
        return (self.status,) if isinstance(self.status, int) else tuple(self.status)


@dataclass(frozen=True)
class Log:
    pattern: str
    times: int = 1

    def describe(self, target: WaitTarget) -> str:
        times = f" {self.times} times" if self.times > 1 else ""
        return f"the logs to match {self.pattern!r}{times}"

    def check(self, target: WaitTarget) -> None:
        found = len(re.findall(self.pattern, target.logs(), re.MULTILINE))
        if found < self.times:
            raise NotReady(f"matched {found} of {self.times} times")


@dataclass(frozen=True)
class Command:
    cmd: str | tuple[str, ...]

    def describe(self, target: WaitTarget) -> str:
        return f"command {self.cmd!r} to exit 0"

    def check(self, target: WaitTarget) -> None:
        try:
            code, output = target.exec(self.cmd)
        except IsoboxError as exc:
            raise NotReady(f"exec failed: {exc}") from None
        if code != 0:
            raise NotReady(f"exit code {code}: {_last_line(output)}")


@dataclass(frozen=True)
class Healthcheck:
    """The image's HEALTHCHECK test, run with exec (Docker's interval and retries are not used)."""

    def describe(self, target: WaitTarget) -> str:
        return f"the image's HEALTHCHECK {self._command(target)!r} to exit 0"

    def check(self, target: WaitTarget) -> None:
        Command(self._command(target)).check(target)

    @staticmethod
    def _command(target: WaitTarget) -> tuple[str, ...]:
        test = (target.image_config().get("Healthcheck") or {}).get("Test") or []
        if test and test[0] == "CMD" and len(test) > 1:
            return tuple(test[1:])
        if test and test[0] == "CMD-SHELL" and len(test) > 1:
            return ("/bin/sh", "-c", test[1])
        raise ReadinessError(
            f"container {target.name}: wait.healthcheck() but its image has no HEALTHCHECK "
            f"command (Healthcheck.Test={test!r})")


class Unhealthy(ReadinessError):
    """The container's healthcheck declared it unhealthy while it was waited on."""


@dataclass(frozen=True)
class Health:
    """Docker's State.Health is `healthy`: the engine runs the healthcheck with its interval,
    timeout, retries and start period (dockerd, or the native engine's keeper); `unhealthy`
    fails at once, in one line naming the container and the last check's output."""

    def describe(self, target: WaitTarget) -> str:
        return "State.Health to be healthy"

    def check(self, target: WaitTarget) -> None:
        state = _inspect(target).get("State") or {}
        health = state.get("Health") or {}
        status = health.get("Status") or "starting"
        if status == "healthy":
            return
        last = (health.get("Log") or [{}])[-1]
        said = f"exit {last.get('ExitCode')}: {_last_line(last.get('Output') or '')}" \
            if last else "no check finished yet"
        if status == "unhealthy":
            raise Unhealthy(f"container {target.name} is unhealthy (failing streak "
                            f"{health.get('FailingStreak', 0)}); last health check: {said}")
        raise NotReady(f"health {status}; last health check: {said}")


class Default:
    """The default readiness: `Health` first when a healthcheck is in force (Docker's
    Config.Healthcheck, the container's or its image's, not NONE), then `Ports`."""

    def __init__(self) -> None:
        self._checked: dict[str, bool] = {}

    def _has_health(self, target: WaitTarget) -> bool:
        if target.name not in self._checked:
            inspect = getattr(target, "inspect", None)
            test = ((inspect().get("Config") or {}).get("Healthcheck") or {}).get("Test") \
                if inspect is not None else None
            self._checked[target.name] = bool(test) and test[0] != "NONE"
        return self._checked[target.name]

    def describe(self, target: WaitTarget) -> str:
        ports = Ports().describe(target)
        if not self._has_health(target):
            return ports
        return Health().describe(target) + ("" if ports == "running" else f" and {ports}")

    def check(self, target: WaitTarget) -> None:
        if self._has_health(target):
            Health().check(target)
        Ports().check(target)


@dataclass(frozen=True)
class Healthy:
    """State.Health is `healthy`: the healthcheck stored in the container, run by the engine
    at its interval (native: the keeper; docker: the daemon). Unhealthy fails at once."""

    def describe(self, target: WaitTarget) -> str:
        return "its healthcheck (State.Health) to report healthy"

    def check(self, target: WaitTarget) -> None:
        health = target.health()  # type: ignore[attr-defined]
        status = health.get("Status") or "starting"
        if status == "healthy":
            return
        log = health.get("Log") or []
        last = f"exit {log[-1].get('ExitCode')}: {_last_line(str(log[-1].get('Output') or ''))}" \
            if log else "no check finished yet"
        if status == "unhealthy":
            raise ReadinessError(f"container {target.name} is unhealthy after "
                                 f"{health.get('FailingStreak', 0)} failed checks; last: "
                                 f"{last}{_tail(target)}")
        raise NotReady(f"health {status}, {last}")


@dataclass(frozen=True)
class AllOf:
    strategies: tuple[Strategy, ...]

    def describe(self, target: WaitTarget) -> str:
        return " and ".join(s.describe(target) for s in self.strategies)

    def check(self, target: WaitTarget) -> None:
        for strategy in self.strategies:
            strategy.check(target)


def tcp(port: int | str) -> Tcp:
    """Ready when a TCP connection to the container's port succeeds (published port first)."""
    return Tcp(port)


def health() -> Health:
    """Ready when the engine's healthcheck says healthy (State.Health.Status)."""
    return Health()


def default() -> Default:
    """The default: healthy when the container has a healthcheck, then every published port
    accepts."""
    return Default()


def ports() -> Ports:
    """Ready when every published TCP port accepts connections (the default)."""
    return Ports()


def http(port: int | str, path: str = "/", *, status: int | Collection[int] = 200,
         body: str | None = None, method: str = "GET") -> Http:
    """Ready when an HTTP request answers with `status` and a body matching regex `body`."""
    return Http(port, path, status if isinstance(status, int) else tuple(status), body, method)


def log(pattern: str, *, times: int = 1) -> Log:
    """Ready when the container's output (stdout and stderr) matches regex `pattern`."""
    re.compile(pattern)
    return Log(pattern, times)


def command(cmd: str | Sequence[str]) -> Command:
    """Ready when `cmd`, run in the container with exec, exits 0."""
    return Command(cmd if isinstance(cmd, str) else tuple(cmd))


def healthcheck() -> Healthcheck:
    """Ready when the image's HEALTHCHECK command, run with exec, exits 0."""
    return Healthcheck()


def healthy() -> Healthy:
    """Ready when the container's State.Health is healthy (its stored healthcheck passed)."""
    return Healthy()


def all_of(*strategies: Strategy) -> AllOf:
    """Ready when every strategy is, checked in the order given."""
    return AllOf(tuple(strategies))


# --------------------------------------------------------------------------- waiting

def wait_until_ready(target: WaitTarget, strategy: Strategy, timeout: float, *,
                     known: ContainerState | None = None) -> float:
    """Poll until ready and return the seconds it took; raise ReadinessError otherwise.
    `known`: a state the caller has just been given (run's): the first round checks with it
    instead of asking the engine again (one round trip less per container on docker)."""
    started = time.monotonic()
    deadline = started + timeout
    delay = FIRST_POLL
    last_error = "no attempt finished"
    while True:
        state, known = known or target.poll_state(), None
        if state.status in ("exited", "dead"):
            raise ContainerExited(
                f"container {target.name} exited with code {state.exit_code}"
                f"{' (OOM killed)' if state.oom_killed else ''} while waiting for "
                f"{_describe(strategy, target)}{_tail(target)}")
        if state.status == "running":
            try:
                strategy.check(target)
                return time.monotonic() - started
            except NotReady as exc:
                last_error = str(exc)
        else:
            last_error = f"container is {state.status}"
        if time.monotonic() + delay > deadline:
            raise ReadinessTimeout(
                f"container {target.name} not ready after {timeout:g} s: waited for "
                f"{_describe(strategy, target)}; last attempt: {last_error}{_tail(target)}")
        time.sleep(delay)
        delay = min(delay * BACKOFF, MAX_POLL)


def probe_port(target: WaitTarget, port: int | str) -> None:
    """The server itself listens (at the container's own address, when the host reaches it)
    and the published address accepts: a port relay accepts even with no server behind it."""
    direct = target.direct_addr(port)
    if direct is not None:
        probe_tcp(*direct)
    try:
        published = target.probe_addr(port)
    except InvalidSpec as exc:  # not bound (yet)
        raise NotReady(str(exc)) from None
    probe_tcp(*published)


def probe_tcp(host: str, port: int) -> None:
    """Connect and tell a listening server from a relay that closes at once (NotReady)."""
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT) as sock:
            if readable([sock.fileno()], _CLOSED_AT_ONCE) and sock.recv(1, socket.MSG_PEEK) == b"":
                raise NotReady(f"{host}:{port} closed the connection at once")
    except OSError as exc:
        raise NotReady(f"{host}:{port}: {exc.strerror or exc}") from None


def _inspect(target: WaitTarget) -> dict:
    inspect = getattr(target, "inspect", None)
    if inspect is None:
        raise ReadinessError(f"container {target.name}: its engine has no inspect document")
    return inspect()


def _describe(strategy: Strategy, target: WaitTarget) -> str:
    try:
        return strategy.describe(target)
    except Exception as exc:  # noqa: BLE001 - a description must never hide the real error
        return f"{type(strategy).__name__} ({exc})"


def _tail(target: WaitTarget) -> str:
    try:
        text = target.logs(tail=LOG_LINES).rstrip("\n")
    except Exception as exc:  # noqa: BLE001 - the container may be gone already
        return f"\n(logs unavailable: {exc})"
    if not text:
        return "\nno log output"
    return f"\nlast {LOG_LINES} log lines of {target.name}:\n{text}"


def _key(port: int | str) -> str:
    return str(port) if "/" in str(port) else f"{port}/tcp"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "(empty body)"


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1][:200] if text.strip() else "(no output)"
