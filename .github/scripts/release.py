"""The release's names, derived in one place, and the pinning of the released action.yml.

Called by .github/workflows/release.yml; standard library only, so it runs on the runner's
own Python before anything is installed, and it never imports the bridge.

    python .github/scripts/release.py names --repository OWNER/REPO
        version=0.1.0, tag=v0.1.0, major=v0, prerelease=false, image=ghcr.io/owner/repo,
        image-tags and relay-image-tags (one reference a line) to $GITHUB_OUTPUT, or stdout.
    python .github/scripts/release.py pin --image ghcr.io/owner/repo --digest sha256:...
        rewrites action.yml's `image: Dockerfile` to `image: docker://IMAGE@DIGEST`, and the
        GitLab component's image default (`ghcr.io/...:v0`) to `IMAGE@DIGEST`: the release
        commit's Action and component run the very image the release pushed.

Exit 0 on success, 2 with one line naming the bad value otherwise.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "ghcr.io"
RELAY_SUFFIX = "-relay"
# A PEP 440 subset every tool in the chain agrees on (PyPI, git tags, OCI tags):
# 1.2.3, and pre-releases 1.2.3a1 / 1.2.3b1 / 1.2.3rc1.
VERSION = re.compile(r"(?P<major>0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?P<pre>(a|b|rc)\d+)?")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# ghcr.io takes lower-case repository names only (OCI distribution spec, name grammar).
IMAGE = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)+")
DEVELOPMENT_IMAGE = re.compile(r"^(?P<indent>\s+)image:\s*['\"]?Dockerfile['\"]?\s*$", re.M)
# The component's `image` input default: a ghcr.io reference by tag.
TEMPLATE_IMAGE = re.compile(r"^(?P<indent>\s+)default:\s*ghcr\.io/[\w./-]+:[\w.-]+\s*$", re.M)
TEMPLATE = Path("templates") / "cortex-deploy.yml"


class ReleaseError(Exception):
    """A value the release cannot go on with; the message names it."""


@dataclass(frozen=True)
class Names:
    """Everything a release is called: git tags, image references."""

    version: str
    tag: str
    major: str
    prerelease: bool
    image: str

    def image_tags(self, image: str) -> list[str]:
        """The references one image is pushed as: the version, and for a final the major."""
        tags = [f"{image}:{self.tag}"]
        if not self.prerelease:
            tags += [f"{image}:{self.major}", f"{image}:latest"]
        return tags


def read_version(root: Path = ROOT) -> str:
    """``bridge.__version__``, read from the source without importing the package."""
    source = (root / "bridge" / "__init__.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        names = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        value = getattr(getattr(node, "value", None), "value", None)
        if "__version__" in names and isinstance(value, str):
            return value
    raise ReleaseError("bridge/__init__.py: no __version__ = '...' string")


def release_names(version: str, repository: str) -> Names:
    """The tags and image of the release of ``version`` from GitHub repository ``repository``."""
    match = VERSION.fullmatch(version)
    if match is None:
        raise ReleaseError(f"version {version!r} is not X.Y.Z (or X.Y.Z{{a,b,rc}}N)")
    image = f"{REGISTRY}/{repository.lower()}"
    if not IMAGE.fullmatch(image.partition("/")[2]):
        raise ReleaseError(f"--repository {repository!r} is not OWNER/REPO")
    return Names(
        version=version,
        tag=f"v{version}",
        major=f"v{match['major']}",
        prerelease=match["pre"] is not None,
        image=image,
    )


def check_reference(image: str, digest: str) -> None:
    """Raise unless ``image`` is a lower-case ghcr.io name and ``digest`` a sha256 digest."""
    if not DIGEST.fullmatch(digest):
        raise ReleaseError(f"--digest {digest!r} is not sha256:<64 hex>")
    registry, _, name = image.partition("/")
    if registry != REGISTRY or not IMAGE.fullmatch(name):
        raise ReleaseError(f"--image {image!r} is not {REGISTRY}/<lower-case owner/name>")


def replace_once(pattern: re.Pattern[str], text: str, new: str, *, where: str) -> str:
    """``text`` with the one line ``pattern`` matches replaced (its indent kept)."""
    found = pattern.findall(text)
    if len(found) != 1:
        raise ReleaseError(f"{where}: expected one line to pin, found {len(found)}")
    return pattern.sub(lambda m: f"{m['indent']}{new}", text, count=1)


def pin_action(text: str, image: str, digest: str) -> str:
    """action.yml's text with the development ``image: Dockerfile`` replaced by the pushed image."""
    check_reference(image, digest)
    # docker://IMAGE@DIGEST: GitHub pulls exactly what was pushed ("metadata syntax",
    # runs.image for Docker container actions); a tag could be moved under a release.
    return replace_once(
        DEVELOPMENT_IMAGE, text, f"image: docker://{image}@{digest}", where="action.yml"
    )


def pin_template(text: str, image: str, digest: str) -> str:
    """The GitLab component's text with its image default pinned to the pushed image."""
    check_reference(image, digest)
    return replace_once(TEMPLATE_IMAGE, text, f"default: {image}@{digest}", where=str(TEMPLATE))


def write_outputs(pairs: dict[str, str], environ: dict[str, str]) -> None:
    """``name=value`` lines (heredoc blocks for multi-line values) to GITHUB_OUTPUT, or stdout."""
    lines = []
    for name, value in pairs.items():
        if "\n" in value:
            lines += [f"{name}<<EOF_{name}", value, f"EOF_{name}"]
        else:
            lines.append(f"{name}={value}")
    path = environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
    else:
        print("\n".join(lines))


def run_names(args: argparse.Namespace, environ: dict[str, str]) -> None:
    """The ``names`` command."""
    names = release_names(read_version(args.root), args.repository)
    write_outputs(
        {
            "version": names.version,
            "tag": names.tag,
            "major": names.major,
            "prerelease": str(names.prerelease).lower(),
            "image": names.image,
            "image-tags": "\n".join(names.image_tags(names.image)),
            "relay-image-tags": "\n".join(names.image_tags(names.image + RELAY_SUFFIX)),
        },
        environ,
    )


def run_pin(args: argparse.Namespace) -> None:
    """The ``pin`` command: both files are checked before either is written."""
    action, template = args.root / "action.yml", args.root / TEMPLATE
    pinned = {
        action: pin_action(action.read_text(encoding="utf-8"), args.image, args.digest),
        template: pin_template(template.read_text(encoding="utf-8"), args.image, args.digest),
    }
    for path, text in pinned.items():
        path.write_text(text, encoding="utf-8")
        print(f"{path.relative_to(args.root)}: {args.image}@{args.digest}")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: this one)")
    commands = parser.add_subparsers(dest="command", required=True)
    names = commands.add_parser("names", help="version, tags and image references")
    names.add_argument("--repository", required=True, help="OWNER/REPO ($GITHUB_REPOSITORY)")
    pin = commands.add_parser("pin", help="point action.yml and the component at the image")
    pin.add_argument("--image", required=True, help="ghcr.io/owner/repo, as pushed")
    pin.add_argument("--digest", required=True, help="sha256:..., as the push reported")
    return parser


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    """Run one command; 0 on success, 2 with one line on a bad value."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "names":
            run_names(args, dict(os.environ) if environ is None else environ)
        else:
            run_pin(args)
    except (ReleaseError, OSError) as exc:
        print(f"release.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
