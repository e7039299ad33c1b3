"""A raw connection to a test's database, of its own driver, for what a test checks past the Store."""

import contextlib
import sqlite3

from gateway.store.url import is_url


@contextlib.contextmanager
def raw(db):
    """An autocommit connection to ``db`` (``--db``: an SQLite path, or a PostgreSQL URL)."""
    if is_url(str(db)):
        import psycopg

        with psycopg.connect(str(db), autocommit=True) as conn:
            yield conn
    else:
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()


def rows(db, query: str) -> list[tuple]:
    """The rows of ``query`` on ``db``, as tuples."""
    with raw(db) as conn:
        return [tuple(row) for row in conn.execute(query).fetchall()]
