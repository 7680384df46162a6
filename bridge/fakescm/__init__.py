"""Local stand-ins for the GitHub (REST and GraphQL), GitLab and Argo CD APIs ``sync`` reads.

Real HTTP servers on loopback, like the stand-in Cortex (:mod:`bridge.fakecortex`): strict
about paths, query parameters, page sizes and tokens (a request they do not expect is
answered 4xx and noted in ``violations``), paging by ``Link`` headers and GraphQL cursors, and
answering rate limits on demand (:meth:`~bridge.fakescm.base.FakeApi.inject`).

Run alone: ``python -m bridge.fakescm`` serves both with a few recent deploys (for ``sync``),
and ``python -m bridge.fakescm post github|gitlab [FILE]`` sends a receiver one webhook
signed as GitHub or GitLab signs it (:mod:`bridge.fakescm.hooks`); docs/try-it.md.
"""

from bridge.fakescm.argocd import FakeArgoCD
from bridge.fakescm.base import Fault, Filler, Request
from bridge.fakescm.github import FakeGitHub
from bridge.fakescm.gitlab import FakeGitLab

__all__ = ["FakeArgoCD", "FakeGitHub", "FakeGitLab", "Fault", "Filler", "Request"]
