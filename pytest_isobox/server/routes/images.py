"""Image endpoints: list, inspect, history, create (pull, with Docker's JSON progress),
push, prune, tag, delete, get (save), load, and build (a tar context, the classic
builder's options)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from pytest_isobox.engine import BuildStep, ImageNotFound, InvalidSpec, require
from pytest_isobox.server.context import ServerContext
from pytest_isobox.server.documents import image_inspect, image_summary
from pytest_isobox.server.errors import ApiError, api_error
from pytest_isobox.server.filters import parse_filters
from pytest_isobox.server.http import ClientGone, Request
from pytest_isobox.server.routing import Router

router = Router()
_PROGRESS_WORDS = {"exists": "Already exists", "mounted": "Mounted from", "waiting": "Waiting",
                   "download": "Downloading", "done": "Pull complete"}


def _image(ctx: ServerContext, name: str):
    try:
        return ctx.call(ctx.engine.image_inspect, name)
    except ImageNotFound:
        raise ApiError(404, f"No such image: {name}") from None


@router.add("GET", "/images/json")
def list_images(ctx: ServerContext, req: Request) -> None:
    filters = parse_filters(req.arg("filters"))
    references = filters.get("reference", []) + ([req.arg("filter")] if req.arg("filter")
                                                   else [])
    entries = []
    for image in ctx.call(ctx.engine.images):
        if references and not any(_ref_matches(t, r) for t in image.tags for r in references):
            continue
        summary = image_summary(image)
        if not _labels_match(summary["Labels"], filters.get("label", [])):
            continue
        if filters.get("dangling") == ["true"] and image.tags:
            continue
        entries.append(summary)
    req.reply_json(200, entries)


def _ref_matches(tag: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatch(tag, pattern) or fnmatch.fnmatch(tag, f"{pattern}:*") \
        or tag.removeprefix("docker.io/library/") == pattern


def _labels_match(labels: dict, wanted: list[str]) -> bool:
    for want in wanted:
        name, sep, value = want.partition("=")
        if name not in labels or (sep and labels[name] != value):
            return False
    return True


@router.add("GET", "/images/{name*}/json")
def inspect(ctx: ServerContext, req: Request, name: str) -> None:
    req.reply_json(200, image_inspect(_image(ctx, name)))


@router.add("GET", "/images/{name*}/history")
def history(ctx: ServerContext, req: Request, name: str) -> None:
    image = _image(ctx, name)
    entries = []
    for item in reversed(image.config.get("history") or []):
        entries.append({"Id": "<missing>", "Created": 0, "CreatedBy": item.get("created_by", ""),
                        "Tags": None, "Size": 0, "Comment": item.get("comment", "")})
    if entries:
        entries[0]["Id"], entries[0]["Tags"] = image.id, list(image.tags)
    req.reply_json(200, entries)


@router.add("POST", "/images/create")
def create(ctx: ServerContext, req: Request) -> None:
    """Pull `fromImage[:tag]` through the engine, as Docker's progress stream."""
    name = req.arg("fromImage")
    if req.arg("fromSrc"):
        raise ApiError(501, "importing an image from a tarball (fromSrc) is not supported")
    if not name:
        raise ApiError(400, "fromImage is required")
    tag = req.arg("tag")
    ref = f"{name}@{tag}" if tag and tag.startswith("sha256:") else \
        f"{name}:{tag}" if tag and ":" not in name.rsplit("/", 1)[-1] else name
    pull = getattr(ctx.engine, "pull", None)
    out = req.stream()

    def progress(event: str, digest: str, done: int, total: int) -> None:
        short = digest.removeprefix("sha256:")[:12]
        detail = {"current": done, "total": total} if event == "download" else {}
        with contextlib.suppress(ClientGone):
            out.write_json({"status": _PROGRESS_WORDS.get(event, event), "id": short,
                            "progressDetail": detail})

    out.write_json({"status": f"Pulling from {name}", "id": tag or "latest"})
    try:
        if pull is None:
            image_id = ctx.call(ctx.engine.image_inspect, ref).id
        else:
            image_id = pull(ref, progress)
    except Exception as exc:  # noqa: BLE001 - the stream has begun: the error goes down it
        message = api_error(exc).message
        out.write_json({"errorDetail": {"message": message}, "error": message})
        out.close()
        return
    out.write_json({"status": f"Digest: {image_id}"})
    out.write_json({"status": f"Status: Downloaded newer image for {ref}"})
    out.close()


