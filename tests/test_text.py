from __future__ import annotations

from gateway.text import clean, clean_document, encodable, has_lone_surrogate


def test_clean_replaces_each_lone_surrogate_once() -> None:
    assert clean("plain") == "plain"
    assert clean("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert clean("emoji \U0001f600 stays") == "emoji \U0001f600 stays"
    assert encodable("é") and not encodable("\ud800")


def test_documents() -> None:
    doc = {"k\udc00": ["x\ud800", {"n": 1, "s": "ok"}], "t": None}
    assert has_lone_surrogate(doc)
    cleaned = clean_document(doc)
    assert cleaned == {"k\ufffd": ["x\ufffd", {"n": 1, "s": "ok"}], "t": None}
    assert not has_lone_surrogate(cleaned)
    assert not has_lone_surrogate({"a": ["fine", 1, 2.5, True]})
