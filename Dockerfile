# convoflow: the WhatsApp webhook (`flows serve`) and its workers (`flows worker`) in one image.
#   docker build -t convoflow .
#   docker compose up --scale worker=4        (compose.yaml: PostgreSQL, migrations once, serve, workers)
# Your flows are mounted at /app/flows (FLOWS_DIR); settings come from the environment (see .env.example).

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
# Wheels of convoflow and every dependency, so the final image needs no compiler and no pip cache.
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[postgres]'

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLOWS_DIR=/app/flows \
    LOG_FORMAT=json
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels 'convoflow[postgres]' \
 && useradd --system --uid 10001 --home-dir /app --create-home convoflow
USER convoflow
WORKDIR /app
EXPOSE 8080
# /healthz answers 200 when the database does. Python's urllib: slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
CMD ["flows", "serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