@router.add("POST", "/images/{name*}/tag")
def tag(ctx: ServerContext, req: Request, name: str) -> None:
    repo = req.arg("repo")
    if not repo:
        raise ApiError(400, "repo is required")
    new_ref = f"{repo}:{req.arg('tag')}" if req.arg("tag") else repo
    _image(ctx, name)
    ctx.call(ctx.engine.tag, name, new_ref)
    req.reply_empty(201)


@router.add("DELETE", "/images/{name*}")
def remove(ctx: ServerContext, req: Request, name: str) -> None:
    image = _image(ctx, name)
    ctx.call(ctx.engine.remove_image, name, force=req.flag("force"))
    still = None
    with contextlib.suppress(ImageNotFound):
        still = ctx.call(ctx.engine.image_inspect, image.id)
    report: list[dict] = [{"Untagged": t} for t in image.tags
                          if still is None or t not in still.tags]
    if still is None:
        report.append({"Deleted": image.id})
    req.reply_json(200, report)


@router.add("POST", "/images/{name*}/push")
def push(ctx: ServerContext, req: Request, name: str) -> None:
    """Push `name:tag` to its registry through the engine, as Docker's progress stream
    (the last message's `aux` holds Tag, Digest and Size, as docker-py and the CLI read)."""
    tag = req.arg("tag") or ""
    ref = f"{name}:{tag}" if tag else name
    if tag == "" and ":" not in name.rsplit("/", 1)[-1]:
        ref = f"{name}:latest"
    _image(ctx, ref)
    store = getattr(ctx.engine, "images_store", None)
    pusher = store.push if store is not None else getattr(ctx.engine, "push", None)
    if pusher is None:
        raise ApiError(501, f"pushing images is not supported by the {ctx.engine.name} engine")
    out = req.stream()
    out.write_json({"status": f"The push refers to repository [{ref.rsplit(':', 1)[0]}]"})

    def progress(event: str, digest: str, done: int, total: int) -> None:
        short = digest.removeprefix("sha256:")[:12]
        status = {"exists": "Layer already exists", "mounted": "Mounted from",
                  "done": "Pushed", "download": "Pushing"}.get(event, event.capitalize())
        detail = {"current": done, "total": total} if event == "download" else {}
        with contextlib.suppress(ClientGone):
            out.write_json({"status": status, "id": short, "progressDetail": detail})

    try:
        digest = pusher(ref, progress)
    except Exception as exc:  # noqa: BLE001 - the stream has begun: the error goes down it
        message = api_error(exc).message
        out.write_json({"errorDetail": {"message": message}, "error": message})
        out.close()
        return
    size = _image(ctx, ref).size
    final_tag = ref.rsplit(":", 1)[1]
    out.write_json({"status": f"{final_tag}: digest: {digest} size: {size}"})
    out.write_json({"progressDetail": {}, "aux": {"Tag": final_tag, "Digest": digest,
                                                  "Size": size}})
    out.close()


@router.add("POST", "/images/prune")
def prune(ctx: ServerContext, req: Request) -> None:
    """The engine's prune (what no tag or container needs); the images that went."""
    before = {i.id: list(i.tags) for i in ctx.call(ctx.engine.images)}
    reclaimed = ctx.call(ctx.engine.prune)
    after = {i.id for i in ctx.call(ctx.engine.images)}
    deleted: list[dict] = []
    for image_id, tags in before.items():
        if image_id not in after:
            deleted += [{"Untagged": t} for t in tags] + [{"Deleted": image_id}]
    req.reply_json(200, {"ImagesDeleted": deleted or None, "SpaceReclaimed": int(reclaimed)})


