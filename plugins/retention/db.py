"""Warehouse connections. Library code takes a URL or a connection; this is the default."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

from retention.settings import get_settings


def url_with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name`` (scratch, test and copy databases)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def default_url() -> str:
    from retention.warehouse import warehouse_url

    return warehouse_url(get_settings())


@contextmanager
def connect(url: str | None = None, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection that commits on success and rolls back on any error."""
    conn = psycopg.connect(url or default_url(), autocommit=autocommit, connect_timeout=10)
    try:
        yield conn
        if not autocommit:
            conn.commit()
    except BaseException:
        if not autocommit:
            conn.rollback()
        raise
    finally:
        conn.close()


def ensure_schema(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(f'create schema if not exists "{schema}"')


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute("select to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
    return row is not None and row[0] is not None
