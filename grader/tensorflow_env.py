"""The environment TensorFlow runs with in the grader's sandboxes: the student's kernel and the
clean room (``docs/sandbox.md``, "TensorFlow's settings").

- ``TF_CPP_MIN_LOG_LEVEL=2``: TensorFlow's C++ info and warning lines stay out of the logs.
- ``TF_ENABLE_ONEDNN_OPTS=1``: TensorFlow's oneDNN kernels for convolutions, pooling and matrix
  products. TensorFlow turns them on by itself only on CPUs with AVX-512 or AMX; on the AVX2
  machines here (AMD EPYC) it leaves them off, and turned on they train the lecture's CNN about
  1.6 times as fast and run the clean room's predictions about 1.8 times as fast (figures in
  docs/sandbox.md). Results differ from the plain kernels only in round-off (another order of
  summation), well inside every comparator's tolerance; the reference solutions still earn full
  marks (``grader dry-run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: Set in every sandbox that runs TensorFlow (the kernel, the clean room).
TENSORFLOW_ENV: Mapping[str, str] = MappingProxyType({
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "1",
})
