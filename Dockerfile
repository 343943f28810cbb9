# One image for every service; the command picks the service (python -m services.<name>).
# git and bubblewrap: agents' commands and checks run in bubblewrap inside the executor.
# Runs as uid 10001 with a read-only root filesystem (bytecode compiled at build, HOME on /tmp).
FROM python:3.12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin yokeflow
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY yokeflow ./yokeflow
RUN pip install --no-cache-dir . && python -m compileall -q /app /usr/local/lib/python3.12/site-packages
USER 10001:10001
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
EXPOSE 8765
CMD ["python", "-m", "services.gateway"]
