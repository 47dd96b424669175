"""`isobox serve`: flags as dockerd's (`-H` repeatable, `--tlsverify --tlscacert --tlscert
--tlskey`), plus `--home` and `--engine`. Serves until SIGTERM or SIGINT, then closes the
listeners and the engine (which removes the containers it made for clients)."""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import sys
import threading

from pytest_isobox.engine import IsoboxError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="isobox serve",
                                description="Serve Docker's Engine API from an isobox engine.")
    p.add_argument("-H", "--host", action="append", default=[], dest="hosts",
                   help="unix:///PATH, tcp://HOST:PORT or fd:// (repeatable; default "
                        "unix:///run/isobox/docker.sock)")
    p.add_argument("--tls", action="store_true", help="use TLS (implied by --tlsverify)")
    p.add_argument("--tlsverify", action="store_true",
                   help="use TLS and require client certificates signed by --tlscacert")
    p.add_argument("--tlscacert", help="the CA that signs client certificates")
    p.add_argument("--tlscert", help="the server's certificate")
    p.add_argument("--tlskey", help="the server's key")
    p.add_argument("--home", help="the isobox home (default: $ISOBOX_HOME or the system one)")
    p.add_argument("--engine", default="native", help="the engine serving the API")
    p.add_argument("--ip", default="127.0.0.1",
                   help="the host address of published ports whose binding names none "
                        "(dockerd's --ip; default loopback, dockerd's is 0.0.0.0)")
    p.add_argument("--debug", action="store_true", help="log every request to stderr")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from pytest_isobox.engine import open_engine
    from pytest_isobox.server.app import DEFAULT_HEADERS, App
    from pytest_isobox.server.context import ServerContext
    from pytest_isobox.server.listeners import TlsOptions, open_listeners

    tls = TlsOptions(args.tlsverify, args.tlscacert, args.tlscert, args.tlskey)
    try:
        if (args.tls or args.tlsverify) and not tls.enabled:
            raise IsoboxError("--tls/--tlsverify need --tlscert and --tlskey")
        listeners = open_listeners(args.hosts, tls)
    except IsoboxError as exc:
        print(f"isobox serve: {exc}", file=sys.stderr)
        return 2
    try:
        if args.home and args.engine != "native":
            raise IsoboxError(f"--home is the native engine's store; the {args.engine} "
                              "engine has none")
        options = {"home": args.home} if args.home else {}
        engine = open_engine(args.engine, **options)
    except IsoboxError as exc:
        for listener in listeners:
            listener.close()
        print(f"isobox serve: {exc}", file=sys.stderr)
        return 1
    home = getattr(engine, "home", args.home)
    app = App(ServerContext(engine, home, default_ip=args.ip), debug=args.debug)
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.debug else None
    try:
        for listener in listeners:
            print(f"isobox serve: API listening on {listener.address}", file=sys.stderr,
                  flush=True)
        _accept_until_signalled(listeners, app, DEFAULT_HEADERS, log)
    finally:
        for listener in listeners:
            listener.close()
        with app.ctx.lock:
            engine.close()
    return 0


def _accept_until_signalled(listeners, app, headers, log) -> None:
    """Accept on every listener; each connection on its own thread."""
    from pytest_isobox.server.http import serve_connection

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        os.write(wake_w, b"x")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    selector = selectors.DefaultSelector()
    try:
        selector.register(wake_r, selectors.EVENT_READ, None)
        for listener in listeners:
            listener.sock.setblocking(False)
            selector.register(listener.sock, selectors.EVENT_READ, listener)
        while not stop.is_set():
            for key, _ in selector.select():
                listener = key.data
                if listener is None:
                    continue
                try:
                    conn, address = listener.sock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                conn.setblocking(True)
                threading.Thread(target=serve_connection,
                                 args=(conn, address, app, headers, listener.tls, log),
                                 daemon=True, name="isobox-serve-conn").start()
    finally:
        selector.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(wake_r)
        os.close(wake_w)
