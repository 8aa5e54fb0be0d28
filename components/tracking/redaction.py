"""Secrets out of logs: database passwords in storage and tracking URLs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit


def password_of(url: str | None) -> str | None:
    """The password in a URL, or None (no URL, no password, or not parseable as a URL)."""
    if not url or "://" not in url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:  # not a URL (e.g. a bracketed path): nothing to hide
        return None


def masked(url: str) -> str:
    """The URL with its password replaced by ***, fit for logs, params and tags."""
    password = password_of(url)
    if password is None:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1)))


def masked_value(value: Any) -> Any:
    """Config values as logged: strings that are URLs with a password are masked."""
    return masked(value) if isinstance(value, str) and "://" in value else value


def masked_text(text: str, url: str) -> str:
    """Any text (an error message, a log line) with the URL's password replaced by ***: wherever
    it appears, or, when shorter than 4 characters (it would match inside ordinary words and
    mangle the message), where a URL or DSN holds it."""
    password = password_of(url)
    if not password:
        return text
    if len(password) >= 4:
        return text.replace(password, "***")
    for before, after in ((":", "@"), ("password=", "")):
        text = text.replace(f"{before}{password}{after}", f"{before}***{after}")
    return text
