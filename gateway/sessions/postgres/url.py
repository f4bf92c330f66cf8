"""The store URL as people may see it: never with its password. Pure."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict


def password_of(url: str) -> str | None:
    """The password a libpq URL or keyword string carries, if any (``None`` if unparsable)."""
    try:
        value = conninfo_to_dict(url).get("password")
    except Exception:
        return None
    return str(value) if value else None


def redact(text: str, url: str) -> str:
    """``text`` with the URL's password (raw and percent-encoded) replaced by ``***``."""
    password = password_of(url)
    if not password:
        return text
    from urllib.parse import quote

    for form in {password, quote(password, safe="")}:
        text = text.replace(form, "***")
    return text


def display(url: str) -> str:
    """The URL without its password, for logs and errors."""
    return redact(url, url)
