"""The service's configuration file and the paths systemd hands it.

The file is TOML (default ``/etc/snapd-vss/snapd-vss.toml``; a missing file means all
defaults)::

    [timeouts]
    freeze_window_s = 60      # first OnFreeze -> last OnThaw, at most
    commit_window_s = 10      # filesystems frozen, at most
    writer_call_s = 30        # any other writer event, per call
    identify_s = 10           # OnIdentify, per call

    [access]
    backup_group = ""         # members may run sessions like root; "" = root only

    [providers]
    enabled = ["btrfs", "lvm_thin", "diff_area"]

    [limits]
    max_writer_calls_in_flight = 64
    max_document_bytes = 4194304

    [lvm_thin]
    data_threshold_percent = 80.0      # refuse to snapshot when a thin pool's data
    metadata_threshold_percent = 80.0  # or metadata usage is above these
    coordinator_freeze = "auto"        # hold a set's filesystems frozen across the lvcreates:
                                       # "auto" = on Linux >= 6.8, true = always, false = never

Unknown sections or keys and values of the wrong type are errors
(:class:`~snapd_vss.errors.InvalidArgs` naming the file and the key), not ignored.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapd_vss.errors import InvalidArgs
from snapd_vss.providers.lvm.freezing import CoordinatorFreeze

DEFAULT_CONFIG_PATH = Path("/etc/snapd-vss/snapd-vss.toml")
DEFAULT_STATE_DIR = Path("/var/lib/snapd-vss")
DEFAULT_RUNTIME_DIR = Path("/run/snapd-vss")
KNOWN_PROVIDERS = ("btrfs", "lvm_thin", "diff_area")


@dataclass(frozen=True)
class Timeouts:
    freeze_window_s: float = 60.0
    commit_window_s: float = 10.0
    writer_call_s: float = 30.0
    identify_s: float = 10.0


@dataclass(frozen=True)
class Access:
    backup_group: str = ""


@dataclass(frozen=True)
class Providers:
    enabled: tuple[str, ...] = KNOWN_PROVIDERS


@dataclass(frozen=True)
class Limits:
    max_writer_calls_in_flight: int = 64
    max_document_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class LvmThin:
    data_threshold_percent: float = 80.0
    metadata_threshold_percent: float = 80.0
    coordinator_freeze: CoordinatorFreeze = CoordinatorFreeze.AUTO


@dataclass(frozen=True)
class Config:
    timeouts: Timeouts = field(default_factory=Timeouts)
    access: Access = field(default_factory=Access)
    providers: Providers = field(default_factory=Providers)
    limits: Limits = field(default_factory=Limits)
    lvm_thin: LvmThin = field(default_factory=LvmThin)

    def provider_options(self) -> dict[str, dict[str, Any]]:
        """Keyword arguments for each provider's constructor, by provider name."""
        lvm = self.lvm_thin
        return {
            "lvm_thin": {
                "data_threshold": lvm.data_threshold_percent,
                "metadata_threshold": lvm.metadata_threshold_percent,
                "coordinator_freeze": lvm.coordinator_freeze,
            },
        }


_SECTIONS: dict[str, type[Any]] = {
    "timeouts": Timeouts,
    "access": Access,
    "providers": Providers,
    "limits": Limits,
    "lvm_thin": LvmThin,
}


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> Config:
    """Read and check the configuration file; a missing file gives the defaults."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgs(f"cannot read the configuration file {path}: {exc}") from exc
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Check TOML ``text`` (from ``source``, named in errors) and build a :class:`Config`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgs(f"{source}: not valid TOML: {exc}; fix the file's syntax") from exc
    sections: dict[str, Any] = {}
    for name, value in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise InvalidArgs(
                f"{source}: unknown section [{name}]; known sections: {', '.join(_SECTIONS)}"
            )
        if not isinstance(value, dict):
            raise InvalidArgs(f"{source}: {name} must be a table ([{name}]), not a value")
        sections[name] = _section(cls, name, value, source)
    config = Config(**sections)
    _check_consistency(config, source)
    return config


def _section(cls: type[Any], name: str, values: Mapping[str, Any], source: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise InvalidArgs(
                f"{source}: unknown key {name}.{key}; known keys in [{name}]: "
                f"{', '.join(sorted(known))}"
            )
        kwargs[key] = _typed(value, hints[key], f"{name}.{key}", source)
    return cls(**kwargs)


def _typed(value: Any, expected: Any, key: str, source: str) -> Any:
    if expected is float and _is_number(value):
        if value <= 0:
            unit = " seconds" if key.endswith("_s") else ""
            raise InvalidArgs(f"{source}: {key} must be more than 0{unit}, not {value!r}")
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise InvalidArgs(f"{source}: {key} must be a positive integer, not {value!r}")
        return value
    if expected is str and isinstance(value, str):
        return value
    if expected is bool and isinstance(value, bool):
        return value
    if expected is CoordinatorFreeze:
        mode = CoordinatorFreeze.parse(value)
        if mode is None:
            raise InvalidArgs(f'{source}: {key} must be "auto", true or false, not {value!r}')
        return mode
    is_list = isinstance(value, list)
    if expected == tuple[str, ...] and is_list and all(isinstance(v, str) for v in value):
        return tuple(value)
    wanted = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(
        expected, "a list of strings"
    )
    raise InvalidArgs(f"{source}: {key} must be {wanted}, not {type(value).__name__} {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_consistency(config: Config, source: str) -> None:
    unknown = [name for name in config.providers.enabled if name not in KNOWN_PROVIDERS]
    if unknown:
        raise InvalidArgs(
            f"{source}: providers.enabled names unknown providers {', '.join(unknown)}; "
            f"known providers: {', '.join(KNOWN_PROVIDERS)}"
        )
    for key in ("data_threshold_percent", "metadata_threshold_percent"):
        percent = getattr(config.lvm_thin, key)
        if percent > 100:
            raise InvalidArgs(
                f"{source}: lvm_thin.{key} is a percentage of the thin pool; "
                f"{percent:g} is more than 100"
            )
    timeouts = config.timeouts
    if timeouts.commit_window_s > timeouts.freeze_window_s:
        raise InvalidArgs(
            f"{source}: timeouts.commit_window_s ({timeouts.commit_window_s}) is longer than "
            f"timeouts.freeze_window_s ({timeouts.freeze_window_s}); filesystems are frozen "
            "inside the freeze window, so make the commit window the shorter one"
        )


@dataclass(frozen=True)
class Paths:
    """Where the service keeps things, from the environment systemd sets up."""

    state_dir: Path = DEFAULT_STATE_DIR
    runtime_dir: Path = DEFAULT_RUNTIME_DIR
    bus_address: str | None = None  # None: the system bus

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Paths:
        """``$STATE_DIRECTORY``, ``$RUNTIME_DIRECTORY`` (first entry if a list),
        ``$DBUS_SYSTEM_BUS_ADDRESS``; unset or empty means the default."""
        env = os.environ if env is None else env
        return cls(
            state_dir=_first_dir(env.get("STATE_DIRECTORY"), DEFAULT_STATE_DIR),
            runtime_dir=_first_dir(env.get("RUNTIME_DIRECTORY"), DEFAULT_RUNTIME_DIR),
            bus_address=env.get("DBUS_SYSTEM_BUS_ADDRESS") or None,
        )


def _first_dir(value: str | None, default: Path) -> Path:
    """systemd passes several directories separated by ':'; ours is the first."""
    first = (value or "").split(":", 1)[0]
    return Path(first) if first else default
