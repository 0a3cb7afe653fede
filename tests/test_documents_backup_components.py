"""Backup Components Document: the API.md example, the schema's rules, round trips, and
what a writer may change in the document it returns."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from snapd_vss.documents import (
    AlternateLocationMapping,
    BackupComponents,
    ComponentEntry,
    ComponentFailure,
    SnapshotEntry,
    WriterEntry,
    apply_writer_changes,
    parse_backup_components,
)
from snapd_vss.errors import InvalidDocument, NotFound
from snapd_vss.vocabulary import (
    BackupType,
    ComponentType,
    Context,
    FileRestoreStatus,
    RestoreTarget,
    WriterEvent,
)

NS = "urn:snapdvss:backup-components:1"
SET_ID = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
SNAP_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
WRITER_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
INSTANCE_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
OTHER_INSTANCE = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"

# The example of API.md, "UUID" and "..." filled in.
API_EXAMPLE = f"""\
<BackupComponents xmlns="urn:snapdvss:backup-components:1" version="1"
    backupType="FULL" selectComponents="true" bootableSystemState="false"
    partialFileSupport="false" context="BACKUP" snapshotSetId="{SET_ID}"
    createdAt="2026-11-22T10:00:00Z">
  <SnapshotSet id="{SET_ID}">
    <Snapshot id="{SNAP_ID}" volume="/srv" provider="btrfs" devicePath="/srv/.snap/x"
        exposedPath="/run/snapd-vss/snapshots/{SNAP_ID}" createdAt="2026-11-22T10:00:01.250Z"
        persistent="false"/>
  </SnapshotSet>
  <Writer writerId="{WRITER_ID}" instanceId="{INSTANCE_ID}" name="Example DB">
    <Component type="DATABASE" logicalPath="clusters" name="main"
        backupSucceeded="true" backupStamp="lsn:0/3000060" previousBackupStamp=""
        selectedForRestore="false" restoreTarget="ORIGINAL" fileRestoreStatus="">
      <BackupOptions/> <RestoreOptions/>
      <BackupMetadata>opaque text the writer set in OnPrepareBackup</BackupMetadata>
      <RestoreMetadata/>
      <AlternateLocationMapping path="/srv/db/main" filespec="*" recursive="true"
          destination="/srv/db/restored"/>
      <Failure phase="PREPARE_BACKUP" message="checkpoint took longer than expected"/>
    </Component>
  </Writer>
