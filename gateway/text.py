"""Text that can always be encoded: finding and replacing unpaired UTF-16 surrogates. Pure.

JSON may escape a lone surrogate (``"\\ud800"``); Python decodes it to a string that no UTF-8
encoder accepts, so a response, an SSE chunk or a stored transcript would fail on it later.
"""

from __future__ import annotations

import re

# A JSON escape of a high or low surrogate: the cheap test that avoids walking a document.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean(text: str) -> str:
    """``text`` with every unpaired surrogate replaced by U+FFFD (one for each)."""
    if encodable(text):
        return text
    # In a Python string a valid pair is already one code point: any surrogate left is lone.
    return _SURROGATE.sub("\ufffd", text)


def has_lone_surrogate(document: object) -> bool:
    """Whether a string (key or value) anywhere in a JSON document has an unpaired surrogate.
    Iterative: the document may nest as deeply as the parser allowed."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not encodable(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def clean_document(document: object) -> object:
    """A JSON document with every string cleaned (see ``clean``). Recursive: call it on what
    ``json.loads`` returned (which refuses documents nested past the recursion limit), and be
    ready for ``RecursionError`` near that limit."""
    if isinstance(document, str):
        return clean(document)
    if isinstance(document, list):
        return [clean_document(item) for item in document]
    if isinstance(document, dict):
        return {clean(str(k)): clean_document(v) for k, v in document.items()}
    return document
