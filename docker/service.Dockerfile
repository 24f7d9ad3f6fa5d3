# The service's image: the web (gunicorn), the grading workers (`flask worker`, Celery) and the
# data step of docker-compose.yml. Python, the service and the grader's host side, the Docker SDK;
# no TensorFlow: grading runs in sibling containers of the runtime image (docker/Dockerfile,
# `make image`), which the workers start through the host's Docker daemon.
#
# Built from the repository's root (see .dockerignore), by `docker compose build` where pip
# reaches its index with the base's own settings, or by `make service-image`
# (scripts/service_image.py), which passes this machine's pip settings and CA bundle as BuildKit
# secrets, as for the runtime image, and makes the local base where no registry is reachable.
#
# BASE: python:3.11-slim-bookworm where a registry is reachable, or notebook-grader-base:bookworm
#       (`grader image base`: debootstrap minbase + docker import) where none is.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# The service's own packages, pinned where the runtime image pins them (docker/requirements.txt:
# numpy, nbclient, pydantic...), as `make` installs them. Only pyproject.toml is needed for this
# layer, so a change of the code does not reinstall them.
COPY pyproject.toml /app/pyproject.toml
COPY docker/requirements.txt /app/docker/requirements.txt
RUN --mount=type=secret,id=pipconf --mount=type=secret,id=cacert \
    set -e; \
    if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \
    python3 -m venv /opt/venv; \
    mkdir -p /app/grader /app/service; \
    touch /app/grader/__init__.py /app/service/__init__.py; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-input \
        -c /app/docker/requirements.txt 'setuptools>=69' '/app[docker]'; \
    /opt/venv/bin/pip uninstall --yes --quiet notebook-grader; \
    rm -rf /app/grader /app/service /app/build /root/.cache

ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

# The checkout's code and data. docker/ goes in because the workers name the runtime image by a
# hash of its inputs (grader/sandbox/docker_image.py, image_tag).
COPY grader/ /app/grader/
COPY service/ /app/service/
COPY exercises/ /app/exercises/
COPY reference/ /app/reference/
COPY docker/ /app/docker/
COPY gunicorn.conf.py /app/gunicorn.conf.py
WORKDIR /app
RUN set -e; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-input \
        --no-deps --no-build-isolation -e /app; \
    rm -rf /app/build; \
    pybabel compile --statistics -d service/translations -D messages; \
    pybabel compile --statistics -d grader/locale -D grader; \
    echo 'grader:x:10001:10001:grader:/app:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'grader:x:10001:' >> /etc/group; \
    mkdir -p /app/var /srv/notebook-grader/uploads; \
    chown grader:grader /app/var /srv/notebook-grader/uploads

# The web runs as this unprivileged user; the workers and the data step run as root
# (docker-compose.yml says why).
USER grader
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]
