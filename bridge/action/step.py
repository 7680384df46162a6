"""The composite Action's step: ``cortex-deploy-bridge action`` run from the Action's own tree.

action.yml finds the runner's Python (3.10 or newer) and runs this file by its path::

    python3 -I -X utf8 "$GITHUB_ACTION_PATH/bridge/action/step.py"

Nothing is installed: the tree the runner downloaded for ``uses: ...@v0`` holds ``bridge/``
and, in a release's tree, PyYAML's pure-Python source under ``_vendor/``
(``.github/scripts/release.py action-tree``). ``-I`` keeps the job's PYTHONPATH, user
site-packages and working directory out of the import path, so no other ``bridge`` or
``yaml`` shadows the tree's; ``-X utf8`` makes the standard streams and files UTF-8 on every
runner (Windows' console code page would otherwise garble a title in the log).
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePath

VENDOR = "_vendor"


def tree_paths(step_file: PurePath) -> tuple[PurePath, PurePath]:
    """The tree's root and its ``_vendor`` directory, from this file's path.

    ``step_file`` is the path as the runner spelled it (``C:\\actions runner\\_work\\...`` on
    Windows, ``/__w/_actions/...`` in a ``container:`` job): only ``pathlib`` takes it apart,
    never a string split on ``/``.
    """
    root = step_file.parents[2]
    return root, root / VENDOR


def import_path(step_file: Path) -> list[str]:
    """The directories to put first on ``sys.path``: the root, then ``_vendor`` if there."""
    root, vendor = tree_paths(step_file.resolve())
    return [str(root), *([str(vendor)] if Path(vendor).is_dir() else [])]


def main() -> int:
    """Run the ``action`` command from the tree this file is in; its exit code."""
    sys.path[:0] = import_path(Path(__file__))
    from bridge.cli import main as cli_main

    return cli_main(["action"])


if __name__ == "__main__":
    sys.exit(main())
