"""WSGI servers of the tests run in a thread of the test's process.

``socketserver``'s ``shutdown()`` returns only once ``serve_forever`` looks at its flag again,
which it does between two polls: at the default 0.5 s (0.1 s here before), stopping the
platform, the fake tool and its key set cost a quarter of a second after every LTI test, about
17 s of ``make test-unit``'s. A 10 ms poll makes the stop near immediate; an idle loop that
wakes 100 times a second costs a few microseconds each time.
"""

from __future__ import annotations

import threading

from werkzeug.serving import BaseWSGIServer

#: Seconds between two looks of a serving loop at its shutdown flag.
POLL_SECONDS = 0.01


def serve_in_thread(server: BaseWSGIServer, name: str | None = None) -> threading.Thread:
    """Start ``server.serve_forever`` in a daemon thread; ``server.shutdown()`` stops it within
    :data:`POLL_SECONDS`."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_SECONDS},
                              daemon=True, name=name)
    thread.start()
    return thread