def _save(ctx: ServerContext, req: Request, names: list[str]) -> None:
    require(ctx.engine, "archives", "save images")
    for name in names:
        _image(ctx, name)
    with tempfile.TemporaryDirectory(prefix="isobox-serve-") as tmp:
        path = Path(tmp) / "images.tar"
        ctx.call(ctx.engine.save_images, names, path)
        out = req.stream(content_type="application/x-tar")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)
        out.close()


@router.add("GET", "/images/get")
def save_many(ctx: ServerContext, req: Request) -> None:
    names = req.args("names")
    if not names:
        raise ApiError(400, "names is required")
    _save(ctx, req, names)


@router.add("GET", "/images/{name*}/get")
def save_one(ctx: ServerContext, req: Request, name: str) -> None:
    _save(ctx, req, [name])


@router.add("POST", "/images/load")
def load(ctx: ServerContext, req: Request) -> None:
    require(ctx.engine, "archives", "load images")
    with tempfile.TemporaryDirectory(prefix="isobox-serve-") as tmp:
        path = Path(tmp) / "images.tar"
        with path.open("wb") as f:
            for chunk in req.body_chunks():
                f.write(chunk)
        loaded = ctx.call(ctx.engine.load_images, path)
    out = req.stream()
    for ref in loaded:
        out.write_json({"stream": f"Loaded image: {ref}\n"})
    out.close()


@router.add("POST", "/build")
def build(ctx: ServerContext, req: Request) -> None:
    """The classic builder's API: a tar context in the body, JSON lines out; the image id
    as `{"aux": {"ID": ...}}` and `Successfully built`, which docker-py and the CLI read."""
    require(ctx.engine, "build", "build images")
    tags = [t for t in req.args("t") if t]
    buildargs = req.json_arg("buildargs", {}) or {}
    if not isinstance(buildargs, dict):
        raise ApiError(400, "buildargs must be a JSON object")
    if req.arg("remote"):
        raise ApiError(501, "remote build contexts are not supported: send the context as a tar")
    with tempfile.TemporaryDirectory(prefix="isobox-build-") as tmp:
        context = Path(tmp)
        _unpack_context(req, context)
        out = req.stream()
        quiet = req.flag("q")

        def on_step(step: BuildStep) -> None:
            if quiet:
                return
            with contextlib.suppress(ClientGone):
                out.write_json({"stream": f"Step {step.index}/{step.total} : "
                                          f"{step.instruction}\n"})
                if step.cached:
                    out.write_json({"stream": " ---> Using cache\n"})
                if step.output:
                    out.write_json({"stream": step.output if step.output.endswith("\n")
                                    else step.output + "\n"})
                if step.image_id:
                    out.write_json({"stream": f" ---> {_short(step.image_id)}\n"})
        try:
            image_id = ctx.call(
                ctx.engine.build, context, dockerfile=req.arg("dockerfile") or None,
                tag=tags[0] if tags else None,
                buildargs={str(k): str(v) for k, v in buildargs.items() if v is not None},
                target=req.arg("target") or None, no_cache=req.flag("nocache"),
                network=req.arg("networkmode") or None, on_step=on_step)
            for extra in tags[1:]:
                ctx.call(ctx.engine.tag, image_id, extra)
        except Exception as exc:  # noqa: BLE001 - mid-stream: the error goes down it
            message = api_error(exc).message
            out.write_json({"errorDetail": {"message": message}, "error": message})
            out.close()
            return
    out.write_json({"aux": {"ID": image_id}})
    out.write_json({"stream": f"Successfully built {_short(image_id)}\n"})
    for t in tags:
        out.write_json({"stream": f"Successfully tagged {t if ':' in t.rsplit('/', 1)[-1] else t + ':latest'}\n"})
    out.close()


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _unpack_context(req: Request, dest: Path) -> None:
    """The body (a tar, maybe gzip/bzip2/xz) into `dest`, nothing outside it."""
    data = b"".join(req.body_chunks())
    if not data:
        raise ApiError(400, "the build context is empty: send a tar archive as the body")
    from pytest_isobox.images.tarsafe import extract_context

    try:
        extract_context(dest, io.BytesIO(data))
    except (InvalidSpec, OSError) as exc:
        raise ApiError(400, str(exc)) from None


