"""Which sandbox backends a grading host lends idle CPUs on (``LEND_IDLE_CPUS``, issue 22 part
6): bubblewrap and Docker take part in the loans' books; the unsafe development backend, which
has no cgroup and no container to narrow, does not."""

from __future__ import annotations

import dataclasses

import pytest

from service.queue.host import HostSettings


@pytest.mark.parametrize(("backend", "lends"), [("bwrap", True), ("docker", True),
                                                 ("unsafe", False)])
def test_lending_follows_the_backend_and_the_setting(make_app, tmp_path, backend, lends):
    app = make_app(PIN_CPUS=True, RUNS_PER_HOST=2, CPU_SLOTS_DIR=str(tmp_path / "slots"),
                   LEND_IDLE_CPUS=True)
    config = dict(app.config)
    config["GRADER"] = dataclasses.replace(app.config["GRADER"], sandbox=backend)
    assert HostSettings.of(config).lend_cpus is lends
    config["LEND_IDLE_CPUS"] = False
    assert HostSettings.of(config).lend_cpus is False
