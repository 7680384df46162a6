# The image behind the GitHub Action (action.yml: `runs.image: Dockerfile`) and the one the
# GitLab CI templates run (ghcr.io/cortex-deploy-bridge/cortex-deploy-bridge, see
# .github/workflows/release.yml). It carries only the runtime `dependencies` of pyproject.toml
# (PyYAML); the server extras (Flask, SQLAlchemy, gunicorn, ...) are not installed.
FROM python:3.12-slim-bookworm

LABEL org.opencontainers.image.title="cortex-deploy-bridge" \
      org.opencontainers.image.description="Record a deploy in Cortex from GitHub Actions, GitLab CI or any CI." \
      org.opencontainers.image.source="https://github.com/cortex-deploy-bridge/cortex-deploy-bridge" \
      org.opencontainers.image.url="https://github.com/cortex-deploy-bridge/cortex-deploy-bridge" \
      org.opencontainers.image.documentation="https://github.com/cortex-deploy-bridge/cortex-deploy-bridge#readme" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Dependencies first, in their own layer, so a code change does not reinstall them.
COPY requirements/action.txt /tmp/requirements-action.txt
RUN pip install --no-cache-dir --requirement /tmp/requirements-action.txt \
    && rm /tmp/requirements-action.txt

# The project itself, without resolving anything: its dependencies are pinned above.
# .dockerignore lets in only what the build needs (pyproject.toml, README.md, bridge/).
WORKDIR /usr/src/cortex-deploy-bridge
COPY . .
RUN pip install --no-deps --no-cache-dir . \
    && cortex-deploy-bridge --help >/dev/null

# The build above needs a directory; at run time GitHub mounts the workspace at
# /github/workspace and makes it the working directory, so point there too (GitHub's
# "Dockerfile support for GitHub Actions", WORKDIR) and `docker run` behaves the same.
WORKDIR /github/workspace

# No USER line, on purpose: GitHub's "Dockerfile support for GitHub Actions" (USER) says a
# Docker action must run as the image's default user (root); the workspace and the files
# behind GITHUB_OUTPUT and GITHUB_STEP_SUMMARY are owned by the runner's user on the host,
# and a non-root user in the container could not write them.
ENTRYPOINT ["cortex-deploy-bridge", "action"]
