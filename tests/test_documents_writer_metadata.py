"""Writer Metadata Document: the API.md example, the schema's rules, exact round trips."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from snapd_vss.documents import (
    AlternateLocationMapping,
    Component,
    FileSpec,
    RestoreMethodSpec,
    WriterMetadata,
    parse_writer_metadata,
)
from snapd_vss.errors import InvalidDocument, NotFound
from snapd_vss.vocabulary import (
    ApplicationLevel,
    BackupType,
    ComponentType,
    RestoreMethod,
    Source,
    Usage,
    WriterRestore,
)

NS = "urn:snapdvss:writer-metadata:1"
WRITER_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
INSTANCE_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"

# The example of API.md, "UUID" filled in.
API_EXAMPLE = f"""\
<WriterMetadata xmlns="urn:snapdvss:writer-metadata:1" version="1"
    writerId="{WRITER_ID}" instanceId="{INSTANCE_ID}" instanceName="main" name="Example DB"
    usage="USER_DATA" source="TRANSACTED_DB" applicationLevel="FRONT_END"
    freezeTimeoutMs="60000">
  <BackupSchema>FULL INCREMENTAL DIFFERENTIAL LOG COPY</BackupSchema>
  <RestoreMethod method="RESTORE_IF_CAN_REPLACE" service="exampledb.service"
      writerRestore="ALWAYS" rebootRequired="false"/>
  <Component type="DATABASE" logicalPath="clusters" name="main" caption="Main cluster"
      selectable="true" selectableForRestore="true" restoreMetadata="false"
      notifyOnBackupComplete="true">
    <DatabaseFiles path="/srv/db/main" filespec="*.db" recursive="false"/>
    <DatabaseLogFiles path="/srv/db/main" filespec="*.wal" recursive="false"/>
  </Component>
  <Component type="FILEGROUP" logicalPath="" name="config">
    <Files path="/etc/exampledb" filespec="*" recursive="true" alternatePath=""/>
  </Component>
  <ExcludeFiles path="/srv/db/main" filespec="*.lock" recursive="false"/>
  <AlternateLocationMapping path="/srv/db/main" filespec="*" recursive="true"
      destination="/srv/db/restored"/>
