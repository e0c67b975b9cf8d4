"""The XML S3 speaks: answers written with escaping (and, when asked, keys URL-encoded), and
the few request bodies it reads (DeleteObjects, CompleteMultipartUpload, Tagging) parsed with
clear errors. Request bodies are at most 1 MiB, read whole (:func:`cumulo.storage.s3api.body.
read_all`); Python's expat does not fetch external entities."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import quote
from xml.sax.saxutils import escape

from cumulo.storage.s3api.errors import S3Error

__all__ = ["NS", "children", "document", "el", "http_date", "iso", "parse", "text_of"]

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def el(name: str, value: object = None, *, url: bool = False) -> str:
    """``<name>value</name>``; ``url``: the value URL-encoded (encoding-type=url)."""
    if value is None:
        return f"<{name}/>"
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
        if url:
            text = quote(text, safe="/")
    return f"<{name}>{escape(text)}</{name}>"


def document(root: str, *parts: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{NS}">'
            + "".join(parts) + f"</{root}>").encode()


def iso(at: datetime) -> str:
    """2026-12-04T20:22:52.123Z (what S3 writes; a UTC time, aware or naive)."""
    return at.isoformat(timespec="milliseconds")[:23] + "Z"


def http_date(at: datetime) -> str:
    return format_datetime(at, usegmt=True)


def parse(body: bytes, root: str) -> ET.Element:
    try:
        element = ET.fromstring(body)
    except ET.ParseError as exc:
        raise S3Error("MalformedXML", f"The XML you provided was not well-formed: {exc}") \
            from None
    if _local(element.tag) != root:
        raise S3Error("MalformedXML", f"the request's XML must be a <{root}>, not "
                      f"<{_local(element.tag)}>")
    return element


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def text_of(element: ET.Element, name: str, default: str | None = None) -> str | None:
    found = children(element, name)
    return (found[0].text or "") if found else default
