"""The release's names, derived in one place; the tree a release's tag holds; pinning.

Called by .github/workflows/release.yml; standard library only, so it runs on the runner's
own Python, and it never imports the bridge.

    python .github/scripts/release.py names --repository OWNER/REPO
        version=0.1.0, tag=v0.1.0, major=v0, prerelease=false, image=ghcr.io/owner/repo,
        image-tags and relay-image-tags (one reference a line) to $GITHUB_OUTPUT, or stdout.
    python .github/scripts/release.py action-tree DIR
        writes the tree the release's tag holds (what `uses: OWNER/REPO@v0` downloads): the
        checkout's files (git's tracked and untracked-but-not-ignored files), plus the pure-
        Python source of PyYAML, the one runtime dependency, under _vendor/ (copied from this
        Python's PyYAML, which must be the version requirements/action.txt pins). The
        composite Action (action.yml) runs from that tree on a runner's bare Python.
    python .github/scripts/release.py pin --image ghcr.io/owner/repo --digest sha256:...
        rewrites the GitLab component's image default (`ghcr.io/...:v0`) to `IMAGE@DIGEST`:
        the release's component runs the very image the release pushed.

Exit 0 on success, 2 with one line naming the bad value otherwise.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
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
# The component's `image` input default: a ghcr.io reference by tag.
TEMPLATE_IMAGE = re.compile(r"^(?P<indent>\s+)default:\s*ghcr\.io/[\w./-]+:[\w.-]+\s*$", re.M)
TEMPLATE = Path("templates") / "cortex-deploy.yml"
# The runtime dependency the Action's tree carries, and where (bridge/action/step.py puts
# _vendor on the import path when it exists).
VENDORED = "PyYAML"
VENDOR = "_vendor"
ACTION_REQUIREMENTS = Path("requirements") / "action.txt"


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
    """The ``pin`` command: the GitLab component's image default, by digest."""
    template = args.root / TEMPLATE
    text = pin_template(template.read_text(encoding="utf-8"), args.image, args.digest)
    template.write_text(text, encoding="utf-8")
    print(f"{TEMPLATE}: {args.image}@{args.digest}")


def checkout_files(root: Path) -> list[str]:
    """The checkout's files, as git sees them: tracked, and untracked but not ignored."""
    try:
        listed = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        raise ReleaseError(f"{root}: not a git checkout (git ls-files failed)") from None
    names = sorted({name for name in listed.decode("utf-8").split("\0") if name})
    if any(name == VENDOR or name.startswith(f"{VENDOR}/") for name in names):
        raise ReleaseError(f"{root}: {VENDOR}/ is the tree's own; the checkout must not have it")
    # A file deleted from the working tree but not yet from git's index is not in the tree.
    return [name for name in names if (root / name).is_file()]


def pinned_version(path: Path, name: str) -> str:
    """The ``==`` version ``path`` (a requirements file) pins ``name`` to."""
    for line in path.read_text(encoding="utf-8").splitlines():
        # A pin may go on with its --hash lines (`PyYAML==6.0.4 \`): the version ends there.
        requirement = line.split("#", 1)[0].split(";", 1)[0].rstrip("\\ \t").strip()
        package, sep, version = requirement.partition("==")
        if sep and package.strip().lower() == name.lower():
            return version.strip()
    raise ReleaseError(f"{path}: no {name}==VERSION line")


def vendor_files(root: Path) -> tuple[str, list[tuple[Path, str]]]:
    """PyYAML's version and its files to vendor: (source, name under _vendor/) pairs.

    Only its pure-Python package (``yaml/*.py``) and its license: the compiled ``_yaml``
    extension is for one Python on one platform, and PyYAML runs without it.
    """
    wanted = pinned_version(root / ACTION_REQUIREMENTS, VENDORED)
    fix = f"{sys.executable} -m pip install -r {ACTION_REQUIREMENTS}"
    try:
        dist = metadata.distribution(VENDORED)
    except metadata.PackageNotFoundError:
        raise ReleaseError(f"{VENDORED} is not installed in this Python: {fix}") from None
    if dist.version != wanted:
        raise ReleaseError(
            f"{VENDORED} {dist.version} is installed, {ACTION_REQUIREMENTS} pins {wanted}: {fix}"
        )
    files = []
    for entry in dist.files or ():
        parts = Path(str(entry)).parts
        if parts[0] == "yaml" and len(parts) == 2 and entry.suffix == ".py":
            files.append((Path(str(dist.locate_file(entry))), "/".join(parts)))
        elif parts[-1].upper().startswith("LICENSE") and ".dist-info" in parts[0]:
            files.append((Path(str(dist.locate_file(entry))), f"{VENDORED}.LICENSE"))
    if not any(name == "yaml/__init__.py" for _, name in files):
        raise ReleaseError(f"{VENDORED} {dist.version}: no yaml/__init__.py in its files")
    return dist.version, files


def write_action_tree(root: Path, target: Path) -> int:
    """Write the release's tree under ``target`` (absent or empty); the number of files."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ReleaseError(f"{target}: exists and is not an empty directory")
    if target.resolve().is_relative_to(root.resolve()):
        raise ReleaseError(f"{target}: inside the checkout; write the tree elsewhere")
    names = checkout_files(root)
    version, vendored = vendor_files(root)
    copies = [(root / name, name) for name in names]
    copies += [(source, f"{VENDOR}/{name}") for source, name in vendored]
    for source, name in copies:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        shutil.copymode(source, destination)
    (target / VENDOR / "vendor.txt").write_text(
        f"# What release.py action-tree copied here; bridge/action/step.py imports it.\n"
        f"{VENDORED}=={version}\n",
        encoding="utf-8",
    )
    return len(copies) + 1


def run_action_tree(args: argparse.Namespace) -> None:
    """The ``action-tree`` command."""
    count = write_action_tree(args.root, args.directory)
    print(f"{args.directory}: {count} files, the Action's tree of {args.root}")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: this one)")
    commands = parser.add_subparsers(dest="command", required=True)
    names = commands.add_parser("names", help="version, tags and image references")
    names.add_argument("--repository", required=True, help="OWNER/REPO ($GITHUB_REPOSITORY)")
    tree = commands.add_parser("action-tree", help="write the tree a release's tag holds")
    tree.add_argument("directory", type=Path, help="where (absent, or an empty directory)")
    pin = commands.add_parser("pin", help="point the GitLab component at the pushed image")
    pin.add_argument("--image", required=True, help="ghcr.io/owner/repo, as pushed")
    pin.add_argument("--digest", required=True, help="sha256:..., as the push reported")
    return parser


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    """Run one command; 0 on success, 2 with one line on a bad value."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "names":
            run_names(args, dict(os.environ) if environ is None else environ)
        elif args.command == "action-tree":
            run_action_tree(args)
        else:
            run_pin(args)
    except (ReleaseError, OSError) as exc:
        print(f"release.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
