"""D-Bus signature aliases for method and property annotations."""

from typing import Annotated, Any

from dbus_fast.annotations import DBusSignature

Str = Annotated[str, DBusSignature("s")]
ObjPath = Annotated[str, DBusSignature("o")]
Bool = Annotated[bool, DBusSignature("b")]
UInt32 = Annotated[int, DBusSignature("u")]
UInt64 = Annotated[int, DBusSignature("t")]
Options = Annotated[dict[str, Any], DBusSignature("a{sv}")]
StrMap = Annotated[dict[str, str], DBusSignature("a{ss}")]
StrList = Annotated[list[str], DBusSignature("as")]
PathList = Annotated[list[str], DBusSignature("ao")]
VariantMap = Annotated[dict[str, Any], DBusSignature("a{sv}")]
StatusList = Annotated[list[list[str]], DBusSignature("a(sssss)")]
