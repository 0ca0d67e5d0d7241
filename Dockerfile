# archbot: `archbot run` (Slack/Discord adapters and check-ins) in a slim, non-root image.
# Build: docker build -t archbot .    Run: see README "Deploy".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The same pinned lock file as the README's install line, so the image runs what was tested;
# installed before the source is copied so a code change does not re-download dependencies.
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
RUN pip install --no-deps .

# A fixed non-root uid; the database lives on the volume, which that user owns.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin archbot \
    && mkdir -p /data && chown archbot:archbot /data
USER archbot
VOLUME ["/data"]
WORKDIR /data

# Secrets (SLACK_BOT_TOKEN, ANTHROPIC_API_KEY, ...) come from the environment at run time,
# never from the image.
ENV ARCHBOT_STORAGE__PATH=/data/archbot.db \
    ARCHBOT_METRICS__PORT=9464 \
    ARCHBOT_LOG__FORMAT=json
EXPOSE 9464

# The metrics port answers while the process serves; doctor would spend a model call each time.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=4)"]

# SIGTERM drains in-flight turns (10 s), so the default stop timeout is enough.
STOPSIGNAL SIGTERM
CMD ["archbot", "run"]
