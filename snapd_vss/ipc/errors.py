"""The one place where domain errors become D-Bus errors, and D-Bus errors domain ones."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from dbus_fast import DBusError, Variant

from snapd_vss.errors import (
    BY_CODE,
    ERROR_PREFIX,
    VssError,
    WriterError,
    WriterLost,
    WriterVetoUnknown,
)

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# Errors the bus (not the writer) returns when the writer's connection is gone.
GONE = {
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.UnknownObject",
}


def to_dbus(error: VssError) -> DBusError:
    return DBusError(error.dbus_name, error.message)


def dbus_method_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a D-Bus method: domain errors become named errors, bugs become ``Failed``."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except VssError as exc:
            raise to_dbus(exc) from exc
        except DBusError:
            raise
        except Exception as exc:
            log.exception("internal error in %s", fn.__name__)
            raise DBusError(
                ERROR_PREFIX + "Failed",
                f"internal error in {fn.__name__} ({type(exc).__name__}); "
                "see the service's journal",
            ) from exc

    return wrapper


def writer_error_from_dbus(name: str, message: str, writer: str) -> WriterError:
    """What a writer's D-Bus error means for the coordinator."""
    if name in GONE:
        return WriterLost(f"{writer} is gone from the bus ({name}: {message})")
    if name.startswith(ERROR_PREFIX):
        cls = BY_CODE.get(name[len(ERROR_PREFIX) :])
        if cls is not None and issubclass(cls, WriterError):
            return cls(message)
    return WriterVetoUnknown(f"{writer} answered {name}: {message}")


def unwrap(options: dict[str, Any]) -> dict[str, Any]:
    """``a{sv}`` as plain Python values."""
    return {k: v.value if isinstance(v, Variant) else v for k, v in options.items()}
