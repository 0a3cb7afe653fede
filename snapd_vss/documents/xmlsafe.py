"""A hardened XML parser plus XSD validation for the protocol's documents.

Everything a peer sends us (writers, requestors, stored backup sets) goes through
:func:`parse_and_validate`. It accepts only UTF-8, at most :data:`MAX_DOCUMENT_BYTES`,
no DOCTYPE of any kind (so no entities, no DTDs, nothing fetched), no processing
instructions, at most :data:`MAX_DEPTH` levels of elements, and then only what the
document's XSD allows. Every failure is an :class:`~snapd_vss.errors.InvalidDocument`
whose message names the document, the line and what is wrong.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, cast

from lxml import etree

from snapd_vss.errors import InvalidDocument

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 16  # the schemas need 4; anything deeper is hostile or broken


class Schema(StrEnum):
    """The documents we know; the value is the schema file's stem."""

    WRITER_METADATA = "writer-metadata"
    BACKUP_COMPONENTS = "backup-components"

    @property
    def namespace(self) -> str:
        return f"urn:snapdvss:{self.value}:1"

    @property
    def root_name(self) -> str:
        return "WriterMetadata" if self is Schema.WRITER_METADATA else "BackupComponents"

    @property
    def file_name(self) -> str:
        return f"{self.value}.xsd"


_VALIDATION_LOCK = threading.Lock()
_NAMESPACE_IN_MESSAGE = re.compile(r"\{urn:snapdvss:[a-z-]+:1\}")
_POSITION_IN_MESSAGE = re.compile(r", line (\d+), column (\d+)$")


def _hardened_parser() -> etree.XMLParser:
    return etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=False,  # kept so that we can reject them
        remove_comments=True,
        collect_ids=False,
        attribute_defaults=False,
    )


@cache
def load_schema(schema: Schema) -> etree.XMLSchema:
    """The compiled XSD of ``schema``, read once from the package data."""
    schemas = resources.files("snapd_vss.documents").joinpath("schemas")
    data = schemas.joinpath(schema.file_name).read_bytes()
    return etree.XMLSchema(etree.fromstring(data, _hardened_parser()))


def _fail(what: str, problem: str, line: int | None = None) -> InvalidDocument:
    where = f" at line {line}" if line else ""
    return InvalidDocument(f"Invalid {what}{where}: {problem}")


def _as_bytes(xml: str | bytes, what: str) -> bytes:
    if isinstance(xml, str):
        if len(xml) > MAX_DOCUMENT_BYTES:
            raise _too_large(what, len(xml))
        try:
            data = xml.encode("utf-8")
        except UnicodeEncodeError as error:
            problem = f"it contains a character that is not valid Unicode ({error.reason})"
            raise _fail(what, problem) from None
    elif isinstance(xml, bytes):
        data = xml
    else:
        raise _fail(what, f"expected a string, got {type(xml).__name__}")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _too_large(what, len(data))
    return data


def _too_large(what: str, size: int) -> InvalidDocument:
    return _fail(
        what,
        f"the document is {size} bytes, more than the limit of {MAX_DOCUMENT_BYTES} bytes; "
        "keep opaque metadata small (store bulky data elsewhere and reference it)",
    )


