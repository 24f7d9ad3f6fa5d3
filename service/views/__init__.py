"""The web: student pages (``student``), the JSON API (``api``, ``openapi``) and the instructors'
dashboard (``dashboard``), each a blueprint; LTI 1.3's routes (``lti``) and Prometheus's
``/metrics`` (``metrics``), registered by the app factory. A view module never imports another
view module; what they share lives in the frame and in ``service.domain`` (and, for the queue's
numbers and hand-over, ``service.queue``).
"""
