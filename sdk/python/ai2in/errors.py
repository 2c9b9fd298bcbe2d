"""Exceptions raised by the SDK.

Every exception derives from :class:`Ai2inError`. Answers of the node with an error status
raise an :class:`ApiError` subclass chosen by the status, carrying ``.status`` and the
node's sentence as ``.message``::

    try:
        sbx.files.read("/etc/shadow-not-there")
    except ai2in.NotFoundError as e:
        print(e.status, e.message)

An error in *user code* run with ``run_code`` is not an exception: it is reported in
``Execution.error``.
"""

from __future__ import annotations

import json
from typing import Any


class Ai2inError(Exception):
    """Base of every error raised by the SDK."""


class Ai2inConnectionError(Ai2inError):
    """The node could not be reached, or the connection broke before a whole answer."""


class RequestTimeoutError(Ai2inError):
    """A call took longer than the client allowed (see each method's ``timeout``)."""


class ApiError(Ai2inError):
    """The node answered with an error status.

    Attributes:
        status: the HTTP status code.
        message: the node's sentence, verbatim.
        body: the whole JSON error body (``{"error": ..., "code"?: ..., "details"?: ...}``).
    """

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body: dict[str, Any] = body if body is not None else {"error": message}


class BadRequestError(ApiError):
    """400: the request was malformed or asked for something invalid."""


class AuthenticationError(ApiError):
    """401: no valid API key."""


class PermissionDeniedError(ApiError):
    """403: the key lacks a scope, or the sandbox's own permissions refuse the operation."""


class NotFoundError(ApiError):
    """404: no such sandbox (or file, command, context, image, volume, service, database...)
    for this key's tenant."""


class ConflictError(ApiError):
    """409: the operation conflicts with the current state, e.g. deleting an image a sandbox
    still uses or a volume a sandbox mounts (``body["code"]`` is then ``in_use``). A paused
    sandbox raises the subclass :class:`SandboxPausedError`, a name already taken
    :class:`AlreadyExistsError`."""


class SandboxPausedError(ConflictError):
    """409: the sandbox is paused; resume it first."""


class AlreadyExistsError(ConflictError):
    """409: the name is taken, e.g. the tenant already has a volume or a service of that
    name."""


class SandboxEndedError(ApiError):
    """410: the sandbox has ended (expired or destroyed)."""


class PayloadTooLargeError(ApiError):
    """413: a payload or file is over a limit (32 MiB for text files: ``files.read`` and
    ``files.write`` of a ``str``)."""


class UnsupportedMediaTypeError(ApiError):
    """415: e.g. ``files.read`` of a file that is not UTF-8 text (use ``read_bytes``)."""


class DeployFailedError(ApiError):
    """422: a service's redeploy whose new instance never became ready (its port did not
    open, or its health path did not answer, in time); the old instance keeps serving. The
    service's logs say why."""


class QuotaExceededError(ApiError):
    """429: a tenant quota is exhausted."""


class UpstreamError(ApiError):
    """502: something the node relies on failed: a registry that cannot be reached, answers
    garbage or sends content that does not match its digest, or a sandbox's agent that does
    not answer."""


class NodeAtCapacityError(ApiError):
    """503: the node has no room for another sandbox (or, for a volume, cannot make disks;
    for a database, has no free port), or it is draining and takes nothing new."""


class InsufficientStorageError(ApiError):
    """507: a disk is full: the node's own, while it makes a volume or a snapshot, or the
    sandbox's, while a file is written."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: SandboxEndedError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: DeployFailedError,
    429: QuotaExceededError,
    502: UpstreamError,
    503: NodeAtCapacityError,
    507: InsufficientStorageError,
}


def error_for(status: int, message: str, body: dict[str, Any] | None = None) -> ApiError:
    """The exception for an error ``status`` with the node's sentence ``message``."""
    cls = _BY_STATUS.get(status, ApiError)
    # The body's `code` names the kind of a 409; a node older than the field says it in
    # its sentence: "sandbox sbx_… is paused; resume it first".
    code = body.get("code") if body else None
    if status == 409 and (code == "sandbox_paused" or (code is None and " is paused" in message)):
        cls = SandboxPausedError
    elif status == 409 and code == "already_exists":
        cls = AlreadyExistsError
    return cls(status, message, body)


def error_for_status(status: int, content: bytes) -> ApiError:
    """The exception for an error answer with ``status`` and raw body ``content``."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message: str = body["error"]
    else:
        message = content.decode("utf-8", "replace").strip() or f"HTTP {status}"
        body = None
    return error_for(status, message, body)