</WriterMetadata>
"""

EXPECTED = WriterMetadata(
    writer_id=WRITER_ID,
    name="Example DB",
    instance_id=INSTANCE_ID,
    instance_name="main",
    usage=Usage.USER_DATA,
    source=Source.TRANSACTED_DB,
    application_level=ApplicationLevel.FRONT_END,
    freeze_timeout_ms=60000,
    backup_schema=frozenset(BackupType),
    restore_method=RestoreMethodSpec(
        method=RestoreMethod.RESTORE_IF_CAN_REPLACE,
        service="exampledb.service",
        writer_restore=WriterRestore.ALWAYS,
        reboot_required=False,
    ),
    components=[
        Component(
            type=ComponentType.DATABASE,
            logical_path="clusters",
            name="main",
            caption="Main cluster",
            selectable=True,
            selectable_for_restore=True,
            restore_metadata=False,
            notify_on_backup_complete=True,
            database_files=[FileSpec("/srv/db/main", "*.db", False)],
            database_log_files=[FileSpec("/srv/db/main", "*.wal", False)],
        ),
        Component(
            type=ComponentType.FILEGROUP,
            logical_path="",
            name="config",
            files=[FileSpec("/etc/exampledb", "*", True, "")],
        ),
    ],
    excludes=[FileSpec("/srv/db/main", "*.lock", False)],
    alternate_location_mappings=[
        AlternateLocationMapping("/srv/db/main", "*", True, "/srv/db/restored")
    ],
)


def parse(xml: str | bytes) -> WriterMetadata:
    return parse_writer_metadata(xml, "Example DB")


def edited(xpath: str, change: str, attribute: str, value: str | None = None) -> str:
    """The API example with one attribute of the first element at ``xpath`` set or removed."""
    root = etree.fromstring(API_EXAMPLE.encode())
    found = root.xpath(xpath, namespaces={"w": NS})
    assert isinstance(found, list) and isinstance(found[0], etree._Element)
    element = found[0]
    if change == "set":
        assert value is not None
        element.set(attribute, value)
    else:
        del element.attrib[attribute]
    return etree.tostring(root, encoding="unicode")


def rejected(xml: str | bytes, *fragments: str) -> InvalidDocument:
    with pytest.raises(InvalidDocument) as caught:
        parse(xml)
    message = str(caught.value)
    assert "writer metadata from 'Example DB'" in message
    for fragment in fragments:
        assert fragment in message, message
    return caught.value


# ----- the API.md example -----


def test_api_example_parses_to_the_expected_tree() -> None:
    assert parse(API_EXAMPLE) == EXPECTED


def test_api_example_round_trips() -> None:
    xml = EXPECTED.to_xml()
    assert parse(xml) == EXPECTED
    assert parse(xml).to_xml() == xml


def test_bytes_with_xml_declaration_are_accepted() -> None:
    data = b'<?xml version="1.0" encoding="UTF-8"?>\n' + API_EXAMPLE.encode()
    assert parse(data) == EXPECTED


def test_minimal_document_gets_the_documented_defaults() -> None:
    minimal = f'<WriterMetadata xmlns="{NS}" version="1" writerId="w1" name="Minimal"/>'
    assert parse(minimal) == WriterMetadata(writer_id="w1", name="Minimal")
    defaults = parse(minimal)
    assert defaults.backup_schema == frozenset(BackupType)
    assert defaults.freeze_timeout_ms == 60000
    assert defaults.instance_id == ""
    assert defaults.restore_method == RestoreMethodSpec()


def test_component_defaults() -> None:
    xml = (
        f'<WriterMetadata xmlns="{NS}" version="1" writerId="w1" name="W">'
        '<Component type="FILEGROUP" name="c"><Files path="/x"/></Component>'
        "</WriterMetadata>"
    )
    component = parse(xml).component("", "c")
    assert component == Component(
        type=ComponentType.FILEGROUP, logical_path="", name="c", files=[FileSpec("/x")]
    )
    assert component.selectable is True
    assert component.files[0].filespec == "*"


def test_empty_backup_schema_means_no_backup_types() -> None:
    metadata = WriterMetadata(writer_id="w1", name="W", backup_schema=frozenset())
    assert parse(metadata.to_xml()).backup_schema == frozenset()


def test_component_lookup_key_and_file_specs() -> None:
    main = EXPECTED.component("clusters", "main")
    assert main.key == ("clusters", "main")
    assert main.all_file_specs() == [
        FileSpec("/srv/db/main", "*.db"),
        FileSpec("/srv/db/main", "*.wal"),
    ]
    with pytest.raises(NotFound, match="no component 'clusters/other'"):
        EXPECTED.component("clusters", "other")


# ----- what the schema refuses -----

ENUM_ATTRIBUTES = [
    ("/w:WriterMetadata", "usage"),
    ("/w:WriterMetadata", "source"),
    ("/w:WriterMetadata", "applicationLevel"),
    ("//w:RestoreMethod", "method"),
    ("//w:RestoreMethod", "writerRestore"),
    ("//w:Component", "type"),
]


@pytest.mark.parametrize(("xpath", "attribute"), ENUM_ATTRIBUTES)
@pytest.mark.parametrize("value", ["BOGUS", "", "user_data", " OTHER"])
def test_every_enum_attribute_rejects_other_values(xpath: str, attribute: str, value: str) -> None:
    rejected(edited(xpath, "set", attribute, value), attribute)


@pytest.mark.parametrize(
    ("xpath", "attribute"),
    [
        ("//w:Component", "selectable"),
        ("//w:Component", "notifyOnBackupComplete"),
        ("//w:RestoreMethod", "rebootRequired"),
        ("//w:DatabaseFiles", "recursive"),
        ("//w:AlternateLocationMapping", "recursive"),
    ],
)
def test_booleans_must_be_xs_boolean(xpath: str, attribute: str) -> None:
    rejected(edited(xpath, "set", attribute, "yes"), attribute)


def test_backup_schema_rejects_unknown_backup_types() -> None:
    rejected(API_EXAMPLE.replace("FULL INCREMENTAL", "FULL HOURLY"), "HOURLY")


@pytest.mark.parametrize("version", ["2", "1.0", ""])
def test_version_must_be_1(version: str) -> None:
    rejected(edited("/w:WriterMetadata", "set", "version", version), "version")


@pytest.mark.parametrize(
    ("xpath", "attribute"),
    [
        ("/w:WriterMetadata", "version"),
        ("/w:WriterMetadata", "writerId"),
        ("/w:WriterMetadata", "name"),
        ("//w:Component", "type"),
        ("//w:Component", "name"),
        ("//w:DatabaseFiles", "path"),
        ("//w:Files", "path"),
        ("//w:ExcludeFiles", "path"),
        ("//w:AlternateLocationMapping", "path"),
        ("//w:AlternateLocationMapping", "destination"),
    ],
)
def test_missing_required_attributes_are_rejected(xpath: str, attribute: str) -> None:
    rejected(edited(xpath, "remove", attribute), attribute, "required")


@pytest.mark.parametrize(
    ("xpath", "attribute", "value"),
    [
        ("/w:WriterMetadata", "writerId", "not an id"),
        ("/w:WriterMetadata", "writerId", "x" * 65),
        ("/w:WriterMetadata", "writerId", "../etc"),
        ("/w:WriterMetadata", "instanceId", ""),
        ("/w:WriterMetadata", "name", ""),
        ("/w:WriterMetadata", "name", "n" * 257),
        ("/w:WriterMetadata", "freezeTimeoutMs", "0"),
        ("/w:WriterMetadata", "freezeTimeoutMs", "-5"),
        ("/w:WriterMetadata", "freezeTimeoutMs", "3600001"),
        ("/w:WriterMetadata", "freezeTimeoutMs", "soon"),
        ("//w:Component", "caption", "c" * 1025),
        ("//w:Component", "logicalPath", "l" * 1025),
        ("//w:DatabaseFiles", "path", "relative/path"),
        ("//w:DatabaseFiles", "path", "/" + "p" * 4096),
        ("//w:DatabaseFiles", "filespec", "sub/*.db"),
        ("//w:DatabaseFiles", "filespec", ""),
        ("//w:Files", "alternatePath", "relative"),
        ("//w:AlternateLocationMapping", "destination", "restored"),
    ],
)
def test_values_outside_the_limits_are_rejected(xpath: str, attribute: str, value: str) -> None:
    rejected(edited(xpath, "set", attribute, value), attribute)


def test_control_characters_in_names_are_rejected() -> None:
    rejected(edited("/w:WriterMetadata", "set", "name", "evil\nname"), "name")


@pytest.mark.parametrize("xpath", ["/w:WriterMetadata", "//w:Component", "//w:Files"])
def test_unknown_attributes_are_rejected(xpath: str) -> None:
    rejected(edited(xpath, "set", "surprise", "1"), "surprise")


def test_namespaced_foreign_attributes_are_rejected() -> None:
    xml = API_EXAMPLE.replace('version="1"', 'version="1" xmlns:x="urn:x" x:extra="1"', 1)
    rejected(xml, "extra")


@pytest.mark.parametrize(
    "marker",
    ["</WriterMetadata>", "</Component>", '<ExcludeFiles path="/srv/db/main"'],
)
def test_unknown_elements_are_rejected(marker: str) -> None:
    xml = API_EXAMPLE.replace(marker, "<Surprise/>" + marker, 1)
    rejected(xml, "Surprise")


def test_elements_out_of_order_are_rejected() -> None:
    xml = API_EXAMPLE.replace(
        '<ExcludeFiles path="/srv/db/main" filespec="*.lock" recursive="false"/>', ""
    ).replace("<BackupSchema>", '<ExcludeFiles path="/x"/><BackupSchema>')
    rejected(xml, "BackupSchema", "not expected")


def test_text_where_only_elements_belong_is_rejected() -> None:
    rejected(API_EXAMPLE.replace("</Component>", "stray text</Component>", 1), "Component")


@pytest.mark.parametrize("logical_path", ['logicalPath="clusters"', ""])
def test_duplicate_components_are_rejected(logical_path: str) -> None:
    duplicate = f'<Component type="FILEGROUP" {logical_path} name="c"/>'
    xml = (
        f'<WriterMetadata xmlns="{NS}" version="1" writerId="w1" name="Example DB">'
        f"{duplicate}{duplicate}</WriterMetadata>"
    )
    rejected(xml, "c")


def test_omitted_and_empty_logical_path_are_the_same_component() -> None:
    xml = (
        f'<WriterMetadata xmlns="{NS}" version="1" writerId="w1" name="Example DB">'
        '<Component type="FILEGROUP" name="c"/>'
        '<Component type="FILEGROUP" logicalPath="" name="c"/></WriterMetadata>'
    )
    rejected(xml, "'c'")


def test_more_than_1000_components_are_rejected() -> None:
    components = "".join(f'<Component type="FILEGROUP" name="c{i}"/>' for i in range(1001))
    xml = (
        f'<WriterMetadata xmlns="{NS}" version="1" writerId="w1" name="Example DB">'
        f"{components}</WriterMetadata>"
    )
    rejected(xml, "Component")


def test_a_backup_components_document_is_not_writer_metadata() -> None:
    xml = '<BackupComponents xmlns="urn:snapdvss:backup-components:1" version="1"/>'
    rejected(xml, "expected <WriterMetadata")


def test_error_message_names_the_line() -> None:
    error = rejected(edited("//w:Component", "set", "type", "BOGUS").replace(">", ">\n"))
    assert re.search(r"at line \d+", error.message)


# ----- writing -----


def test_to_xml_refuses_a_tree_the_schema_would_refuse() -> None:
    with pytest.raises(InvalidDocument, match="writerId"):
        WriterMetadata(writer_id="has spaces", name="W").to_xml()
    with pytest.raises(InvalidDocument, match="path"):
        WriterMetadata(writer_id="w", name="W", excludes=[FileSpec("relative")]).to_xml()


def test_to_xml_refuses_characters_xml_cannot_carry() -> None:
    with pytest.raises(InvalidDocument, match="control characters"):
        WriterMetadata(writer_id="w", name="bad\x00name").to_xml()


def test_to_xml_omits_an_empty_instance_id() -> None:
    xml = WriterMetadata(writer_id="w", name="W").to_xml()
    assert "instanceId" not in xml
    assert xml.startswith(f'<WriterMetadata xmlns="{NS}" version="1"')


# ----- round trips -----

NAME_CHARS = st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\ufffe\uffff")
ids = st.uuids().map(str) | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
names = st.text(NAME_CHARS, min_size=1, max_size=40)
texts = st.text(NAME_CHARS, max_size=40)
paths = st.text(NAME_CHARS, max_size=40).map(lambda p: "/" + p)
optional_paths = st.just("") | paths
filespecs = st.text(NAME_CHARS.filter(lambda c: c != "/"), min_size=1, max_size=20)

file_specs = st.builds(
    FileSpec, path=paths, filespec=filespecs, recursive=st.booleans(), alternate_path=optional_paths
)
mappings = st.builds(
    AlternateLocationMapping,
    path=paths,
    filespec=filespecs,
    recursive=st.booleans(),
    destination=paths,
)
components = st.builds(
    Component,
    type=st.sampled_from(ComponentType),
    logical_path=texts,
    name=names,
    caption=texts,
    selectable=st.booleans(),
    selectable_for_restore=st.booleans(),
    restore_metadata=st.booleans(),
    notify_on_backup_complete=st.booleans(),
    files=st.lists(file_specs, max_size=3),
    database_files=st.lists(file_specs, max_size=3),
    database_log_files=st.lists(file_specs, max_size=3),
)
restore_methods = st.builds(
    RestoreMethodSpec,
    method=st.sampled_from(RestoreMethod),
    service=texts,
    writer_restore=st.sampled_from(WriterRestore),
    reboot_required=st.booleans(),
)
writer_metadata = st.builds(
    WriterMetadata,
    writer_id=ids,
    name=names,
    instance_id=st.just("") | ids,
    instance_name=texts,
    usage=st.sampled_from(Usage),
    source=st.sampled_from(Source),
    application_level=st.sampled_from(ApplicationLevel),
    freeze_timeout_ms=st.integers(1, 3_600_000),
    backup_schema=st.frozensets(st.sampled_from(BackupType)),
    restore_method=restore_methods,
    components=st.lists(components, max_size=4, unique_by=lambda c: c.key),
    excludes=st.lists(file_specs, max_size=3),
    alternate_location_mappings=st.lists(mappings, max_size=3),
)


@settings(deadline=None, max_examples=200)
@given(writer_metadata)
def test_every_valid_tree_round_trips_exactly(metadata: WriterMetadata) -> None:
    xml = metadata.to_xml()
    parsed = parse_writer_metadata(xml)
    assert parsed == metadata
    assert parsed.to_xml() == xml
