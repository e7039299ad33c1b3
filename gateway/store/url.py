"""What ``--db`` names: an SQLite file, or a PostgreSQL database by its libpq URL."""

from __future__ import annotations

import os
import urllib.parse

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(path_or_url: str | os.PathLike) -> bool:
    """Whether ``--db`` names a PostgreSQL database (a libpq URL) rather than an SQLite file."""
    return isinstance(path_or_url, str) and path_or_url.startswith(URL_SCHEMES)


def public_url(url: str) -> str:
    """``url`` without its password (for messages, logs and ``Store.path``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))
