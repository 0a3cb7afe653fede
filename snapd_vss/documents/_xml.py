"""Small helpers to read validated elements and to build documents (package-private)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from lxml import etree

from snapd_vss.documents.xmlsafe import Schema, parse_and_validate
from snapd_vss.errors import InvalidDocument
from snapd_vss.vocabulary import WireEnum

E = TypeVar("E", bound=WireEnum)


class Reader:
    """Reads one schema's elements; only used on documents the XSD has accepted."""

    def __init__(self, schema: Schema) -> None:
        self.ns = schema.namespace

    def tag(self, local: str) -> str:
        return f"{{{self.ns}}}{local}"

    def children(self, element: etree._Element, local: str) -> Iterator[etree._Element]:
        return element.iterchildren(self.tag(local))

    def child(self, element: etree._Element, local: str) -> etree._Element | None:
        return element.find(self.tag(local))

    def text(self, element: etree._Element, local: str) -> str:
        found = self.child(element, local)
        return "" if found is None else found.text or ""


def attr(element: etree._Element, name: str, default: str = "") -> str:
    value = element.get(name)
    return default if value is None else value


def flag(element: etree._Element, name: str, default: bool) -> bool:
    value = element.get(name)
    if value is None:
        return default
    return value.strip() in ("true", "1")


def number(element: etree._Element, name: str, default: int) -> int:
    value = element.get(name)
    return default if value is None else int(value.strip())


def choice(element: etree._Element, name: str, enum: type[E], default: E) -> E:
    value = element.get(name)
    return default if value is None else enum(value)


def wire_bool(value: bool) -> str:
    return "true" if value else "false"


class Builder:
    """Builds one schema's elements."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.ns = schema.namespace

    def root(self, attrs: dict[str, str]) -> etree._Element:
        return etree.Element(
            f"{{{self.ns}}}{self.schema.root_name}", attrs, nsmap=cast(Any, {None: self.ns})
        )

    def add(
        self,
        parent: etree._Element,
        local: str,
        attrs: dict[str, str] | None = None,
        text: str | None = None,
    ) -> etree._Element:
        element = etree.SubElement(parent, f"{{{self.ns}}}{local}", attrs or {})
        if text:
            element.text = text
        return element


def finish(schema: Schema, make: Callable[[], etree._Element], what: str) -> str:
    """Run ``make`` and serialize; raise InvalidDocument if the result is not valid."""
    try:
        root = make()
        xml = etree.tostring(root, encoding="unicode", pretty_print=True)
    except ValueError as error:  # lxml refuses characters XML cannot carry
        raise InvalidDocument(
            f"Cannot write {what}: {error}; XML cannot carry control characters, "
            "encode binary metadata (e.g. base64)"
        ) from None
    parse_and_validate(xml, schema, what)
    return xml