</BackupComponents>
"""

EXPECTED = BackupComponents(
    backup_type=BackupType.FULL,
    select_components=True,
    bootable_system_state=False,
    partial_file_support=False,
    context=Context.BACKUP,
    snapshot_set_id=SET_ID,
    created_at="2026-11-22T10:00:00Z",
    snapshots=[
        SnapshotEntry(
            id=SNAP_ID,
            volume="/srv",
            provider="btrfs",
            device_path="/srv/.snap/x",
            exposed_path=f"/run/snapd-vss/snapshots/{SNAP_ID}",
            created_at="2026-11-22T10:00:01.250Z",
            persistent=False,
        )
    ],
    writers=[
        WriterEntry(
            writer_id=WRITER_ID,
            instance_id=INSTANCE_ID,
            name="Example DB",
            components=[
                ComponentEntry(
                    type=ComponentType.DATABASE,
                    logical_path="clusters",
                    name="main",
                    backup_succeeded=True,
                    backup_stamp="lsn:0/3000060",
                    backup_metadata="opaque text the writer set in OnPrepareBackup",
                    alternate_location_mappings=[
                        AlternateLocationMapping("/srv/db/main", "*", True, "/srv/db/restored")
                    ],
                    failures=[
                        ComponentFailure("PREPARE_BACKUP", "checkpoint took longer than expected")
                    ],
                )
            ],
        )
    ],
)


def parse(xml: str | bytes) -> BackupComponents:
    return parse_backup_components(xml, "backup tool")


def edited(xpath: str, attribute: str, value: str | None) -> str:
    """The API example with one attribute of the element at ``xpath`` set (None: removed)."""
    root = etree.fromstring(API_EXAMPLE.encode())
    found = root.xpath(xpath, namespaces={"b": NS})
    assert isinstance(found, list) and isinstance(found[0], etree._Element)
    element = found[0]
    if value is None:
        del element.attrib[attribute]
    else:
        element.set(attribute, value)
    return etree.tostring(root, encoding="unicode")


def rejected(xml: str | bytes, *fragments: str) -> str:
    with pytest.raises(InvalidDocument) as caught:
        parse(xml)
    message = str(caught.value)
    assert "backup components document from 'backup tool'" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ----- the API.md example -----


def test_api_example_parses_to_the_expected_tree() -> None:
    assert parse(API_EXAMPLE) == EXPECTED


def test_api_example_round_trips() -> None:
    xml = EXPECTED.to_xml()
    assert parse(xml) == EXPECTED
    assert parse(xml).to_xml() == xml


def test_minimal_document_gets_the_defaults() -> None:
    assert parse(f'<BackupComponents xmlns="{NS}" version="1"/>') == BackupComponents()


def test_fresh_session_document_without_a_snapshot_set_round_trips() -> None:
    fresh = BackupComponents(
        writers=[
            WriterEntry(
                "w",
                "i",
                "W",
                [ComponentEntry(ComponentType.FILEGROUP, "", "c")],
            )
        ]
    )
    xml = fresh.to_xml()
    assert "SnapshotSet" not in xml
    assert parse(xml) == fresh


def test_lookups() -> None:
    assert EXPECTED.writer(INSTANCE_ID) is EXPECTED.writers[0]
    assert EXPECTED.writer("nobody") is None
    component = EXPECTED.component(INSTANCE_ID, "clusters", "main")
    assert component.key == ("clusters", "main")
    assert EXPECTED.writers[0].component("clusters", "main") is component
    with pytest.raises(NotFound, match="nobody"):
        EXPECTED.component("nobody", "clusters", "main")
    with pytest.raises(NotFound, match="clusters/other"):
        EXPECTED.component(INSTANCE_ID, "clusters", "other")


def test_metadata_whitespace_and_markup_survive() -> None:
    document = copy.deepcopy(EXPECTED)
    text = "  line one\r\n\tline two <tag> & ]]> \u263a\U0001f600  \n"
    document.writers[0].components[0].backup_metadata = text
    document.writers[0].components[0].restore_options = "\n"
    parsed = parse(document.to_xml())
    assert parsed.writers[0].components[0].backup_metadata == text
    assert parsed.writers[0].components[0].restore_options == "\n"


# ----- what the schema refuses -----


@pytest.mark.parametrize(
    ("xpath", "attribute"),
    [
        ("/b:BackupComponents", "backupType"),
        ("/b:BackupComponents", "context"),
        ("//b:Component", "type"),
        ("//b:Component", "restoreTarget"),
        ("//b:Component", "fileRestoreStatus"),
        ("//b:Failure", "phase"),
    ],
)
@pytest.mark.parametrize("value", ["BOGUS", "full", " BACKUP"])
def test_every_enum_attribute_rejects_other_values(xpath: str, attribute: str, value: str) -> None:
    rejected(edited(xpath, attribute, value), attribute)


@pytest.mark.parametrize(
    ("xpath", "attribute"),
    [
        ("/b:BackupComponents", "selectComponents"),
        ("/b:BackupComponents", "bootableSystemState"),
        ("/b:BackupComponents", "partialFileSupport"),
        ("//b:Snapshot", "persistent"),
        ("//b:Component", "backupSucceeded"),
        ("//b:Component", "selectedForRestore"),
    ],
)
def test_booleans_must_be_xs_boolean(xpath: str, attribute: str) -> None:
    rejected(edited(xpath, attribute, "yes"), attribute)
    assert parse(edited(xpath, attribute, "1")) is not None


@pytest.mark.parametrize(
    ("xpath", "attribute"),
    [
        ("/b:BackupComponents", "version"),
        ("//b:SnapshotSet", "id"),
        ("//b:Snapshot", "id"),
        ("//b:Snapshot", "volume"),
        ("//b:Snapshot", "provider"),
        ("//b:Writer", "writerId"),
        ("//b:Writer", "instanceId"),
        ("//b:Writer", "name"),
        ("//b:Component", "type"),
        ("//b:Component", "name"),
        ("//b:AlternateLocationMapping", "path"),
        ("//b:AlternateLocationMapping", "destination"),
        ("//b:Failure", "phase"),
        ("//b:Failure", "message"),
    ],
)
def test_missing_required_attributes_are_rejected(xpath: str, attribute: str) -> None:
    rejected(edited(xpath, attribute, None), attribute, "required")


@pytest.mark.parametrize(
    ("xpath", "attribute", "value"),
    [
        ("/b:BackupComponents", "version", "2"),
        ("/b:BackupComponents", "createdAt", "2026-11-22 10:00:00"),
        ("/b:BackupComponents", "createdAt", "2026-11-22T10:00:00+01:00"),
        ("/b:BackupComponents", "createdAt", "yesterday"),
        ("//b:Snapshot", "createdAt", "2026-11-22T10:00:00"),
        ("//b:Snapshot", "volume", "srv"),
        ("//b:Snapshot", "provider", "Btrfs!"),
        ("//b:Snapshot", "devicePath", "dev/loop0"),
        ("//b:Snapshot", "id", "has space"),
        ("//b:Writer", "instanceId", "i" * 65),
        ("//b:Writer", "name", ""),
        ("//b:Component", "backupStamp", "s" * 4097),
        ("//b:Failure", "message", "m" * 16385),
    ],
)
def test_values_outside_the_limits_are_rejected(xpath: str, attribute: str, value: str) -> None:
    rejected(edited(xpath, attribute, value), attribute)


@pytest.mark.parametrize("xpath", ["/b:BackupComponents", "//b:Writer", "//b:Snapshot"])
def test_unknown_attributes_are_rejected(xpath: str) -> None:
    rejected(edited(xpath, "surprise", "1"), "surprise")


@pytest.mark.parametrize("marker", ["</Component>", "</Writer>", "</SnapshotSet>", "<Writer "])
def test_unknown_elements_are_rejected(marker: str) -> None:
    rejected(API_EXAMPLE.replace(marker, "<Surprise/>" + marker, 1), "Surprise")


def test_metadata_is_text_not_markup() -> None:
    xml = API_EXAMPLE.replace("opaque text", "<b>bold</b> text")
    rejected(xml, "BackupMetadata")


def test_metadata_up_to_one_mebibyte() -> None:
    limit = 1024 * 1024
    document = copy.deepcopy(EXPECTED)
    document.writers[0].components[0].backup_metadata = "m" * limit
    assert parse(document.to_xml()) == document
    rejected(API_EXAMPLE.replace("opaque text", "m" * limit), "BackupMetadata")


def test_to_xml_refuses_metadata_over_the_limit() -> None:
    document = copy.deepcopy(EXPECTED)
    document.writers[0].components[0].restore_metadata = "m" * (1024 * 1024 + 1)
    with pytest.raises(InvalidDocument, match="RestoreMetadata"):
        document.to_xml()


def test_to_xml_refuses_control_characters() -> None:
    document = copy.deepcopy(EXPECTED)
    document.writers[0].components[0].backup_metadata = "binary\x00\x01"
    with pytest.raises(InvalidDocument, match="base64"):
        document.to_xml()


def test_to_xml_refuses_snapshots_without_a_set_id() -> None:
    document = copy.deepcopy(EXPECTED)
    document.snapshot_set_id = ""
    with pytest.raises(InvalidDocument, match="id"):
        document.to_xml()


def test_snapshot_set_id_must_match() -> None:
    rejected(edited("//b:SnapshotSet", "id", "other-set"), "does not match")


def test_duplicate_snapshot_ids_are_rejected() -> None:
    snapshot = f'<Snapshot id="{SNAP_ID}" volume="/srv" provider="btrfs"/>'
    xml = API_EXAMPLE.replace("</SnapshotSet>", snapshot + "</SnapshotSet>")
    rejected(xml, "UniqueSnapshot")


def test_duplicate_writers_are_rejected() -> None:
    writer = f'<Writer writerId="w" instanceId="{INSTANCE_ID}" name="Again"/>'
    rejected(API_EXAMPLE.replace("</BackupComponents>", writer + "</BackupComponents>"))


def test_duplicate_components_are_rejected() -> None:
    duplicate = '<Component type="FILEGROUP" logicalPath="clusters" name="main"/>'
    rejected(API_EXAMPLE.replace("</Writer>", duplicate + "</Writer>"), "main")


def test_more_than_100_failures_are_rejected() -> None:
    failures = '<Failure phase="FREEZE" message="x"/>' * 100
    rejected(API_EXAMPLE.replace("<Failure ", failures + "<Failure ", 1), "Failure")


def test_writer_metadata_is_not_a_backup_components_document() -> None:
    xml = '<WriterMetadata xmlns="urn:snapdvss:writer-metadata:1" version="1"/>'
    rejected(xml, "expected <BackupComponents")


# ----- round trips -----

XML_CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\ufffe\uffff").filter(
    lambda c: c in "\t\n\r" or not (c < " " or "\x7f" <= c <= "\x9f")
) | st.sampled_from("\t\n\r<>&\"']")
NAME_CHARS = st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\ufffe\uffff")
ids = st.uuids().map(str) | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
names = st.text(NAME_CHARS, min_size=1, max_size=30)
paths = st.text(NAME_CHARS, max_size=30).map(lambda p: "/" + p)
optional_paths = st.just("") | paths
free_text = st.text(XML_CHARS, max_size=60)
timestamps = st.just("") | st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda t: t.isoformat(timespec="microseconds").replace("+00:00", "Z"))

snapshots = st.builds(
    SnapshotEntry,
    id=ids,
    volume=paths,
    provider=st.from_regex(r"\A[a-z][a-z0-9_]{0,20}\Z"),
    device_path=optional_paths,
    exposed_path=optional_paths,
    created_at=timestamps,
    persistent=st.booleans(),
)
mappings = st.builds(
    AlternateLocationMapping,
    path=paths,
    filespec=st.text(NAME_CHARS.filter(lambda c: c != "/"), min_size=1, max_size=10),
    recursive=st.booleans(),
    destination=paths,
)
failures = st.builds(
    ComponentFailure, phase=st.sampled_from([e.value for e in WriterEvent]), message=free_text
)
components = st.builds(
    ComponentEntry,
    type=st.sampled_from(ComponentType),
    logical_path=st.text(NAME_CHARS, max_size=20),
    name=names,
    backup_succeeded=st.booleans(),
    backup_stamp=free_text,
    previous_backup_stamp=free_text,
    selected_for_restore=st.booleans(),
    restore_target=st.sampled_from(RestoreTarget),
    file_restore_status=st.sampled_from(FileRestoreStatus),
    backup_options=free_text,
    restore_options=free_text,
    backup_metadata=free_text,
    restore_metadata=free_text,
    alternate_location_mappings=st.lists(mappings, max_size=2),
    failures=st.lists(failures, max_size=2),
)
writers = st.builds(
    WriterEntry,
    writer_id=ids,
    instance_id=ids,
    name=names,
    components=st.lists(components, max_size=3, unique_by=lambda c: c.key),
)
snapshot_sets: st.SearchStrategy[tuple[str, list[SnapshotEntry]]] = st.just(("", [])) | st.tuples(
    ids, st.lists(snapshots, max_size=3, unique_by=lambda s: s.id)
)


@st.composite
def backup_components(draw: st.DrawFn) -> BackupComponents:
    set_id, snapshot_list = draw(snapshot_sets)
    return BackupComponents(
        backup_type=draw(st.sampled_from(BackupType)),
        select_components=draw(st.booleans()),
        bootable_system_state=draw(st.booleans()),
        partial_file_support=draw(st.booleans()),
        context=draw(st.sampled_from(Context)),
        snapshot_set_id=set_id,
        created_at=draw(timestamps),
        snapshots=snapshot_list,
        writers=draw(st.lists(writers, max_size=3, unique_by=lambda w: w.instance_id)),
    )


@settings(deadline=None, max_examples=200)
@given(backup_components())
def test_every_valid_tree_round_trips_exactly(document: BackupComponents) -> None:
    xml = document.to_xml()
    parsed = parse_backup_components(xml)
    assert parsed == document
    assert parsed.to_xml() == xml


# ----- apply_writer_changes -----


def two_writer_document() -> BackupComponents:
    document = copy.deepcopy(EXPECTED)
    document.writers.append(
        WriterEntry(
            writer_id="2c1b0a99-8877-4665-9443-3322110fedcb",
            instance_id=OTHER_INSTANCE,
            name="Mail Store",
            components=[
                ComponentEntry(
                    ComponentType.FILEGROUP, "", "spool", backup_metadata="other's metadata"
                ),
                ComponentEntry(ComponentType.FILEGROUP, "", "index"),
            ],
        )
    )
    return document


Edit = Callable[[BackupComponents], object]


def returned_by_writer(original: BackupComponents, edit: Edit) -> str:
    changed = copy.deepcopy(original)
    edit(changed)
    return changed.to_xml()


def own(document: BackupComponents) -> ComponentEntry:
    return document.component(INSTANCE_ID, "clusters", "main")


def apply(original: BackupComponents, returned: str) -> BackupComponents:
    return apply_writer_changes(original, returned, INSTANCE_ID, "Example DB")


def test_returning_the_document_unchanged_changes_nothing() -> None:
    original = two_writer_document()
    assert apply(original, original.to_xml()) == original


def test_allowed_changes_are_kept() -> None:
    original = two_writer_document()

    def annotate(document: BackupComponents) -> None:
        component = own(document)
        component.backup_metadata = "checkpoint=0/3000128\n"
        component.restore_metadata = "needs recovery.signal"
        component.backup_stamp = "lsn:0/3000128"
        component.restore_target = RestoreTarget.ALTERNATE
        component.failures = [ComponentFailure("PREPARE_BACKUP", "slow disk")]

    result = apply(original, returned_by_writer(original, annotate))
    expected = copy.deepcopy(original)
    annotate(expected)
    assert result == expected
    assert own(original).backup_stamp == "lsn:0/3000060", "the original is not modified"
    assert result.writers[1] == original.writers[1]


def test_allowed_changes_on_a_document_without_snapshots() -> None:
    original = BackupComponents(
        writers=[
            WriterEntry("w", INSTANCE_ID, "W", [ComponentEntry(ComponentType.DATABASE, "", "db")])
        ]
    )

    def annotate(document: BackupComponents) -> None:
        document.writers[0].components[0].backup_metadata = "x"

    result = apply(original, returned_by_writer(original, annotate))
    assert result.writers[0].components[0].backup_metadata == "x"


def _set_other_metadata(d: BackupComponents) -> None:
    d.component(OTHER_INSTANCE, "", "spool").backup_metadata = "hijacked"


def _add_component(d: BackupComponents) -> None:
    d.writers[0].components.append(ComponentEntry(ComponentType.FILEGROUP, "", "extra"))


def _add_writer(d: BackupComponents) -> None:
    d.writers.append(WriterEntry("w", "new-instance", "Intruder"))


def _move_to_another_snapshot_set(d: BackupComponents) -> None:
    d.snapshot_set_id = "other"
    d.snapshots.clear()


def _set(attribute: str, value: object) -> Edit:
    def edit(d: BackupComponents) -> None:
        setattr(d, attribute, value)

    return edit


def _set_own(attribute: str, value: object) -> Edit:
    def edit(d: BackupComponents) -> None:
        setattr(own(d), attribute, value)

    return edit


FORBIDDEN: dict[str, tuple[Edit, str]] = {
    "other writer's metadata": (_set_other_metadata, "'Mail Store'"),
    "other writer's stamp": (
        lambda d: setattr(d.component(OTHER_INSTANCE, "", "index"), "backup_stamp", "s"),
        "'Mail Store'",
    ),
    "other writer removed": (lambda d: d.writers.pop(1), "removed the <Writer> element"),
    "writer added": (_add_writer, "added a <Writer>"),
    "snapshot exposed path": (
        lambda d: setattr(d.snapshots[0], "exposed_path", "/tmp/x"),
        "snapshot set",
    ),
    "snapshot removed": (lambda d: d.snapshots.clear(), "snapshot set"),
    "backupSucceeded": (_set_own("backup_succeeded", False), "backupSucceeded"),
    "previousBackupStamp": (_set_own("previous_backup_stamp", "x"), "previousBackupStamp"),
    "selectedForRestore": (_set_own("selected_for_restore", True), "selectedForRestore"),
    "fileRestoreStatus": (_set_own("file_restore_status", FileRestoreStatus.ALL), "fileRestore"),
    "BackupOptions": (_set_own("backup_options", "--fast"), "BackupOptions"),
    "RestoreOptions": (_set_own("restore_options", "x"), "RestoreOptions"),
    "component type": (_set_own("type", ComponentType.FILEGROUP), "type"),
    "alternate mappings": (
        _set_own("alternate_location_mappings", []),
        "AlternateLocationMapping",
    ),
    "component added": (_add_component, "added component 'extra'"),
    "component removed": (lambda d: d.writers[0].components.clear(), "removed component"),
    "own writer renamed": (lambda d: setattr(d.writers[0], "name", "Other"), "name"),
    "own writerId": (lambda d: setattr(d.writers[0], "writer_id", "x"), "writerId"),
    "backupType": (_set("backup_type", BackupType.COPY), "backupType"),
    "selectComponents": (_set("select_components", False), "selectComponents"),
    "bootableSystemState": (_set("bootable_system_state", True), "bootableSystemState"),
    "partialFileSupport": (_set("partial_file_support", True), "partialFileSupport"),
    "context": (_set("context", Context.APP_ROLLBACK), "context"),
    "createdAt": (_set("created_at", "2030-01-01T00:00:00Z"), "createdAt"),
    "snapshotSetId": (
        _move_to_another_snapshot_set,
        "snapshotSetId",
    ),
    "own writer removed": (lambda d: d.writers.pop(0), "removed its own <Writer> element"),
}


@pytest.mark.parametrize("change", FORBIDDEN)
def test_forbidden_changes_are_rejected(change: str) -> None:
    edit, fragment = FORBIDDEN[change]
    original = two_writer_document()
    returned = returned_by_writer(original, edit)
    with pytest.raises(InvalidDocument) as caught:
        apply(original, returned)
    message = str(caught.value)
    assert "Writer 'Example DB'" in message
    assert fragment in message, message
    assert "may change only BackupMetadata" in message


def test_a_writer_not_in_the_document_may_change_nothing() -> None:
    original = two_writer_document()
    returned = returned_by_writer(original, _set_other_metadata)
    with pytest.raises(InvalidDocument):
        apply_writer_changes(original, returned, "absent-instance", "Stranger")
    assert apply_writer_changes(original, original.to_xml(), "absent-instance", "S") == original


def test_a_writer_not_in_the_document_may_not_add_itself() -> None:
    original = copy.deepcopy(EXPECTED)
    returned = returned_by_writer(
        original, lambda d: d.writers.append(WriterEntry("w", "late", "Late"))
    )
    with pytest.raises(InvalidDocument, match="added"):
        apply_writer_changes(original, returned, "late", "Late")


def test_reordering_is_not_a_change() -> None:
    original = two_writer_document()
    returned = returned_by_writer(original, lambda d: d.writers.reverse())
    assert apply(original, returned) == original


@pytest.mark.parametrize(
    "returned",
    [
        "",
        "not xml",
        "<!DOCTYPE x [<!ENTITY a 'b'>]>" + EXPECTED.to_xml(),
        '<WriterMetadata xmlns="urn:snapdvss:writer-metadata:1" version="1"/>',
    ],
)
def test_invalid_returned_documents_are_rejected_naming_the_writer(returned: str) -> None:
    with pytest.raises(InvalidDocument, match="from 'Example DB'"):
        apply(two_writer_document(), returned)


def test_timestamps_for_created_at() -> None:
    from snapd_vss.documents.backup_components import timestamp_to_us, utc_timestamp

    assert utc_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    us = 1_795_341_600_123_456
    text = utc_timestamp(us)
    assert text == "2026-11-22T10:00:00.123456Z"
    assert timestamp_to_us(text) == us
    assert timestamp_to_us("2026-11-22T10:00:00Z") == 1_795_341_600_000_000
    assert timestamp_to_us("") == 0
    now = BackupComponents(created_at=utc_timestamp())
    assert parse(now.to_xml()) == now


def test_published_limits_match_the_schema() -> None:
    from snapd_vss.documents import backup_components as bc

    def with_component(**fields: object) -> BackupComponents:
        component = ComponentEntry(ComponentType.FILEGROUP, "", "c", **fields)  # type: ignore[arg-type]
        return BackupComponents(writers=[WriterEntry("w", "i", "W", [component])])

    message = "m" * bc.MAX_FAILURE_MESSAGE_CHARS
    with_component(failures=[ComponentFailure("FREEZE", message)]).to_xml()
    with pytest.raises(InvalidDocument):
        with_component(failures=[ComponentFailure("FREEZE", message + "m")]).to_xml()
    with_component(backup_stamp="s" * bc.MAX_STAMP_CHARS).to_xml()
    with pytest.raises(InvalidDocument):
        with_component(backup_stamp="s" * (bc.MAX_STAMP_CHARS + 1)).to_xml()
    many = [ComponentFailure("FREEZE", "x")] * bc.MAX_FAILURES_PER_COMPONENT
    with_component(failures=many).to_xml()
    with pytest.raises(InvalidDocument):
        with_component(failures=[*many, ComponentFailure("FREEZE", "x")]).to_xml()
