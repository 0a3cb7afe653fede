"""The words of the protocol: enums whose values are exactly the strings on the wire."""

from __future__ import annotations

from enum import StrEnum


class WireEnum(StrEnum):
    """An enum whose value is its wire spelling."""

    @classmethod
    def parse(cls, value: str) -> WireEnum:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            from snapd_vss.errors import InvalidArgs

            raise InvalidArgs(
                f"{value!r} is not a valid {cls.__name__}; use one of: {allowed}"
            ) from None


class BackupType(WireEnum):
    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"
    DIFFERENTIAL = "DIFFERENTIAL"
    LOG = "LOG"
    COPY = "COPY"

    @property
    def allows_log_truncation(self) -> bool:
        return self in (BackupType.FULL, BackupType.INCREMENTAL, BackupType.LOG)


class Context(WireEnum):
    BACKUP = "BACKUP"
    FILE_SHARE_BACKUP = "FILE_SHARE_BACKUP"
    APP_ROLLBACK = "APP_ROLLBACK"
    NAS_ROLLBACK = "NAS_ROLLBACK"

    @property
    def with_writers(self) -> bool:
        return self in (Context.BACKUP, Context.APP_ROLLBACK)

    @property
    def persistent(self) -> bool:
        return self in (Context.APP_ROLLBACK, Context.NAS_ROLLBACK)


class WriterState(WireEnum):
    STABLE = "STABLE"
    WAITING_FOR_FREEZE = "WAITING_FOR_FREEZE"
    WAITING_FOR_THAW = "WAITING_FOR_THAW"
    WAITING_FOR_POST_SNAPSHOT = "WAITING_FOR_POST_SNAPSHOT"
    WAITING_FOR_BACKUP_COMPLETE = "WAITING_FOR_BACKUP_COMPLETE"
    FAILED_AT_IDENTIFY = "FAILED_AT_IDENTIFY"
    FAILED_AT_PREPARE_BACKUP = "FAILED_AT_PREPARE_BACKUP"
    FAILED_AT_PREPARE_FOR_FREEZE = "FAILED_AT_PREPARE_FOR_FREEZE"
    FAILED_AT_FREEZE = "FAILED_AT_FREEZE"
    FAILED_AT_THAW = "FAILED_AT_THAW"
    FAILED_AT_POST_SNAPSHOT = "FAILED_AT_POST_SNAPSHOT"
    FAILED_AT_BACKUP_COMPLETE = "FAILED_AT_BACKUP_COMPLETE"
    FAILED_AT_PRE_RESTORE = "FAILED_AT_PRE_RESTORE"
    FAILED_AT_POST_RESTORE = "FAILED_AT_POST_RESTORE"
    FAILED_AT_BACKUP_SHUTDOWN = "FAILED_AT_BACKUP_SHUTDOWN"

    @property
    def failed(self) -> bool:
        return self.value.startswith("FAILED_AT_")


class WriterFailure(WireEnum):
    NONE = ""
    RETRYABLE = "RETRYABLE"
    NON_RETRYABLE = "NON_RETRYABLE"
    TIMEOUT = "TIMEOUT"
    INCONSISTENT_SNAPSHOT = "INCONSISTENT_SNAPSHOT"
    OUT_OF_RESOURCES = "OUT_OF_RESOURCES"


class WriterEvent(WireEnum):
    """The writer callbacks; the value is the phase name used in documents and states."""

    IDENTIFY = "IDENTIFY"
    PREPARE_BACKUP = "PREPARE_BACKUP"
    PREPARE_FOR_FREEZE = "PREPARE_FOR_FREEZE"
    FREEZE = "FREEZE"
    THAW = "THAW"
    POST_SNAPSHOT = "POST_SNAPSHOT"
    ABORT = "ABORT"
    BACKUP_COMPLETE = "BACKUP_COMPLETE"
    BACKUP_SHUTDOWN = "BACKUP_SHUTDOWN"
    PRE_RESTORE = "PRE_RESTORE"
    POST_RESTORE = "POST_RESTORE"

    @property
    def failed_state(self) -> WriterState:
        if self is WriterEvent.ABORT:
            return WriterState.FAILED_AT_FREEZE
        return WriterState("FAILED_AT_" + self.value)


class RestoreMethod(WireEnum):
    RESTORE_IF_NOT_THERE = "RESTORE_IF_NOT_THERE"
    RESTORE_IF_CAN_REPLACE = "RESTORE_IF_CAN_REPLACE"
    STOP_RESTORE_START = "STOP_RESTORE_START"
    RESTORE_TO_ALTERNATE_LOCATION = "RESTORE_TO_ALTERNATE_LOCATION"
    RESTORE_AT_REBOOT = "RESTORE_AT_REBOOT"
    RESTORE_AT_REBOOT_IF_CANNOT_REPLACE = "RESTORE_AT_REBOOT_IF_CANNOT_REPLACE"
    CUSTOM = "CUSTOM"
    RESTORE_STOP_START = "RESTORE_STOP_START"


class WriterRestore(WireEnum):
    NEVER = "NEVER"
    IF_REPLACE_FAILS = "IF_REPLACE_FAILS"
    ALWAYS = "ALWAYS"


class Usage(WireEnum):
    BOOTABLE_SYSTEM_STATE = "BOOTABLE_SYSTEM_STATE"
    SYSTEM_SERVICE = "SYSTEM_SERVICE"
    USER_DATA = "USER_DATA"
    OTHER = "OTHER"


class Source(WireEnum):
    TRANSACTED_DB = "TRANSACTED_DB"
    NON_TRANSACTED_DB = "NON_TRANSACTED_DB"
    OTHER = "OTHER"


class ApplicationLevel(WireEnum):
    SYSTEM = "SYSTEM"
    BACK_END = "BACK_END"
    FRONT_END = "FRONT_END"


class ComponentType(WireEnum):
    DATABASE = "DATABASE"
    FILEGROUP = "FILEGROUP"


class RestoreTarget(WireEnum):
    ORIGINAL = "ORIGINAL"
    ALTERNATE = "ALTERNATE"
    DIRECTED = "DIRECTED"
    ORIGINAL_LOCATION = "ORIGINAL_LOCATION"


class FileRestoreStatus(WireEnum):
    UNDEFINED = ""
    ALL = "ALL"
    NONE = "NONE"
    FAILED = "FAILED"


class SessionState(WireEnum):
    """A backup session's progress; each value is also a ``PhaseChanged`` phase."""

    CREATED = "CREATED"
    METADATA_GATHERED = "METADATA_GATHERED"
    SNAPSHOT_SET_STARTED = "SNAPSHOT_SET_STARTED"
    PREPARED = "PREPARED"
    SNAPSHOTTING = "SNAPSHOTTING"
    SNAPSHOT_CREATED = "SNAPSHOT_CREATED"
    BACKUP_COMPLETED = "BACKUP_COMPLETED"
    ABORTED = "ABORTED"
    CLOSED = "CLOSED"


class RestoreSessionState(WireEnum):
    CREATED = "CREATED"
    METADATA_GATHERED = "METADATA_GATHERED"
    PRE_RESTORED = "PRE_RESTORED"
    POST_RESTORED = "POST_RESTORED"
    CLOSED = "CLOSED"


class SnapshotState(WireEnum):
    CREATED = "CREATED"
    EXPOSED = "EXPOSED"
    INVALID = "INVALID"
    DELETED = "DELETED"


class ProviderType(WireEnum):
    SYSTEM = "SYSTEM"
    SOFTWARE = "SOFTWARE"
