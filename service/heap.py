"""The web process's heap, settled once the app is loaded.

A loaded app (Flask, SQLAlchemy, Babel catalogs, the exercises' specs...) is some hundreds of
thousands of long-lived objects. Python's cyclic garbage collector walks all of them at each
full collection, and a page that makes tens of thousands of short-lived objects (the class
dashboard: a row per student) triggers several: profiled at course scale, the collections were
half of the dashboard's time. :func:`settle` moves what exists after start-up out of the
collector's sight (``gc.freeze``, as CPython's documentation advises for a server that forks or
runs long); what requests make is still collected as before.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect once, then freeze what survives: call after the app is built and before the
    first request (``python -m service``, gunicorn's ``post_worker_init``)."""
    gc.collect()
    gc.freeze()
