"""The web: student pages (``student``), the JSON API (``api``, ``openapi``) and the instructors'
dashboard (``dashboard``), each a blueprint. A view module never imports another view module;
what they share lives in the frame and in ``service.domain``.
"""
