# Two commands set everything up on a fresh machine:
#   make run    installs what is missing, then serves http://127.0.0.1:8000
#   make test   installs what is missing, then runs the whole test suite
# Every install step lives here so that CI (a clean clone) needs nothing else.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA_DIR ?= var/data
PYTEST_ARGS ?=
BENCH_ARGS ?=
BENCH_SERVICE_ARGS ?=
BENCH_THROUGHPUT_ARGS ?=
BENCH_VERSUS_ARGS ?=
BENCH_LTI_ARGS ?=
BENCH_SIMILARITY_ARGS ?=
FINGERPRINT_ARGS ?=

export GRADER_DATA_DIR ?= $(abspath $(DATA_DIR))

.PHONY: run test test-fast test-unit test-compose bench bench-service bench-lti bench-similarity calibrate-fingerprints deps sysdeps sysdeps-test data dry-run image service-image lint catalogs clean help

# pytest-xdist's processes for `make test`: most tests wait (kernels starting, budgets running
# out, servers answering), so two share the two cores well; 0 runs in this process alone.
TEST_WORKERS ?= 2

help:
	@echo "make run       set up and start the service on http://127.0.0.1:8000"
	@echo "make test      set up and run every test (includes a full 10-epoch dry-run; TEST_WORKERS=2 processes)"
	@echo "make test-fast set up and run the tests that do not train the CNN"
	@echo "make test-unit the fast inner loop (under 2 min): no sandbox, training, Docker, browser, processes or full MNIST files"
	@echo "make dry-run   grade the reference solutions and blank templates"
	@echo "make image     build the docker backend's runtime image (VARIANT=cpu|gpu, BASE=auto|local|IMAGE)"
	@echo "make service-image  build the service's image for docker-compose.yml (BASE=auto|local|IMAGE)"
	@echo "make test-compose   only the docker-compose.yml tests (the stack up, a notebook graded)"
	@echo "make bench     sandbox start-up per backend, grading phase by phase, the host's work on pathological notebooks at the upload limits, the service at course scale, the queue wait, notebooks per hour with 1 and 2 pinned runs, the grader vs jupyter nbconvert --execute (P1, P2 warm and cold, each phase), grade passback through a 5-minute LMS outage, then the 8-GPU node's capacity on paper (docs/capacity.md)"
	@echo "make bench-service  only the web service at course scale, SQLite and PostgreSQL"
	@echo "make bench-lti      grade passback through a 5-minute LMS outage (about 12 min; BENCH_LTI_ARGS=--quick: 2 min)"
	@echo "make bench-similarity  every pair of 300 and 1,000 students' code and models (BENCH_SIMILARITY_ARGS=--quick: 300)"
	@echo "make calibrate-fingerprints  grade the reference 24 times (template seeds twice, 20 other seeds, an honest rewrite, a near-copy: about 50 min on 2 cores) and write every pair's error agreement to docs/data/fingerprint_calibration.json (docs/model-fingerprints.md)"
	@echo "make lint      ruff, deptry (every import declared), mypy"
	@echo "make catalogs  re-extract the messages and merge them into the .po catalogs"

# --- set-up -------------------------------------------------------------
sysdeps:
	@scripts/install-sysdeps.sh

sysdeps-test:
	@scripts/install-sysdeps.sh --test

# The packages the sandboxes import are held to docker/requirements.txt, the runtime image's
# pins, so that the bwrap backend (this venv) and the docker one run the same versions.
$(STAMP): pyproject.toml docker/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (found %s)" % sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,runtime,docker]' -c docker/requirements.txt
	$(MAKE) --no-print-directory compile-catalogs
	@touch $@

# The .mo files are not in git: compiled here, or on first use by grader.catalogs when missing.
.PHONY: compile-catalogs
compile-catalogs:
	$(BIN)/pybabel compile --statistics -d service/translations -D messages
	$(BIN)/pybabel compile --statistics -d grader/locale -D grader

deps: sysdeps $(STAMP)

data: deps
	$(BIN)/grader data fetch

# --- use ----------------------------------------------------------------
run: data
	$(BIN)/python -m service

test: data sysdeps-test
	$(BIN)/ruff check .
	$(BIN)/deptry .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-fast: data sysdeps-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

# The inner loop: the tests needing no sandbox, no training, no Docker, no browser, no
# processes of their own and not the full MNIST files (markers in pyproject.toml; tests/conftest.py marks by fixture). The
# service tests still run on real SQLite and PostgreSQL. Under two minutes on 2 cores.
UNIT_MARKERS = not sandbox and not slow and not docker and not compose and not browser and not processes and not data

