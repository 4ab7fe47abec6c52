# The Journey app image: the CLI (scheduler, API, demo) and the Celery workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# the production install, exactly as `make install-check` makes and starts it (no dev extras)
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY workers ./workers
RUN pip install .

COPY rules ./rules
COPY message_templates ./message_templates

RUN useradd --create-home --uid 10001 journey && mkdir -p /app/outbox && chown journey /app/outbox
USER journey

ENV JOURNEY_RULES_DIR=/app/rules JOURNEY_TEMPLATES_DIR=/app/message_templates
CMD ["journey", "run"]
