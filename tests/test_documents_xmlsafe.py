"""Hostile input: every attack gives InvalidDocument (and nothing else), nothing is fetched."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from snapd_vss.documents import (
    MAX_DOCUMENT_BYTES,
    Schema,
    parse_and_validate,
    parse_backup_components,
    parse_writer_metadata,
)
from snapd_vss.documents.xmlsafe import MAX_DEPTH
from snapd_vss.errors import InvalidDocument

WM_NS = "urn:snapdvss:writer-metadata:1"
BC_NS = "urn:snapdvss:backup-components:1"
WM_OPEN = f'<WriterMetadata xmlns="{WM_NS}" version="1" writerId="w1" name="Hostile">'
WM_CLOSE = "</WriterMetadata>"
BC_OPEN = f'<BackupComponents xmlns="{BC_NS}" version="1">'
BC_CLOSE = "</BackupComponents>"
VALID_WM = WM_OPEN + WM_CLOSE
VALID_BC = BC_OPEN + BC_CLOSE


def reject_wm(xml: str | bytes) -> str:
    with pytest.raises(InvalidDocument) as caught:
        parse_writer_metadata(xml, "hostile writer")
    message = str(caught.value)
    assert "writer metadata from 'hostile writer'" in message
    return message


def reject_bc(xml: str | bytes) -> str:
    with pytest.raises(InvalidDocument) as caught:
        parse_backup_components(xml, "hostile requestor")
    message = str(caught.value)
    assert "backup components document from 'hostile requestor'" in message
    return message


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port on localhost that records whether anybody connected to it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        yield server
    finally:
        server.close()


def nobody_connected(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return True
    connection.close()
    return False


def url(server: socket.socket, name: str) -> str:
    host, port = server.getsockname()
    return f"http://{host}:{port}/{name}"


def test_the_valid_minimal_documents_pass() -> None:
    assert parse_writer_metadata(VALID_WM).name == "Hostile"
    assert parse_backup_components(VALID_BC).writers == []
    assert parse_and_validate(VALID_WM, "writer-metadata", "x").get("name") == "Hostile"
    assert parse_and_validate(VALID_BC.encode(), Schema.BACKUP_COMPONENTS, "x") is not None


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE WriterMetadata [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n"
    + WM_OPEN.replace('name="Hostile"', 'name="&lol9;"')
    + WM_CLOSE
)


def test_billion_laughs() -> None:
    message = reject_wm(BILLION_LAUGHS)
    assert "DOCTYPE" in message
    assert "lollol" not in message


def test_billion_laughs_in_a_backup_components_document() -> None:
    reject_bc(BILLION_LAUGHS.replace("WriterMetadata", "BackupComponents"))


def test_external_entity_file() -> None:
    xml = (
        '<!DOCTYPE WriterMetadata [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        + WM_OPEN.replace('name="Hostile"', 'name="&xxe;"')
        + WM_CLOSE
    )
    message = reject_wm(xml)
    assert "root:" not in message


def test_external_entity_in_element_text(listener: socket.socket) -> None:
    xml = (
        f'<!DOCTYPE BackupComponents [<!ENTITY xxe SYSTEM "{url(listener, "secret")}">]>'
        + BC_OPEN
        + '<Writer writerId="w" instanceId="i" name="n"><Component type="FILEGROUP" name="c">'
        "<BackupMetadata>&xxe;</BackupMetadata></Component></Writer>" + BC_CLOSE
    )
    reject_bc(xml)
    assert nobody_connected(listener)


def test_external_dtd(listener: socket.socket) -> None:
    xml = f'<!DOCTYPE WriterMetadata SYSTEM "{url(listener, "evil.dtd")}">' + VALID_WM
    assert "DOCTYPE" in reject_wm(xml)
    assert nobody_connected(listener)


def test_public_external_dtd(listener: socket.socket) -> None:
    xml = (
        f'<!DOCTYPE WriterMetadata PUBLIC "-//EVIL//DTD//EN" "{url(listener, "p.dtd")}">' + VALID_WM
    )
    reject_wm(xml)
    assert nobody_connected(listener)


def test_parameter_entities(listener: socket.socket) -> None:
    xml = (
        "<!DOCTYPE WriterMetadata [\n"
        f'  <!ENTITY % remote SYSTEM "{url(listener, "pe.dtd")}">\n'
        "  %remote;\n"
        "  <!ENTITY % local \"<!ENTITY inner 'x'>\">\n"
        "  %local;\n"
        "]>" + VALID_WM
    )
    reject_wm(xml)
    assert nobody_connected(listener)


def test_doctype_after_comments_pis_and_bom_is_still_found() -> None:
    xml = (
        "\ufeff<?xml version='1.0'?>\n<!-- hello -->\n  <!--x-->"
        '<!DOCTYPE x [<!ENTITY a "b">]>' + VALID_WM
    )
    assert "line 3" in reject_wm(xml)
    assert "DOCTYPE" in reject_wm(xml.encode())


def test_doctype_inside_cdata_is_just_text() -> None:
    xml = (
        BC_OPEN
        + '<Writer writerId="w" instanceId="i" name="n"><Component type="FILEGROUP" name="c">'
        "<BackupMetadata><![CDATA[<!DOCTYPE x> &amp; <b>]]></BackupMetadata>"
        "</Component></Writer>" + BC_CLOSE
    )
    document = parse_backup_components(xml)
    assert document.component("i", "", "c").backup_metadata == "<!DOCTYPE x> &amp; <b>"


def test_xinclude_is_not_processed() -> None:
    xml = (
        WM_OPEN
        + '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" '
        'parse="text"/>' + WM_CLOSE
    )
    message = reject_wm(xml)
    assert "include" in message
    assert "root:" not in message


def test_xinclude_in_metadata_text_position() -> None:
    xml = (
        BC_OPEN
        + '<Writer writerId="w" instanceId="i" name="n"><Component type="FILEGROUP" name="c">'
        '<BackupMetadata><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
        'href="/etc/passwd" parse="text"/></BackupMetadata></Component></Writer>' + BC_CLOSE
    )
    reject_bc(xml)


def test_undefined_entity() -> None:
    assert "not well-formed" in reject_wm(WM_OPEN.replace("Hostile", "&undefined;") + WM_CLOSE)


def test_predefined_entities_and_character_references_still_work() -> None:
    xml = WM_OPEN.replace("Hostile", "A &amp; B &#x263A; &lt;3") + WM_CLOSE
    assert parse_writer_metadata(xml).name == "A & B \u263a <3"


def test_oversized_document_is_refused_before_parsing() -> None:
    padding = "<!--" + "x" * MAX_DOCUMENT_BYTES + "-->"
    xml = WM_OPEN + padding + WM_CLOSE
    assert "limit of 4194304 bytes" in reject_wm(xml)
    assert "limit" in reject_wm(xml.encode())


def test_oversized_by_multibyte_characters() -> None:
    padding = "\u00e9" * (MAX_DOCUMENT_BYTES // 2)  # fewer characters than bytes
    xml = WM_OPEN + "<!--" + padding + "-->" + WM_CLOSE
    assert len(xml) <= MAX_DOCUMENT_BYTES < len(xml.encode())
    assert "limit" in reject_wm(xml)


def test_document_just_under_the_limit_is_parsed() -> None:
    overhead = len(VALID_WM) + len("<!---->")
    xml = WM_OPEN + "<!--" + "x" * (MAX_DOCUMENT_BYTES - overhead) + "-->" + WM_CLOSE
    assert len(xml.encode()) == MAX_DOCUMENT_BYTES
    assert parse_writer_metadata(xml).name == "Hostile"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 100_000])
def test_excessively_deep_nesting(depth: int) -> None:
    xml = WM_OPEN + "<Component>" * depth + "</Component>" * depth + WM_CLOSE
    reject_wm(xml)


def test_depth_limit_message() -> None:
    depth = MAX_DEPTH + 1
    xml = WM_OPEN + "<a>" * depth + "</a>" * depth + WM_CLOSE
    assert "nested more than" in reject_wm(xml)


def test_many_wide_elements_within_the_size_limit() -> None:
    xml = WM_OPEN + "<x/>" * (MAX_DOCUMENT_BYTES // 5) + WM_CLOSE
    reject_wm(xml)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe\x00\x01garbage\x80\x81",
        bytes(range(256)),
        VALID_WM.encode("utf-16"),
        VALID_WM.replace("Hostile", "Caf\u00e9").encode("latin-1"),
        b"\x00" * 64,
    ],
    ids=["garbage", "all-bytes", "utf-16", "latin-1", "nuls"],
)
def test_non_utf8_garbage(data: bytes) -> None:
    reject_wm(data)
    reject_bc(data)


def test_lone_surrogate_in_a_string() -> None:
    assert "not valid Unicode" in reject_wm(WM_OPEN.replace("Hostile", "\ud800") + WM_CLOSE)


def test_control_character_in_the_document() -> None:
    reject_wm(WM_OPEN.replace("Hostile", "a\x01b") + WM_CLOSE)


@pytest.mark.parametrize("empty", ["", b"", "   \n\t", b"\xef\xbb\xbf"])
def test_empty_document(empty: str | bytes) -> None:
    assert "empty" in reject_wm(empty) or "well-formed" in reject_wm(empty)
    reject_bc(empty)


@pytest.mark.parametrize("not_a_document", [None, 42, ["<x/>"]])
def test_not_a_string(not_a_document: object) -> None:
    reject_wm(not_a_document)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "xml",
    [
        VALID_WM.replace(WM_NS, "urn:snapdvss:writer-metadata:2"),
        VALID_WM.replace(f' xmlns="{WM_NS}"', ""),
        VALID_WM.replace(f'xmlns="{WM_NS}"', f'xmlns:w="{WM_NS}"'),
        VALID_BC,
    ],
    ids=["version-2-namespace", "no-namespace", "prefixed-root-unqualified", "other-document"],
)
def test_wrong_namespace_or_root(xml: str) -> None:
    assert "expected <WriterMetadata" in reject_wm(xml)


def test_prefixed_namespace_is_fine() -> None:
    xml = f'<w:WriterMetadata xmlns:w="{WM_NS}" version="1" writerId="w1" name="P"/>'
    assert parse_writer_metadata(xml).name == "P"


def test_children_in_the_wrong_namespace() -> None:
    xml = WM_OPEN + '<RestoreMethod xmlns="urn:other"/>' + WM_CLOSE
    reject_wm(xml)


@pytest.mark.parametrize(
    "xml",
    [
        '<?xml-stylesheet href="http://evil/x.xsl"?>' + VALID_WM,
        WM_OPEN + "<?evil instructions?>" + WM_CLOSE,
        VALID_WM + "<?after the root?>",
    ],
)
def test_processing_instructions_are_rejected(xml: str) -> None:
    assert "processing instructions" in reject_wm(xml)


def test_comments_are_ignored() -> None:
    assert parse_writer_metadata("<!-- c -->" + WM_OPEN + "<!-- c -->" + WM_CLOSE).name


@pytest.mark.parametrize(
    "xml",
    [
        "<WriterMetadata",
        WM_OPEN,
        VALID_WM + VALID_WM,
        VALID_WM + "trailing",
        "plain text",
        "<!-- only a comment -->",
    ],
)
def test_malformed(xml: str) -> None:
    reject_wm(xml)


def test_unknown_schema_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_and_validate(VALID_WM, "no-such-schema", "x")


def test_schemas_are_shipped_as_package_data() -> None:
    schemas = Path(__file__).parent.parent / "snapd_vss" / "documents" / "schemas"
    assert {p.name for p in schemas.glob("*.xsd")} >= {
        "writer-metadata.xsd",
        "backup-components.xsd",
    }


Parse = Callable[[str], object]


@pytest.mark.parametrize("parse", [parse_writer_metadata, parse_backup_components])
def test_both_parsers_refuse_doctype(parse: Parse) -> None:
    with pytest.raises(InvalidDocument):
        parse("<!DOCTYPE x>" + VALID_WM)


def test_the_parser_below_the_doctype_check_neither_fetches_nor_expands(
    listener: socket.socket,
) -> None:
    """Defence in depth: even if a DOCTYPE got past the prolog check, libxml2 is tamed."""
    from lxml import etree

    from snapd_vss.documents.xmlsafe import _hardened_parser

    xml = (
        f'<!DOCTYPE r SYSTEM "{url(listener, "ext.dtd")}" [\n'
        f'  <!ENTITY % remote SYSTEM "{url(listener, "pe.dtd")}">\n'
        "  %remote;\n"
        '  <!ENTITY file SYSTEM "file:///etc/passwd">\n'
        '  <!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
        "]><r>&file;&lol2;</r>"
    )
    try:
        root = etree.fromstring(xml.encode(), _hardened_parser())
    except etree.XMLSyntaxError:
        pass
    else:
        text = etree.tostring(root, encoding="unicode")
        assert "root:" not in text
        assert "lollol" not in text
    assert nobody_connected(listener)


def test_comments_and_cdata_inside_metadata_text_keep_all_the_text() -> None:
    xml = (
        BC_OPEN
        + '<Writer writerId="w" instanceId="i" name="n"><Component type="FILEGROUP" name="c">'
        "<BackupMetadata>a<!--x-->b<![CDATA[c]]>d</BackupMetadata></Component></Writer>" + BC_CLOSE
    )
    assert parse_backup_components(xml).component("i", "", "c").backup_metadata == "abcd"


def test_declared_encoding_is_ignored_documents_are_always_utf8() -> None:
    xml = '<?xml version="1.0" encoding="ISO-8859-1"?>' + WM_OPEN.replace("Hostile", "Caf\u00e9")
    assert parse_writer_metadata((xml + WM_CLOSE).encode()).name == "Caf\u00e9"