test-unit: data sysdeps-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "$(UNIT_MARKERS)" --hypothesis-profile=unit $(PYTEST_ARGS)

# docker-compose.yml alone: its parts, then the stack brought up with tests/compose/override.yml
# (about a minute once the images are built; part of make test too).
test-compose: data sysdeps-test
	$(BIN)/python -m pytest tests/test_compose.py $(PYTEST_ARGS)

dry-run: data
	$(BIN)/grader dry-run

# The docker backend's runtime image (docker/Dockerfile), tagged with a hash of what goes in:
# a no-op when that tag is present. Needs a Docker daemon (Debian's docker.io, `make
# sysdeps-test` installs it); without a registry the base is made locally with debootstrap.
VARIANT ?= cpu
BASE ?= auto
image: deps
	$(BIN)/grader image build --variant $(VARIANT) --base $(BASE)

# docker-compose.yml's image for the web and the workers (docker/service.Dockerfile), built with
# this machine's pip settings and CA bundle (`docker compose build` works where pip needs none).
service-image: deps
	$(BIN)/python scripts/service_image.py --base $(BASE)

# None of the benchmarks is part of make test: speed goals are measured here, not asserted
# by timed tests.
bench: data sysdeps-test
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/grading.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/host_work.py
	$(BIN)/python benchmarks/serving.py $(BENCH_SERVICE_ARGS)
	$(BIN)/python benchmarks/queue_wait.py
	$(BIN)/python benchmarks/throughput.py $(BENCH_THROUGHPUT_ARGS)
	$(BIN)/python benchmarks/versus.py $(BENCH_VERSUS_ARGS)
	$(BIN)/python benchmarks/lti_outage.py $(BENCH_LTI_ARGS)
	$(BIN)/python benchmarks/similarity.py $(BENCH_SIMILARITY_ARGS)
	$(BIN)/python benchmarks/capacity.py --json var/bench/capacity.json

# Seeds throwaway SQLite and PostgreSQL databases (a cluster of its own unless
# GRADER_BENCH_POSTGRES names one) (1,000 students, 10,000 graded submissions),
# starts gunicorn on each (no grading worker) and prints upload, dashboard and CSV figures.
bench-service: deps sysdeps-test
	$(BIN)/python benchmarks/serving.py $(BENCH_SERVICE_ARGS)

# Grade passback through an LMS outage (issue 19): python -m service at its default settings,
# the tests' LTI platform with its token and scores endpoints down for five minutes (503, then
# offline); the score must arrive once after the restore, within the backoff's bound, and no
# grading be delayed (docs/lti.md, "The outage trial"). BENCH_LTI_ARGS=--quick: a 30 s outage.
bench-lti: data sysdeps-test
	$(BIN)/python benchmarks/lti_outage.py $(BENCH_LTI_ARGS)

# Every pair of a class compared (issue 20, docs/similarity.md): code and model fingerprints for
# 300 and 1,000 synthetic students against the goals (300: 60 s code, 5 s models; 1,000: 10 min).
# BENCH_SIMILARITY_ARGS=--quick: 300 only (about 10 s).
bench-similarity: deps
	$(BIN)/python benchmarks/similarity.py $(BENCH_SIMILARITY_ARGS)
# Model fingerprints (issue 20): how much independent trainings of the reference agree on the
# images they get wrong, the figures behind grader/fingerprints.py's AGREEMENT_FLAG. Each run is
# kept in var/fingerprint-calibration/ (a second call resumes; FINGERPRINT_ARGS=--analyse only
# recomputes the pairs). PYTHONPATH: this checkout's grader, also from a git worktree.
calibrate-fingerprints: data sysdeps-test
	PYTHONPATH=$(CURDIR) $(BIN)/python benchmarks/fingerprint_calibration.py $(FINGERPRINT_ARGS)

lint: deps
	$(BIN)/ruff check .
	$(BIN)/deptry .
	$(BIN)/mypy

# After adding or removing a message in the code: extract it into the .pot, merge it into the ja
# and en .po files, then write the two texts there (tests/test_catalogs.py says what is missing).
POT_OPTIONS := --add-location=file --sort-output --no-wrap --project=notebook-grader
catalogs: deps
	$(BIN)/pybabel extract -F service/babel.cfg $(POT_OPTIONS) -o service/translations/messages.pot service
	$(BIN)/pybabel update -i service/translations/messages.pot -d service/translations -D messages --no-wrap --ignore-obsolete
	$(BIN)/pybabel extract -F grader/babel.cfg $(POT_OPTIONS) -o grader/locale/grader.pot grader
	$(BIN)/pybabel update -i grader/locale/grader.pot -d grader/locale -D grader --no-wrap --ignore-obsolete

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache
