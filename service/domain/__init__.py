"""What the service does, free of HTTP: accepting submissions, regrades, the gradebook and its
statistics and CSV, the roster, instructor accounts, tokens, the login throttle, the course's
rules, LTI's records, similarity runs. The entry points (views, ``flask`` commands) call these,
and the queue a few named modules (``QUEUE_USES_DOMAIN`` in ``tests/test_layout.py``); these
import only the domain and the infrastructure: never a view, the queue or the LTI bindings.
"""
