"""The providers the service knows, and the choice of one per volume.

``pick(volume)`` takes the first provider, in the order of preference given at
construction, that is available and supports the volume; ``pick(volume, name)``
takes the named one or says why it cannot.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from snapd_vss.errors import InvalidArgs, NotFound, VolumeNotSupported
from snapd_vss.model import Volume
from snapd_vss.providers.base import Provider, ProviderContext

log = logging.getLogger(__name__)

# Every provider the service can build, most preferred first, as "module:Class".
# btrfs first: native, no freeze needed. lvm_thin next: needs a thin LV (a btrfs on a
# thin LV still prefers btrfs). diff_area last: works on anything, costs the most.
# To add a provider, add its line here; a module that does not exist yet is skipped
# when providers are not named explicitly.
KNOWN_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("btrfs", "snapd_vss.providers.btrfs:BtrfsProvider"),
    ("lvm_thin", "snapd_vss.providers.lvm_thin:LvmThinProvider"),
    ("diff_area", "snapd_vss.providers.diff_area.provider:DiffAreaProvider"),
)


class ProviderRegistry:
    """``ProviderRegistry(providers)``: providers in order of preference."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        self._providers: dict[str, Provider] = {}
        for provider in providers:
            if provider.name in self._providers:
                raise InvalidArgs(f"Provider {provider.name!r} is listed twice.")
            self._providers[provider.name] = provider

    def all(self) -> list[Provider]:
        return list(self._providers.values())

    def names(self) -> list[str]:
        return list(self._providers)

    def get(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(self._providers) or "none"
            raise NotFound(f"No provider named {name!r}; the providers are: {known}.") from None

    def pick(self, volume: Volume, name: str = "") -> Provider:
        """The provider for ``volume``: the named one, or "" for the best available."""
        if name:
            provider = self.get(name)
            reason = self._why_not(provider, volume)
            if reason:
                raise VolumeNotSupported(
                    f"Provider {name!r} cannot snapshot {volume.mount_point}: {reason}"
                )
            return provider
        reasons = []
        for provider in self._providers.values():
            reason = self._why_not(provider, volume)
            if not reason:
                return provider
            reasons.append(f"{provider.name}: {reason}")
        detail = "; ".join(reasons) if reasons else "no providers are enabled"
        raise VolumeNotSupported(
            f"No provider can snapshot {volume.mount_point} ({volume.fs_type} on "
            f"{volume.source}): {detail}"
        )

    @staticmethod
    def _why_not(provider: Provider, volume: Volume) -> str:
        availability = provider.availability()
        if not availability.available:
            return f"not available: {availability.reason}"
        try:
            provider.supports(volume)
        except VolumeNotSupported as e:
            return e.message
        return ""


def _load(spec: str) -> type[Provider] | None:
    """Import "module:Class"; None if the module does not exist (not written yet)."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            return None
        raise
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"{spec} is not a Provider")
    return cls


def default_providers(
    context: ProviderContext,
    enabled: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Provider]:
    """Build the known providers, in order of preference; ``enabled`` limits (and orders) them.

    ``None`` = all that are installed. An unknown or missing name in ``enabled`` is an
    ``InvalidArgs`` naming the ones there are. ``options`` maps a provider's name to
    keyword arguments for its constructor (``Config.provider_options()``).
    """
    known = dict(KNOWN_PROVIDERS)
    names = [name for name, _spec in KNOWN_PROVIDERS] if enabled is None else list(enabled)
    providers: list[Provider] = []
    for name in dict.fromkeys(names):
        spec = known.get(name)
        cls = _load(spec) if spec else None
        if cls is None:
            if enabled is None:
                log.debug("provider %s is not installed; skipping it", name)
                continue
            raise InvalidArgs(
                f"Unknown provider {name!r} in the configuration; "
                f"known providers are: {', '.join(known)}."
            )
        providers.append(_build(cls, name, context, (options or {}).get(name, {})))
    return providers


def _build(
    cls: type[Provider], name: str, context: ProviderContext, options: Mapping[str, Any]
) -> Provider:
    try:
        return cls(context, **options)
    except TypeError as exc:
        raise InvalidArgs(
            f"Provider {name!r} does not take the options {', '.join(sorted(options))}: {exc}"
        ) from None
