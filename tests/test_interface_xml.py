"""The interface XML in dbus/ agrees with the wire contract (API.md, version 1).

The table below is API.md transcribed by hand: a change to the XML that breaks the
contract fails here. The package copies under snapd_vss/ipc/interfaces/ must be
byte-identical to dbus/ (the client and the service read those).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from snapd_vss import errors
from snapd_vss.ipc.interfaces import INTERFACE_NAMES, PREFIX, interface_xml, load_interface

REPO = Path(__file__).resolve().parent.parent
DBUS_DIR = REPO / "dbus"
EMITS = "org.freedesktop.DBus.Property.EmitsChangedSignal"

Method = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]  # name, in, out

BACKUP_SESSION_PROPS = {
    "State": "s",
    "SnapshotSetId": "s",
    "BackupType": "s",
    "Context": "s",
    "Owner": "s",
    # Additions to API.md version 1 (allowed: "extend it only by adding"):
    "FreezeWindowUsec": "t",
    "CommitWindowUsec": "t",
}
COMPONENT = (("instance_id", "s"), ("logical_path", "s"), ("name", "s"))
BCD_IN = (("backup_components", "s"),)
BCD_OUT = (("backup_components", "s"),)
SET_ID = (("snapshot_set_id", "s"),)
OPTIONS = (("options", "a{sv}"),)

# interface -> (methods, properties name -> type, signals name -> ((arg, type), ...))
API: dict[str, tuple[list[Method], dict[str, str], dict[str, tuple[tuple[str, str], ...]]]] = {
    "Manager": (
        [
            ("RegisterWriter", (("writer", "o"), ("options", "a{sv}")), (("registration", "o"),)),
            ("UnregisterWriter", (("registration", "o"),), ()),
            ("CreateBackupSession", OPTIONS, (("session", "o"),)),
            (
                "CreateRestoreSession",
                (("backup_components", "s"), ("options", "a{sv}")),
                (("session", "o"),),
            ),
        ],
        {"Version": "s", "Writers": "ao", "Snapshots": "ao", "Providers": "ao", "Sessions": "ao"},
        {},
    ),
    "Writer": (
        [
            ("OnIdentify", (), (("writer_metadata", "s"),)),
            ("OnPrepareBackup", BCD_IN, BCD_OUT),
            ("OnPrepareForFreeze", (("snapshot_set_id", "s"), ("volumes", "as")), ()),
            ("OnFreeze", SET_ID, ()),
            ("OnThaw", SET_ID, ()),
            (
                "OnPostSnapshot",
                (("snapshot_set_id", "s"), ("volume_to_snapshot_path", "a{ss}")),
                (),
            ),
            ("OnAbort", SET_ID, ()),
            ("OnBackupComplete", BCD_IN, ()),
            ("OnBackupShutdown", SET_ID, ()),
            ("OnPreRestore", BCD_IN, BCD_OUT),
            ("OnPostRestore", BCD_IN, BCD_OUT),
        ],
        {},
        {},
    ),
    "RegisteredWriter": (
        [],
        {
            "WriterId": "s",
            "InstanceId": "s",
            "InstanceName": "s",
            "Name": "s",
            "Usage": "s",
            "Source": "s",
            "State": "s",
            "LastError": "s",
            "LastErrorMessage": "s",
            "Owner": "s",
            "Uid": "u",
        },
        {},
    ),
    "BackupSession": (
        [
            (
                "SetBackupState",
                (
                    ("select_components", "b"),
                    ("bootable_system_state", "b"),
                    ("backup_type", "s"),
                    ("partial_file_support", "b"),
                ),
                (),
            ),
            ("GatherWriterMetadata", (), (("writer_metadata", "a{ss}"),)),
            ("AddComponent", COMPONENT, ()),
            ("SetBackupOptions", (*COMPONENT, ("options", "s")), ()),
            ("SetPreviousBackupStamp", (*COMPONENT, ("stamp", "s")), ()),
            ("StartSnapshotSet", (), (("snapshot_set_id", "s"),)),
            ("AddToSnapshotSet", (("volume", "s"), ("provider", "s")), (("snapshot_id", "s"),)),
            ("PrepareForBackup", (), ()),
            ("DoSnapshotSet", (), ()),
            ("GatherWriterStatus", (), (("status", "a(sssss)"),)),
            ("GetSnapshotProperties", (("snapshot_id", "s"),), (("properties", "a{sv}"),)),
            ("SetBackupSucceeded", (*COMPONENT, ("succeeded", "b")), ()),
            ("BackupComplete", (), ()),
            ("SaveAsXml", (), (("backup_components", "s"),)),
            ("AbortBackup", (), ()),
            ("Close", (), ()),
        ],
        BACKUP_SESSION_PROPS,
        {"PhaseChanged": (("phase", "s"),)},
    ),
    "RestoreSession": (
        [
            ("GatherWriterMetadata", (), (("writer_metadata", "a{ss}"),)),
            ("SetSelectedForRestore", (*COMPONENT, ("selected", "b")), ()),
            ("SetRestoreOptions", (*COMPONENT, ("options", "s")), ()),
            (
                "AddAlternativeLocationMapping",
                (
                    *COMPONENT,
                    ("path", "s"),
                    ("filespec", "s"),
                    ("recursive", "b"),
                    ("destination", "s"),
                ),
                (),
            ),
            ("PreRestore", (), ()),
            ("SetFileRestoreStatus", (*COMPONENT, ("status", "s")), ()),
            ("PostRestore", (), ()),
            ("SaveAsXml", (), (("backup_components", "s"),)),
            ("Close", (), ()),
        ],
        {"State": "s", "Owner": "s"},
        {"PhaseChanged": (("phase", "s"),)},
    ),
    "Snapshot": (
        [
            ("Delete", OPTIONS, ()),
            ("Expose", (("mount_point", "s"), ("options", "a{sv}")), (("path", "s"),)),
            ("Unexpose", OPTIONS, ()),
        ],
        {
            "Id": "s",
            "SnapshotSetId": "s",
            "Volume": "s",
            "Provider": "s",
            "DevicePath": "s",
            "ExposedPath": "s",
            "CreationTime": "t",
            "Persistent": "b",
            "State": "s",
            "StateReason": "s",
        },
        {},
    ),
    "Provider": (
        [],
        {"Name": "s", "Type": "s", "Version": "s", "Available": "b", "UnavailableReason": "s"},
        {},
    ),
    # A provider-specific interface beside Provider (API.md allows them).
    "DiffArea": (
        [
            (
                "AttachVolume",
                (("image", "s"), ("diff_area_dir", "s"), ("options", "a{sv}")),
                (("device", "s"),),
            ),
            ("DetachVolume", (("image_or_name", "s"), ("options", "a{sv}")), ()),
            (
                "ResizeDiffArea",
                (("volume", "s"), ("max_bytes", "t"), ("options", "a{sv}")),
                (),
            ),
            ("ListVolumes", (), (("volumes", "aa{sv}"),)),
        ],
        {"Volumes": "as", "DefaultChunkSize": "u", "DefaultPolicy": "s"},
        {"SnapshotDropped": (("snapshot_id", "s"), ("reason", "s"))},
    ),
    # The lvm_thin provider's interface beside Provider.
    "LvmThin": (
        [("RefreshPools", (), (("pools", "a(ssddt)"),))],
        {
            "Pools": "a(ssddt)",
            "DataThresholdPercent": "d",
            "MetadataThresholdPercent": "d",
            "CoordinatorFreeze": "b",
            "CoordinatorFreezeReason": "s",
            "UnclaimedSnapshots": "as",
        },
        {},
    ),
}


def _path(name: str) -> Path:
    return DBUS_DIR / f"{PREFIX}{name}.xml"


def _parse(name: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.parse(str(_path(name)), parser).getroot()


def test_one_file_per_interface_and_nothing_else() -> None:
    on_disk = {p.name for p in DBUS_DIR.glob(f"{PREFIX}*.xml")}
    assert on_disk == {f"{PREFIX}{n}.xml" for n in INTERFACE_NAMES}
    assert set(API) == set(INTERFACE_NAMES)


@pytest.mark.parametrize("name", INTERFACE_NAMES)
def test_package_copy_is_identical(name: str) -> None:
    assert interface_xml(name) == _path(name).read_text("utf-8"), (
        f"snapd_vss/ipc/interfaces/{PREFIX}{name}.xml differs from dbus/; copy dbus/ over it"
    )


@pytest.mark.parametrize("name", INTERFACE_NAMES)
def test_well_formed_node_with_one_interface(name: str) -> None:
    root = _parse(name)
    assert root.tag == "node"
    interfaces = root.findall("interface")
    assert [i.get("name") for i in interfaces] == [PREFIX + name]
    assert len(root) - len(root.findall("interface")) == sum(
        1 for c in root if isinstance(c, etree._Comment)
    ), "only comments and the interface under <node>"


@pytest.mark.parametrize("name", INTERFACE_NAMES)
def test_members_match_api(name: str) -> None:
    methods, props, signals = API[name]
    iface = load_interface(name)
    got_methods = [
        (
            m.name,
            tuple((a.name, a.signature) for a in m.in_args),
            tuple((a.name, a.signature) for a in m.out_args),
        )
        for m in iface.methods
    ]
    assert got_methods == methods
    assert {p.name: p.signature for p in iface.properties} == props
    assert all(p.access.value == "read" for p in iface.properties)
    assert {s.name: tuple((a.name, a.signature) for a in s.args) for s in iface.signals} == signals


@pytest.mark.parametrize("name", INTERFACE_NAMES)
def test_every_member_is_documented(name: str) -> None:
    iface = _parse(name).find("interface")
    assert iface is not None
    before = iface.getprevious()
    assert isinstance(before, etree._Comment), "the interface has a doc comment"
    assert PREFIX + name in before.text
    for member in iface:
        if member.tag not in ("method", "property", "signal"):
            continue
        comment = member.getprevious()
        assert isinstance(comment, etree._Comment), f"{member.get('name')} has no doc comment"
        assert (comment.text or "").strip().startswith(member.get("name") + ":"), (
            f"the doc comment before {member.get('name')} is about something else"
        )
        for arg in member.findall("arg"):
            assert f"@{arg.get('name')}:" in comment.text, (
                f"{member.get('name')}: @{arg.get('name')}"
            )


@pytest.mark.parametrize("name", INTERFACE_NAMES)
def test_error_names_in_docs_exist(name: str) -> None:
    text = _path(name).read_text("utf-8")
    for code, star in re.findall(r"org\.snapdvss\.Vss1\.Error\.([A-Za-z]+)(\*?)", text):
        if star:
            assert any(c.startswith(code) for c in errors.BY_CODE)
        else:
            assert code in errors.BY_CODE, f"{name} documents an unknown error {code}"


@pytest.mark.parametrize("name", [n for n in INTERFACE_NAMES if API[n][1]])
def test_properties_emit_changed_signal(name: str) -> None:
    iface = load_interface(name)
    assert iface.annotations.get(EMITS) == "true"
    for prop in iface.properties:
        assert prop.annotations.get(EMITS, "true") in ("true", "const")
