# Ruis: differentially private aggregate queries with a privacy budget ledger.
#
#   docker build -t ruis .
#   docker run -p 8000:8000 -v "$PWD/data:/data" -e RUIS_BOOTSTRAP_ADMIN_KEY=... ruis
#
# Configuration comes from the environment at run time (nothing secret is baked in):
# RUIS_DATABASE_URL (default: SQLite in /data), RUIS_BOOTSTRAP_ADMIN_KEY, RUIS_METRICS_TOKEN,
# RUIS_LEDGER_KEY_FILE (the ledger's Ed25519 signing key; default /data/ledger-key.pem, made
# at first start: mount it as a secret shared by every replica), RUIS_LEDGER_ORIGIN.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/ruis
WORKDIR /src
COPY pyproject.toml ./
COPY api ./api
COPY privacy ./privacy
COPY db ./db
COPY cli ./cli
COPY client ./client
RUN /opt/ruis/bin/pip install --no-cache-dir ./client .

FROM python:3.11-slim
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
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["ruis"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
