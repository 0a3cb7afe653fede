"""Domain errors: one class per failure a user can act on.

Each class carries the stable suffix of its D-Bus error name
(``org.snapdvss.Vss1.Error.<code>``); its docstring is the default message. The D-Bus
layer (``snapd_vss.ipc.errors``) is the only place that turns them into D-Bus errors.
"""

from __future__ import annotations

from typing import ClassVar

ERROR_PREFIX = "org.snapdvss.Vss1.Error."


class VssError(Exception):
    """The operation failed."""

    code: ClassVar[str] = "Failed"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        super().__init__(self.message)

    @property
    def dbus_name(self) -> str:
        return ERROR_PREFIX + self.code


class Failed(VssError):
    """The operation failed; see the service's log for details."""

    code = "Failed"


class InvalidArgs(VssError):
    """An argument or option is not valid for this call."""

    code = "InvalidArgs"


class InvalidState(VssError):
    """This call is not allowed in the current state of the session; follow the backup sequence."""

    code = "InvalidState"


class InvalidDocument(VssError):
    """The XML document is malformed, too large, or does not match its schema."""

    code = "InvalidDocument"


class NotFound(VssError):
    """No such object."""

    code = "NotFound"


class AccessDenied(VssError):
    """You are not allowed to do this; run as root or as a member of the backup group."""

    code = "AccessDenied"


class SnapshotSetInProgress(VssError):
    """Another snapshot set is being created; retry when it is done."""

    code = "SnapshotSetInProgress"


class VolumeNotSupported(VssError):
    """No available provider can snapshot this volume."""

    code = "VolumeNotSupported"


class ProviderFailure(VssError):
    """The snapshot provider failed."""

    code = "ProviderFailure"


class InsufficientStorage(VssError):
    """There is not enough space to create or keep the snapshot."""

    code = "InsufficientStorage"


class Timeout(VssError):
    """The operation did not finish in time."""

    code = "Timeout"


class Cancelled(VssError):
    """The operation was cancelled."""

    code = "Cancelled"


class WriterError(VssError):
    """A writer vetoed the operation."""

    code = "WriterNonRetryable"


class WriterRetryable(WriterError):
    """The writer failed for a transient reason; retry the backup later."""

    code = "WriterRetryable"


class WriterNonRetryable(WriterError):
    """The writer failed and a retry will not help; check the writer's own logs."""

    code = "WriterNonRetryable"


class WriterTimeout(WriterError):
    """The writer did not answer in time."""

    code = "WriterTimeout"


class WriterInconsistentSnapshot(WriterError):
    """The writer found the snapshot inconsistent; add all of its volumes to the set."""

    code = "WriterInconsistentSnapshot"


class WriterOutOfResources(WriterError):
    """The writer ran out of resources (memory, disk); free some and retry."""

    code = "WriterOutOfResources"


ALL_ERRORS: tuple[type[VssError], ...] = (
    Failed,
    InvalidArgs,
    InvalidState,
    InvalidDocument,
    NotFound,
    AccessDenied,
    SnapshotSetInProgress,
    VolumeNotSupported,
    ProviderFailure,
    InsufficientStorage,
    Timeout,
    Cancelled,
    WriterRetryable,
    WriterNonRetryable,
    WriterTimeout,
    WriterInconsistentSnapshot,
    WriterOutOfResources,
)

BY_CODE: dict[str, type[VssError]] = {cls.code: cls for cls in ALL_ERRORS}


def from_code(code: str, message: str) -> VssError:
    """Rebuild a domain error from its stable code (unknown codes become ``Failed``)."""
    return BY_CODE.get(code, Failed)(message)


class WriterLost(WriterNonRetryable):
    """The writer's process left the bus; its data cannot be vouched for."""


class WriterVetoUnknown(WriterNonRetryable):
    """The writer failed with an error that is not one of the writer error names."""
