"""Why a backup set is refused.

Every class here is an ``InvalidDocument`` (``org.snapdvss.Vss1.Error.InvalidDocument``,
vssctl exit status 5), so callers that only know the domain errors still get a named
error; the subclasses say which check failed, for restore engines and tests.
"""

from __future__ import annotations

from snapd_vss.errors import InvalidDocument


class InvalidBackupSet(InvalidDocument):
    """The backup set is damaged or not a snapd-vss backup set; do not restore from it."""


class ManifestInvalid(InvalidBackupSet):
    """manifest.json is missing, malformed, or does not follow the backup set schema."""


class UnsafePath(InvalidBackupSet):
    """A path in the backup set is absolute, has '..', or passes through a symbolic link."""


class UnsafeLink(InvalidBackupSet):
    """A symbolic link in the backup set points outside its component."""


class ChecksumMismatch(InvalidBackupSet):
    """A file's content in the archive does not match the manifest's size or sha256."""


class UnexpectedMember(InvalidBackupSet):
    """The archive holds something the manifest does not list, or differs from it."""


class MissingMember(InvalidBackupSet):
    """The manifest lists something the archive (or the set directory) does not hold."""


class BrokenChain(InvalidBackupSet):
    """An incremental or differential set's base set is missing or is not the one recorded."""
