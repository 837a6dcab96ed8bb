# syntax=docker/dockerfile:1
#
# One image for every Tidings service: the command picks what runs.
#   docker run IMAGE run gateway      (users, templates, email, push: the same)
#   docker run IMAGE migrate          (create or upgrade every service's schema; run it first)
#   docker run -p 8000:8000 IMAGE     (no TIDINGS_*_URL set: the embedded default, all in one)
# deploy/compose.yaml and deploy/kubernetes/ run it this way.

ARG PYTHON_VERSION=3.11

# Build stage: the package and its dependencies go into a virtual environment that the
# runtime stage copies whole, so pip, its cache and the build backend stay out of the image.
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/tidings
WORKDIR /src
# pyproject.toml and README.md first: the wheel build reads both (README is the long
# description). Every dependency has a manylinux wheel for 3.11, so no compiler is needed.
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/tidings/bin/pip install . \
    && /opt/tidings/bin/python -m compileall -q /opt/tidings/lib

FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="tidings" \
      org.opencontainers.image.description="Tidings: a distributed notification system (gateway, users, templates, email and push workers)"
# A fixed, unprivileged uid, so Kubernetes can check runAsNonRoot without a name lookup.
RUN groupadd --system --gid 10001 tidings \
    && useradd --system --uid 10001 --gid tidings --home-dir /var/lib/tidings --create-home tidings
COPY --from=build /opt/tidings /opt/tidings
ENV PATH=/opt/tidings/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # In a container the service must listen on every interface, not only on loopback
    # (the default outside one).
    TIDINGS_HOST=0.0.0.0 \
    # Only the embedded default writes here (SQLite files, the captured mail); with the
    # TIDINGS_*_URL settings nothing is written to disk.
    TIDINGS_DATA_DIR=/var/lib/tidings
USER 10001:10001
WORKDIR /var/lib/tidings
# gateway, users, templates, email worker, push worker (the workers serve /health and /docs).
EXPOSE 8000 8001 8002 8003 8004 8005
# No HEALTHCHECK here: the port depends on the service the command picks, so compose and
# Kubernetes each probe GET /health (or /openapi.json) on that service's port.
ENTRYPOINT ["tidings"]
CMD ["up"]
