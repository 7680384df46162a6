"""``python -m bridge.fakescm --help``: the GitHub and GitLab stand-ins, and signed webhooks."""

from bridge.fakescm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
