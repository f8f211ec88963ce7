"""Hardened XML parsing for server answers: no entity expansion, no network, no huge trees.

Servers pass their clients' strings (user agents, referrers) through, and not all of them escape
what XML cannot hold: one listener's user agent with bytes that are not UTF-8, or with a control
character, would make the whole listing unreadable. So a UTF-8 document that does not parse is
parsed again with those replaced by U+FFFD, as strictly as the first time: whatever else is wrong
with it (cut short, not XML at all) is still a FormatError.
"""

from __future__ import annotations

import re

from lxml import etree

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    collect_ids=False,  # no document asks for an element by its xml:id
)
# The characters XML 1.0 forbids but a UTF-8 decoder lets through (it has already replaced
# surrogates): C0 controls other than tab, line feed and carriage return; U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DECLARED_ENCODING = re.compile(
    rb"""\A(?:\xef\xbb\xbf)?<\?xml\s[^>]*?\bencoding\s*=\s*["']([^"']*)["']"""
)


class FormatError(ValueError):
    """A server's answer is not in the format that was asked for."""


def parse_xml(body: bytes, expected_root: str, what: str) -> etree._Element:
    """Parse `body`, which must have the root element `expected_root`."""
    try:
        root = _parse(body)
    except etree.XMLSyntaxError as exc:
        raise FormatError(f"not {what} XML ({exc})") from None
    if root is None:
        raise FormatError(f"not {what} XML (empty answer)")
    if root.tag != expected_root:
        raise FormatError(f"not {what} XML (root element <{root.tag}>)")
    return root


def _parse(body: bytes) -> etree._Element | None:
    # A document that parses as it is needs no repair: nearly every one, so it is tried first.
    try:
        return etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        repaired = _repaired(body)
        if repaired is None or repaired == body:
            raise
    return etree.fromstring(repaired, _PARSER)


def _repaired(body: bytes) -> bytes | None:
    """`body` with bytes that are not UTF-8 and characters XML forbids replaced by U+FFFD, or
    None when it declares another encoding: its bytes stand for other characters."""
    declared = _DECLARED_ENCODING.match(body)
    if declared and declared[1].lower() not in (b"utf-8", b"utf8"):
        return None
    text = body.decode("utf-8", errors="replace")
    return _NOT_XML.sub("\ufffd", text).encode("utf-8")
