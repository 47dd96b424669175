"""Errors as dockerd sends them: a JSON `{"message": ...}` body with the status code a Docker
client acts on (404 missing, 409 conflict, 400 bad input, 500 the rest)."""

from __future__ import annotations

from pytest_isobox.engine import errors as engine_errors


class ApiError(Exception):
    """An answer other than success: `status` and a one-line `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(what: str) -> ApiError:
    return ApiError(404, what)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


_STATUS = (
    (engine_errors.ContainerNotFound, 404),
    (engine_errors.ImageNotFound, 404),
    (engine_errors.NetworkNotFound, 404),
    (engine_errors.VolumeNotFound, 404),
    (engine_errors.ConflictError, 409),
    (engine_errors.InvalidSpec, 400),
    (engine_errors.BuildError, 400),
    (engine_errors.ContainerError, 409),
)


def api_error(exc: BaseException) -> ApiError:
    """The ApiError for any exception a handler let through (unknown ones: 500)."""
    if isinstance(exc, ApiError):
        return exc
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return ApiError(status, str(exc) or kind.__name__)
    if isinstance(exc, TimeoutError):
        return ApiError(408, str(exc) or "timed out")
    return ApiError(500, f"{type(exc).__name__}: {exc}")
