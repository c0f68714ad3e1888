# Ruis: differentially private aggregate queries with a privacy budget ledger.
#
#   docker build -t ruis .
#   docker run -p 8000:8000 -v "$PWD/data:/data" -e RUIS_BOOTSTRAP_ADMIN_KEY=... ruis
#
# Configuration comes from the environment at run time (nothing secret is baked in):
# RUIS_DATABASE_URL (default: SQLite in /data), RUIS_BOOTSTRAP_ADMIN_KEY, RUIS_METRICS_TOKEN,
# RUIS_LEDGER_KEY_FILE (the ledger's Ed25519 signing key; default /data/ledger-key.pem, made
# at first start: mount it as a secret shared by every replica), RUIS_LEDGER_ORIGIN.
#
# BASE_IMAGE is any Debian-like image with Python 3.11+ as `python3`, the venv module and
# groupadd/useradd: python:3.11-slim by default, or a Debian minbase imported with
# `debootstrap --variant=minbase --include=python3,python3-venv bookworm DIR` (see
# tests/test_container.py, which builds and runs the image on such a base).

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/ruis
WORKDIR /src
COPY pyproject.toml ./
COPY api ./api
COPY privacy ./privacy
COPY db ./db
COPY cli ./cli
COPY client ./client
RUN /opt/ruis/bin/pip install --no-cache-dir ./client .

FROM ${BASE_IMAGE}
ENV PATH=/opt/ruis/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RUIS_DATA_DIR=/data
RUN groupadd --system --gid 10001 ruis \
    && useradd --system --uid 10001 --gid ruis --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin ruis \
    && mkdir /data \
    && chown ruis:ruis /data
COPY --from=build /opt/ruis /opt/ruis
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["ruis"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
