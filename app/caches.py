"""What the app's Streamlit caches are keyed by, and how to forget them.

Every cached loader takes a file's ``mtime_ns`` as part of its key, so a file rewritten by
``tumorscope predict`` is read again and an unchanged one never is. Volumes and meshes are
large and read-only, so they are kept with ``st.cache_resource`` (one shared object, no
pickling copy per rerun); small tables use ``st.cache_data``.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st


def stamp(path: str | Path) -> int:
    """``mtime_ns`` of ``path`` for cache keys; -1 when it is not there.

    >>> stamp("/no/such/file")
    -1
    """
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def clear_caches() -> None:
    """Forget every cached table, volume and mesh (benchmarks time cold loads with it)."""
    st.cache_data.clear()
    st.cache_resource.clear()
