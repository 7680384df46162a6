# The image the GitLab CI component runs, and `docker run` users: `send` and `action`. (The
# GitHub Action is a composite action and needs no image: action.yml.) A release
# (.github/workflows/release.yml) pushes it to ghcr.io/cortex-deploy-bridge/cortex-deploy-bridge
# and pins the released component to it by digest.
# It carries git (the title and short-sha fallbacks read the checkout) and exactly the base
# install, as `pip install cortex-deploy-bridge` makes it: the runtime `dependencies` of
# pyproject.toml (PyYAML, pinned in requirements/action.txt) and the project; the server
# extras (Flask, SQLAlchemy, gunicorn, ...) are not installed (.github/workflows/ci.yml checks
# the built image for them).
# The base image by digest (a multi-arch index: linux/amd64 and linux/arm64), so a build
# gets exactly the image reviewed; Dependabot proposes the next one.
FROM python:3.12-slim-bookworm@sha256:782412e85d0f0984994c290652577d4018aff08145c85b262bb63dc0c7522254

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

# git, without its recommended extras (perl, less, ssh client...): the bridge only reads the
# local checkout (`git log`, `git rev-parse`). The checkout belongs to the runner's user, not
# to the container's root, so git's safe.directory check would refuse it: this image exists to
# read the mounted workspace (/github/workspace, or GitLab's $CI_PROJECT_DIR), so trust any.
# Debian's security updates replace git's exact version, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'

# Dependencies first, in their own layer, so a code change does not reinstall them.
COPY requirements/action.txt /tmp/requirements-action.txt
RUN pip install --no-cache-dir --requirement /tmp/requirements-action.txt \
    && rm /tmp/requirements-action.txt

# The project itself, without resolving anything: its dependencies are pinned above. The
# source is bind-mounted for this one step instead of copied, so no copy of it stays in a
# layer; .dockerignore lets in only what the build needs (pyproject.toml, README.md, bridge/).
# pip goes last: nothing runs it in the container, and it is the largest package left.
WORKDIR /usr/src/cortex-deploy-bridge
RUN --mount=type=bind,target=/usr/src/cortex-deploy-bridge,rw \
    pip install --no-deps --no-cache-dir . \
    && cortex-deploy-bridge --help >/dev/null \
    && python -m pip uninstall --yes --quiet pip

# The build above needs a directory; /github/workspace is where a Docker action's workspace is
# mounted, kept as the working directory for `docker run` users who mount theirs there.
WORKDIR /github/workspace

# No USER line, on purpose: a job's mounted checkout and the files it hands back (GitLab's
# dotenv report; GITHUB_OUTPUT when a workflow runs the image as `uses: docker://...`) belong
# to the host's user, which only root can write as any uid (GitHub's "Dockerfile support for
# GitHub Actions", USER, says the same of images run as steps).
ENTRYPOINT ["cortex-deploy-bridge", "action"]
