"""A small, safe XML reader and writer helpers for the mysmpp XML API (and its simulator).

Reading uses expat directly and refuses any DTD, so entity expansion ("billion laughs")
and external entities cannot happen whatever the expat version; the tree it builds is
just what the mysmpp documents need (tag, attributes, text, children). Writing escapes
text and attribute values and drops the control characters XML 1.0 cannot carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.parsers import expat

__all__ = ["Element", "XmlError", "attr", "parse", "text"]


class XmlError(ValueError):
    """Not well-formed XML, or XML with a DTD."""


@dataclass(slots=True)
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def find(self, tag: str) -> Element | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[Element]:
        return [c for c in self.children if c.tag == tag]

    def findtext(self, tag: str, default: str = "") -> str:
        child = self.find(tag)
        return default if child is None else child.text


def _no_dtd(*_args: object) -> None:
    raise XmlError("DTDs are not accepted")


def parse(data: bytes) -> Element:
    """Parse a document into an :class:`Element` tree; raises XmlError."""
    parser = expat.ParserCreate()
    parser.buffer_text = True
    stack: list[Element] = []
    root: list[Element] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        el = Element(tag, attrs)
        if stack:
            stack[-1].children.append(el)
        else:
            root.append(el)
        stack.append(el)

    def end(_tag: str) -> None:
        el = stack.pop()
        el.text = el.text.strip()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = _no_dtd
    parser.EntityDeclHandler = _no_dtd
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmlError(f"not well-formed XML: {exc}") from None
    if not root:
        raise XmlError("empty document")
    return root[0]


#: Characters XML 1.0 does not allow (§2.2): C0 controls except TAB, LF, CR.
_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                               "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def text(value: str) -> str:
    """``value`` escaped as element content."""
    return _INVALID.sub("", value).translate(_TEXT_ESCAPES)


def attr(value: str) -> str:
    """``value`` escaped for a double-quoted attribute."""
    return _INVALID.sub("", value).translate(_ATTR_ESCAPES)
