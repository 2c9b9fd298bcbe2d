"""Python SDK of ai2in, the self-hostable sandbox platform.

Create a sandbox, run code and commands in it, move files, and destroy it::

    from ai2in import Sandbox

    with Sandbox.create() as sbx:
        execution = sbx.run_code("import math; math.pi")
        print(execution.text)                      # 3.141592653589793
        print(sbx.commands.run("ls /").stdout)

The node and key come from ``AI2IN_BASE_URL`` (default ``http://127.0.0.1:4747``) and
``AI2IN_API_KEY``, or from the ``base_url``/``api_key`` arguments. ``AsyncSandbox`` is the
asyncio twin of ``Sandbox``; ``Sandbox.create(desktop=True)`` gives a graphical desktop,
driven through ``sbx.desktop`` (screenshots, mouse, keyboard, windows). ``Client`` manages
images (``client.images.pull``), volumes (``client.volumes.create``), hosted services
(``client.services.deploy``), managed databases (``client.databases.create``), API keys and
the cluster's nodes (``client.nodes.list``).
Errors are in :mod:`ai2in.errors`.
"""

from ._version import __version__
from .async_sandbox import (
    AsyncCommandHandle,
    AsyncCommands,
    AsyncDesktop,
    AsyncFiles,
    AsyncPty,
    AsyncPtyHandle,
    AsyncSandbox,
    AsyncWatchHandle,
    SandboxStarting,
)
from .client import (
    AsyncClient,
    AsyncDatabases,
    AsyncImages,
    AsyncKeys,
    AsyncNodes,
    AsyncServices,
    AsyncVolumes,
    Client,
    Databases,
    Images,
    Keys,
    Nodes,
    Services,
    Volumes,
)
from .errors import (
    Ai2inConnectionError,
    Ai2inError,
    AlreadyExistsError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DeployFailedError,
    InsufficientStorageError,
    NodeAtCapacityError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QuotaExceededError,
    RequestTimeoutError,
    SandboxEndedError,
    SandboxPausedError,
    UnsupportedMediaTypeError,
    UpstreamError,
)
from .models import (
    CommandInfo,
    CommandLogs,
    CommandResult,
    Context,
    CreatedKey,
    DatabaseInfo,
    DatabaseResources,
    DesktopInfo,
    DesktopOptions,
    DesktopStream,
    DesktopStreamInfo,
    DoneEvent,
    EngineInfo,
    EntryInfo,
    ErrorEvent,
    Execution,
    ExecutionError,
    FsEvent,
    Image,
    ImageConfig,
    KeyInfo,
    LogLine,
    Logs,
    MouseButton,
    NodeInfo,
    NodeResources,
    Progress,
    PtyOutput,
    PullProgress,
    Resources,
    Result,
    ResultEvent,
    RunEvent,
    SandboxInfo,
    SandboxMetrics,
    ScrollDirection,
    ServiceExit,
    ServiceInfo,
    ServiceLogs,
    StderrEvent,
    StdoutEvent,
    Volume,
    VolumeMount,
    VolumeMountDict,
    Window,
    WriteInfo,
)
from .sandbox import (
    CommandHandle,
    Commands,
    Desktop,
    Files,
    Pty,
    PtyHandle,
    Sandbox,
    WatchHandle,
)
from .databases import AsyncDatabase, Database
from .services import AsyncService, Service

__all__ = [
    "__version__",
    # clients
    "Sandbox", "AsyncSandbox", "SandboxStarting", "Client", "AsyncClient",
    "Commands", "CommandHandle", "Files", "WatchHandle", "Pty", "PtyHandle", "Images", "Keys",
    "Volumes", "AsyncCommands", "AsyncCommandHandle", "AsyncFiles", "AsyncWatchHandle",
    "AsyncPty", "AsyncPtyHandle", "AsyncImages", "AsyncKeys", "AsyncVolumes",
    "Services", "AsyncServices", "Service", "AsyncService",
    "Databases", "AsyncDatabases", "Database", "AsyncDatabase",
    "Desktop", "AsyncDesktop", "Nodes", "AsyncNodes",
    # models
    "SandboxInfo", "Resources", "SandboxMetrics", "Execution", "Result", "Logs",
    "ExecutionError", "Context", "RunEvent", "StdoutEvent", "StderrEvent", "ResultEvent",
    "ErrorEvent", "DoneEvent", "CommandResult", "CommandInfo", "CommandLogs", "EntryInfo",
    "WriteInfo", "FsEvent", "PtyOutput", "KeyInfo", "CreatedKey", "Image", "ImageConfig",
    "PullProgress", "Progress", "Volume", "VolumeMount", "VolumeMountDict",
    "ServiceInfo", "ServiceExit", "LogLine", "ServiceLogs",
    "DatabaseInfo", "DatabaseResources", "EngineInfo", "NodeInfo", "NodeResources",
    "DesktopOptions", "DesktopInfo", "DesktopStream", "DesktopStreamInfo", "Window",
    "MouseButton", "ScrollDirection",
    # errors
    "Ai2inError", "Ai2inConnectionError", "RequestTimeoutError", "ApiError",
    "BadRequestError", "AuthenticationError", "PermissionDeniedError", "NotFoundError",
    "ConflictError", "SandboxPausedError", "AlreadyExistsError", "SandboxEndedError",
    "PayloadTooLargeError", "UnsupportedMediaTypeError", "QuotaExceededError", "UpstreamError",
    "NodeAtCapacityError", "InsufficientStorageError", "DeployFailedError",
]
