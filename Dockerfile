# Slipway's HTTP service. Build: docker build -t slipway .   Run: see docker-compose.yml.
# Two stages: wheels are built with the full toolchain, the runtime image only installs them.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    SLIPWAY_HOME=/var/lib/slipway
# A fixed, unprivileged user owning only the state directory (the registry's artifacts live there).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/slipway --create-home slipway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "slipway[postgres]" \
    && rm -rf /wheels
USER slipway
WORKDIR /var/lib/slipway
VOLUME ["/var/lib/slipway"]
EXPOSE 8000
# Liveness only: /health never touches the database. The slim image has no curl, so use Python.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
# SIGTERM: stop accepting, finish in-flight requests, flush the prediction log, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["slipway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
