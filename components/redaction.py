"""Secrets out of logs: database passwords in storage and tracking URLs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit


def masked(url: str) -> str:
    """The URL with its password replaced by ***, fit for logs, params and tags."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL (e.g. a bracketed path): nothing to hide
        return url
    if password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1)))


def masked_value(value: Any) -> Any:
    """Config values as logged: strings that are URLs with a password are masked."""
    return masked(value) if isinstance(value, str) and "://" in value else value


def masked_text(text: str, url: str) -> str:
    """Any text (an error message, a log line) with the URL's password replaced by ***."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text