def _decode(data: bytes, what: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        problem = f"the document is not UTF-8 text (byte {error.start}); send UTF-8"
        raise _fail(what, problem, line) from None
    if not text.strip():
        raise _fail(what, "the document is empty")
    return text


def _reject_doctype(text: str, what: str) -> None:
    """Refuse any ``<!...>`` declaration in the prolog before libxml2 ever reads it."""
    i = 1 if text.startswith("\ufeff") else 0
    n = len(text)
    while i < n:
        if text[i] in " \t\r\n":
            i += 1
        elif text.startswith("<!--", i):
            end = text.find("-->", i + 4)
            if end < 0:
                return  # the parser reports the broken comment
            i = end + 3
        elif text.startswith("<?", i):
            end = text.find("?>", i + 2)
            if end < 0:
                return
            i = end + 2
        elif text.startswith("<!", i):
            raise _fail(
                what,
                "a DOCTYPE or other declaration is not allowed (no DTDs, no entities); remove it",
                text.count("\n", 0, i) + 1,
            )
        else:
            return


def _syntax_error(error: etree.XMLSyntaxError, what: str) -> InvalidDocument:
    message = str(error.msg or error)
    position = _POSITION_IN_MESSAGE.search(message)
    if position:
        message = message[: position.start()]
    line = error.lineno if error.lineno else None
    return _fail(what, f"the document is not well-formed XML: {message}", line)


def _parse(data: bytes, what: str) -> etree._Element:
    try:
        root = etree.fromstring(data, _hardened_parser())
    except etree.XMLSyntaxError as error:
        raise _syntax_error(error, what) from None
    if root is None:  # pragma: no cover - lxml raises for empty documents
        raise _fail(what, "the document is empty")
    return root


def _check_structure(root: etree._Element, what: str) -> None:
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise _fail(what, "a DOCTYPE is not allowed; remove it")
    pis = root.xpath("//processing-instruction()")
    if isinstance(pis, list) and pis:
        first = pis[0]
        line = line_of(first) if isinstance(first, etree._Element) else None
        raise _fail(what, "processing instructions (<?...?>) are not allowed; remove them", line)
    too_deep = "/*" * (MAX_DEPTH + 1)
    if root.xpath(f"boolean({too_deep})"):
        raise _fail(what, f"elements are nested more than {MAX_DEPTH} levels deep")


def _check_root(root: etree._Element, schema: Schema, what: str) -> None:
    expected = f"{{{schema.namespace}}}{schema.root_name}"
    if root.tag == expected:
        return
    qname = etree.QName(root)
    got = (
        f"<{qname.localname}> in namespace {qname.namespace!r}"
        if qname.namespace
        else f"<{qname.localname}> without a namespace"
    )
    raise _fail(
        what,
        f'expected <{schema.root_name} xmlns="{schema.namespace}"> as the document element, '
        f"got {got}",
        line_of(root),
    )


def _schema_errors(schema: Schema, root: etree._Element, what: str) -> InvalidDocument | None:
    compiled = load_schema(schema)
    with _VALIDATION_LOCK:
        if compiled.validate(root):
            return None
        errors = list(cast(Iterable[etree._LogEntry], compiled.error_log))
    if not errors:  # pragma: no cover - libxml2 always logs why
        return _fail(what, f"it does not match {schema.file_name}")
    first = errors[0]
    problem = _NAMESPACE_IN_MESSAGE.sub("", first.message).rstrip(".")
    more = len(errors) - 1
    if more:
        problem += f" (and {more} more problem{'s' if more > 1 else ''})"
    return _fail(
        what,
        f"{problem}; the document must match {schema.file_name} (see API.md)",
        first.line or None,
    )


def parse_and_validate(xml: str | bytes, schema: Schema | str, what: str) -> etree._Element:
    """Parse ``xml`` safely and validate it against ``schema``; return the root element.

    ``what`` names the document in error messages, e.g. ``"writer metadata from
    'Example DB'"``. Raises :class:`InvalidDocument` for every kind of failure.
    """
    schema = Schema(schema)
    data = _as_bytes(xml, what)
    text = _decode(data, what)
    _reject_doctype(text, what)
    root = _parse(data, what)
    _check_structure(root, what)
    _check_root(root, schema, what)
    error = _schema_errors(schema, root, what)
    if error is not None:
        raise error
    return root


def invalid(what: str, problem: str, element: etree._Element | None = None) -> InvalidDocument:
    """An :class:`InvalidDocument` for a rule the XSD cannot express, at ``element``'s line."""
    return _fail(what, problem, line_of(element) if element is not None else None)


def line_of(element: etree._Element) -> int | None:
    """The element's line in the parsed text, if known."""
    line: object = element.sourceline
    return line if isinstance(line, int) and line > 0 else None
