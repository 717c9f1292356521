# auditlake: ingest (port 8010) and writer (health on 127.0.0.1:8011) under supervisord.
# Python 3.11: 3.12 and 3.13 spend 9-15 % more of ingest's instructions per request (docs/benchmarks.md,
# twenty-third session). The official image's CPython is built with profile-guided and link-time optimization:
# ingest's 100-event posts take about 15 % less CPU than on an unoptimized build (docs/operations.md, "Interpreter").
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AUDIT_SERVICE_LOCAL_PATH=/var/lib/caipe-audit-service \
    AUDIT_SERVICE_SPOOL_PATH=/var/lib/caipe-audit-service/_spool \
    AUDIT_SERVICE_SOCKET_PATH=/var/lib/caipe-audit-service/_spool/writer.sock

RUN useradd --uid 1001 --create-home --shell /usr/sbin/nologin auditlake

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY ingest ./ingest
COPY writer ./writer
COPY producer ./producer
COPY supervisord.conf ./supervisord.conf
RUN pip install . \
    && mkdir -p /var/lib/caipe-audit-service \
    && chown -R 1001:1001 /var/lib/caipe-audit-service

VOLUME ["/var/lib/caipe-audit-service"]
USER 1001
EXPOSE 8010

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8010/healthz', timeout=2); u.urlopen('http://127.0.0.1:8011/healthz', timeout=2)"

CMD ["supervisord", "-c", "/app/supervisord.conf"]
