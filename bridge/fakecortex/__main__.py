"""Run the stand-in Cortex: ``python -m bridge.fakecortex --help``."""

from bridge.fakecortex.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
