"""The `isobox` command's whole argument parser (argparse), built only where argparse is
used: help, errors, and the forms cli/quickargs.py leaves to it. A verb typed plainly (`ps`,
`build -q`, `run --rm IMAGE true`) never loads this module.
"""

from __future__ import annotations

import argparse

from pytest_isobox._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn


class UsageError(Exception):
    """Arguments that do not parse: one line naming the verb and the fault, exit 125."""


def _argument_parser(**kwargs: object) -> argparse.ArgumentParser:
    """argparse with Docker's answer to bad arguments: one line and 125, not the whole usage."""
    class _ArgumentParser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            message = message.replace("\n", "\\n").replace("\r", "\\r")  # one line, always
            raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")

    return _ArgumentParser(**kwargs)


# The top-level options that take a value: the verb is the first word that is not one of
# them nor their value.
_TOP_VALUED = ("--engine", "--home", "-H", "--host")


def chosen_verb(argv: list[str]) -> str | None:
    """The verb `argv` names, or None (no verb, or help/version asked at the top)."""
    words = iter(argv)
    for word in words:
        if word in _TOP_VALUED:
            next(words, None)
        elif not word.startswith("-"):
            return word
        elif word.startswith(("--engine=", "--home=", "--host=")) or (
                word.startswith("-H") and len(word) > 2):
            continue
        else:
            return None  # -h, --help, -v, or an unknown flag: the whole parser answers
    return None


class _Unbuilt:
    """Stands for the parser of a verb not chosen: its arguments are never built (about
    50 verbs' worth of argparse calls, 10 ms, for a command that runs one)."""

    def __bool__(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Callable:
        return lambda *args, **kwargs: self


def _container_flags(p: argparse.ArgumentParser) -> None:
    if p:
        from pytest_isobox.cli import run_options

        run_options._container_flags(p)


def _inspect_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="a Go template run over each document, e.g. "
                   "'{{.State.Pid}}', '{{json .Config}}'")


def _images_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="show untagged images too")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                   help="reference, dangling, label, before, since")
    p.add_argument("--format", help="a Go template per image, `table ...`, or json")
    p.add_argument("--digests", action="store_true", help="a DIGEST column")
    p.add_argument("--no-trunc", action="store_true", help="full ids")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")


def parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (`chosen`, a verb) one that knows that verb alone; a word that
    is no verb gets the whole parser, whose error lists the verbs."""
    top = _argument_parser(prog="isobox", description="Daemonless containers, Docker's verbs.")
    top.add_argument("-v", "--version", action="version", version=f"isobox version {__version__}",
                     help="print the version and exit")
    top.add_argument("--engine", help="native (default, env ISOBOX_ENGINE), docker, or an "
                     "engine a package registers (entry points pytest_isobox.engines)")
    top.add_argument("--home", help="store directory of the native engine (env ISOBOX_HOME)")
    top.add_argument("-H", "--host", help="Docker daemon address for the docker engine")
    sub = top.add_subparsers(metavar="COMMAND")

    built: list[str] = []

    def verb(name: str, func, help: str, **kw) -> argparse.ArgumentParser:
        if chosen is not None and name != chosen:
            return _Unbuilt()  # type: ignore[return-value]
        built.append(name)
        p = sub.add_parser(name, help=help, add_help=kw.pop("add_help", True), **kw)
        p.set_defaults(func=func, **({} if func else {"group_help": p}))
        return p

    # -h is --hostname for run and create, as in Docker: only --help asks for help
    p = verb("run", "containers:cmd_run", "run a command in a new container", add_help=False)
    p.add_argument("--help", action="help", help="show this help and exit")
    _container_flags(p)
    p = verb("create", "containers:cmd_create", "create a container", add_help=False)
    p.add_argument("--help", action="help", help="show this help and exit")
    _container_flags(p)
    p = verb("start", "containers:cmd_start", "start created containers")
    p.add_argument("containers", nargs="+")
    p = verb("ps", "containers:cmd_ps", "list containers")
    p.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                   help="status, name, label, id, ancestor, exited, network, volume, health, "
                   "before, since")
    p.add_argument("--format", help="a Go template per container, `table ...`, or json")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    p.add_argument("-n", "--last", type=int, metavar="N", help="the N last created (any state)")
    p.add_argument("-l", "--latest", action="store_true", help="the last created (any state)")
    p.add_argument("-s", "--size", action="store_true", help="the writable layer's size")
    p = verb("logs", "containers:cmd_logs", "show a container's output")
    p.add_argument("-f", "--follow", action="store_true", help="go on until it exits")
    p.add_argument("-n", "--tail", metavar="N", help="the last N lines (or all)")
    p.add_argument("-t", "--timestamps", action="store_true", help="each line's time")
    p.add_argument("--since", help="from then: 10m, 1h30m, a Unix or an RFC 3339 time")
    p.add_argument("--until", help="until then: 10m, 1h30m, a Unix or an RFC 3339 time")
    p.add_argument("container")
    p = verb("exec", "containers:cmd_exec", "run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="start it and return")
    p.add_argument("--privileged", action="store_true", help="every capability for it")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append")
    p.add_argument("--env-file", action="append", metavar="FILE", help="KEY=VALUE lines")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p = verb("stop", "containers:cmd_stop", "stop containers (stop signal, then SIGKILL)")
    p.add_argument("-t", "--time", type=float)
    p.add_argument("containers", nargs="+")
    p = verb("restart", "containers:cmd_restart", "stop containers, then start them again")
    p.add_argument("-t", "--time", type=float, help="seconds to wait for the stop")
    p.add_argument("containers", nargs="+")
    p = verb("pause", "containers:cmd_pause", "freeze every process of containers")
    p.add_argument("containers", nargs="+")
    p = verb("unpause", "containers:cmd_unpause", "thaw paused containers")
    p.add_argument("containers", nargs="+")
    p = verb("rename", "containers:cmd_rename", "give a container another name")
    p.add_argument("container")
    p.add_argument("new_name", metavar="NEW_NAME")
    p = verb("top", "containers:cmd_top", "a container's processes (the host's ps)")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS OPTIONS",
                   help="options of ps (default -ef)")
    p = verb("kill", "containers:cmd_kill", "send a signal to containers")
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("containers", nargs="+")
    p = verb("rm", "containers:cmd_rm", "remove containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="its anonymous volumes too (they always go with it here)")
    p.add_argument("containers", nargs="+")
    p = verb("wait", "containers:cmd_wait", "wait for containers to exit, print exit codes")
    p.add_argument("containers", nargs="+")
    p = verb("inspect", "containers:cmd_inspect",
             "Docker's JSON of containers, images, networks or volumes")
    _inspect_flags(p)
    p.add_argument("--type", choices=["container", "image", "network", "volume"],
                   help="look only for this kind of object")
    p.add_argument("-s", "--size", action="store_true", help="a container's sizes too")
    p.add_argument("refs", nargs="+")
    p = verb("port", "containers:cmd_port", "list a container's published ports")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    p = verb("cp", "containers:cmd_cp", "copy files between a container and the host")
    p.add_argument("src")
    p.add_argument("dst")
    p = verb("stats", "stats:cmd_stats", "live resource usage of containers (CPU %%, memory)")
    p.add_argument("-a", "--all", action="store_true", help="stopped containers too")
    p.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    p.add_argument("--format", help="a Go template per container, `table ...`, or json")
    p.add_argument("containers", nargs="*", help="default: every running container")

    p = verb("build", "images:cmd_build", "build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", help="NAME[:TAG]; several -t tag it so each")
    p.add_argument("-f", "--file", help="the Dockerfile (default PATH/Dockerfile)")
    p.add_argument("--build-arg", action="append", metavar="K=V")
    p.add_argument("--label", action="append", metavar="K=V", help="a label of the image")
    p.add_argument("--iidfile", metavar="FILE", help="write the image id to FILE")
    p.add_argument("--target")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--network")
    p.add_argument("--pull", nargs="?", const="always", choices=["missing", "always", "never"],
                   help="pull FROM images: missing (default), always (--pull alone), never")
    p.add_argument("--progress", choices=["auto", "plain", "tty", "quiet"], default="auto",
                   help="plain/tty/auto: a RUN's output as it comes; quiet: none")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("path", help="the context directory, or - (a tar or a Dockerfile on stdin)")
    p = verb("pull", "images:cmd_pull", "pull an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform", help="os/arch[/variant] to pick from an image index "
                   "(default: this host's)")
    p.add_argument("image", help="NAME[:TAG|@DIGEST]")
    p = verb("push", "images:cmd_push", "push an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--chunk-size", help="upload in chunks of this size (e.g. 8m), not one PUT")
    p.add_argument("image", help="NAME[:TAG]")
    p = verb("bootstrap", "images:cmd_bootstrap",
             "make a Debian base image with debootstrap from this machine's apt mirror")
    p.add_argument("--variant", default="minbase", help="debootstrap variant (default minbase)")
    p.add_argument("--include", action="append", metavar="PKGS",
                   help="more packages, comma-separated")
    p.add_argument("-t", "--tag", help="tag it so (default NAME)")
    p.add_argument("name", help="debian:SUITE, e.g. debian:bookworm")
    p = verb("login", "images:cmd_login", "log in to a registry (writes ~/.docker/config.json)")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?", default="docker.io")
    p.set_defaults(no_engine=True)
    p = verb("logout", "images:cmd_logout", "log out from a registry")
    p.add_argument("server", nargs="?")
    p.set_defaults(no_engine=True)
    p = verb("images", "images:cmd_images", "list images")
    _images_flags(p)
    p = verb("rmi", "images:cmd_rmi", "remove images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    p = verb("tag", "images:cmd_tag", "give an image another name")
    p.add_argument("source")
    p.add_argument("target")
    p = verb("import", "images:cmd_import", "make an image from a root filesystem directory or tar")
    p.add_argument("source")
    p.add_argument("ref")
    p = verb("save", "images:cmd_save", "write images to a docker-load archive")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("images", nargs="+")
    p = verb("load", "images:cmd_load", "read images from a docker-save archive")
    p.add_argument("-i", "--input", required=True)
    verb("prune", "images:cmd_prune", "remove what no tag or container needs")
    p = verb("df", "system:cmd_df", "disk used by images, layers, containers and the build cache")
    p.add_argument("-v", "--verbose", action="store_true", help="each image's shared and unique size")
    p.add_argument("--format", help="a Go template per row (.Type .TotalCount .Active .Size "
                   ".Reclaimable), `table ...`, or json")

    p = verb("compose", "compose:cmd_compose", "run compose projects (isobox compose --help)",
             add_help=False, prefix_chars="+")
    p.add_argument("compose_args", nargs=argparse.REMAINDER)
    p.set_defaults(no_engine=True)
    p = verb("completion", "completion:cmd_completion",
             "a shell script completing isobox's verbs, flags and names")
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(no_engine=True)
    p = verb("version", "system:cmd_version", "the versions of isobox and of its engine")
    p.add_argument("-f", "--format", help="a Go template over {Client, Server}")
    p = verb("events", "events:cmd_events", "what changes, as it happens (docker events)")
    p.add_argument("--since", help="from this time: Unix seconds, RFC 3339 or a duration (10m)")
    p.add_argument("--until", help="up to this time (then the stream ends)")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                   help="container, event, image, label, network, type, volume")
    p.add_argument("--format", help="a Go template per event, or json")
    p = verb("info", "system:cmd_info", "the engine's containers, images and host")
    p.add_argument("-f", "--format", help="a Go template over the info document")
    system = verb("system", None, "what isobox left on this host, info, df")
    ssub = system.add_subparsers(metavar="COMMAND")
    p = ssub.add_parser("check", help="list what isobox left on this host; exit 1 if any")
    p.set_defaults(func="system:cmd_system_check", no_engine=True)
    p.add_argument("--save", metavar="FILE", help="write the current state to FILE")
    p.add_argument("--baseline", metavar="FILE", help="report only what is new since FILE")
    p.add_argument("--json", action="store_true", help="the items as a JSON list")
    p.add_argument("--prune", action="store_true",
                   help="remove what runs that died left, then list what stays")
    p = ssub.add_parser("info", help="the engine's containers, images and host (Docker's info)")
    p.set_defaults(func="system:cmd_info")
    p.add_argument("-f", "--format", help="a Go template over the info document")
    p = ssub.add_parser("df", help="disk used by images, layers, containers and the build cache")
    p.set_defaults(func="system:cmd_df")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="each image's shared and unique size")
    p.add_argument("--format", help="a Go template per row (.Type .TotalCount .Active .Size "
                   ".Reclaimable), `table ...`, or json")
    p = ssub.add_parser("prune", help="Docker's: remove stopped containers, unused networks, "
                        "dangling images and the build cache")
    p.set_defaults(func="system:cmd_system_prune", no_engine=True)
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.add_argument("-a", "--all", action="store_true", help="every unused image too")
    p.add_argument("--volumes", action="store_true", help="unused volumes too")
    p.add_argument("--filter", action="append", metavar="label=K[=V]",
                   help="only objects so labelled")
    image = verb("image", None, "manage images")
    isub = image.add_subparsers(metavar="COMMAND")
    p = isub.add_parser("inspect")
    p.set_defaults(func="images:cmd_image_inspect")
    _inspect_flags(p)
    p.add_argument("images", nargs="+")
    p = isub.add_parser("ls", help="list images")
    p.set_defaults(func="images:cmd_images")
    _images_flags(p)
    p = isub.add_parser("rm")
    p.set_defaults(func="images:cmd_rmi")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    isub.add_parser("prune").set_defaults(func="images:cmd_prune")
    p = isub.add_parser("history", help="the layers an image was made of, newest first")
    p.set_defaults(func="images:cmd_image_history")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("image")

    network = verb("network", None, "manage networks")
    nsub = network.add_subparsers(metavar="COMMAND")
    p = nsub.add_parser("create")
    p.set_defaults(func="networks:cmd_network_create")
    p.add_argument("-d", "--driver", default="bridge", help="bridge (the only one)")
    p.add_argument("--attachable", action="store_true", help="accepted (a bridge always is)")
    p.add_argument("--subnet")
    p.add_argument("--gateway", help="the gateway's address (with --subnet)")
    p.add_argument("--internal", action="store_true", help="no route out of the network")
    p.add_argument("-l", "--label", action="append")
    p.add_argument("name")
    p = nsub.add_parser("connect", help="attach a running container to a network")
    p.set_defaults(func="networks:cmd_network_connect")
    p.add_argument("--alias", action="append", help="another name there")
    p.add_argument("--ip", help="its IPv4 address there (a user-defined subnet's)")
    p.add_argument("network")
    p.add_argument("container")
    p = nsub.add_parser("disconnect", help="detach a container from a network")
    p.set_defaults(func="networks:cmd_network_disconnect")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")
    p = nsub.add_parser("ls", help="list networks")
    p.set_defaults(func="networks:cmd_network_ls")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                   help="name, id, driver, label, type (builtin or custom)")
    p.add_argument("--format", help="a Go template per network, `table ...`, or json")
    p.add_argument("--no-trunc", action="store_true", help="full ids")
    p = nsub.add_parser("prune", help="remove the networks no container is on")
    p.set_defaults(func="networks:cmd_network_prune")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p = nsub.add_parser("inspect")
    p.set_defaults(func="networks:cmd_network_inspect")
    _inspect_flags(p)
    p.add_argument("names", nargs="+")
    p = nsub.add_parser("rm")
    p.set_defaults(func="networks:cmd_network_rm")
    p.add_argument("names", nargs="+")

    volume = verb("volume", None, "manage volumes")
    vsub = volume.add_subparsers(metavar="COMMAND")
    p = vsub.add_parser("create")
    p.set_defaults(func="volumes:cmd_volume_create")
    p.add_argument("-d", "--driver", default="local", help="local (the only one)")
    p.add_argument("name", nargs="?", help="default: a random one")
    p = vsub.add_parser("ls", help="list volumes")
    p.set_defaults(func="volumes:cmd_volume_ls")
    p.add_argument("-q", "--quiet", action="store_true", help="only names")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE", help="name, driver")
    p.add_argument("--format", help="a Go template per volume, `table ...`, or json")
    p = vsub.add_parser("prune", help="remove the volumes no container mounts")
    p.set_defaults(func="volumes:cmd_volume_prune")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.add_argument("-a", "--all", action="store_true", help="named ones too (all are)")
    p = vsub.add_parser("inspect")
    p.set_defaults(func="volumes:cmd_volume_inspect")
    _inspect_flags(p)
    p.add_argument("names", nargs="+")
    p = vsub.add_parser("rm")
    p.set_defaults(func="volumes:cmd_volume_rm")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    if chosen is not None and not built:  # not a verb: the whole parser, to say so
        return parser()
    return top
