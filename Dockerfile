# One image for every service; the command picks the service (python -m services.<name>).
FROM python:3.12-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY yokeflow ./yokeflow
RUN pip install --no-cache-dir .
USER 10001
ENV PYTHONUNBUFFERED=1
CMD ["python", "-m", "services.gateway"]
