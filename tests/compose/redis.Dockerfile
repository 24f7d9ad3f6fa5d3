# A stand-in for the official redis image where none can be pulled (tests/compose/override.yml):
# Debian bookworm's redis-server 7.0, listening on every address as the official image does.
ARG BASE=notebook-grader-base:bookworm
FROM ${BASE}
RUN set -e; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d
USER redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
