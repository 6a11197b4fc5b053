# smppbridge container: slim Python, non-root, data volume, health check on /healthz.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SMPPBRIDGE_SMPP_LISTEN=0.0.0.0:2775 \
    SMPPBRIDGE_HTTP_LISTEN=0.0.0.0:8080 \
    SMPPBRIDGE_STORE_URL=sqlite:////data/smppbridge.db \
    SMPPBRIDGE_LOG_FORMAT=json

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin smppbridge \
    && mkdir -p /data /etc/smppbridge && chown smppbridge /data

WORKDIR /opt/smppbridge
COPY pyproject.toml README.md ./
COPY smppbridge ./smppbridge
COPY conf/smppbridge.example.toml /etc/smppbridge/smppbridge.example.toml
# With the redis extra (pure Python, small): one image runs a single node or a cluster node.
RUN pip install --no-compile '.[redis]' && rm -rf /opt/smppbridge/build

USER smppbridge
WORKDIR /data
VOLUME ["/data"]
# 2775 SMPP, 3550 SMPP over TLS, 8080 HTTP (metrics, health, webhooks)
EXPOSE 2775 3550 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["smppbridge"]
# No --config: the demo defaults. Mount a file and pass: serve --config /etc/smppbridge/smppbridge.toml
CMD ["serve"]
