"""``python -m bridge.fakecortex``: run the stand-in alone until interrupted."""

from __future__ import annotations

import argparse

from bridge.fakecortex.server import FakeCortex


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.fakecortex", description="A local stand-in Cortex Deploys API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--token", default="test-token")
    parser.add_argument(
        "--entities",
        default=None,
        metavar="TAG,TAG",
        help="the only entities that exist (others get 404); default: every entity exists",
    )
    parser.add_argument(
        "--chaos",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of requests (0..1) failed at random: 429, 5xx, slow, dropped (default: 0)",
    )
    parser.add_argument("--seed", type=int, default=None, help="chaos seed (default: random)")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=0,
        metavar="N",
        help="answer 429 with Retry-After past N requests a minute, as Cortex does (default: off)",
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="a slow chaos answer waits between half this and this (default: 0.5)",
    )
    parser.add_argument(
        "--retry-after",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="Retry-After of a chaos 429 (default: 1)",
    )
    args = parser.parse_args(argv)
    try:
        fake = FakeCortex(
            token=args.token,
            entities=set(filter(None, args.entities.split(","))) if args.entities else None,
            host=args.host,
            port=args.port,
            chaos=args.chaos,
            seed=args.seed,
            rate_limit_per_minute=args.rate_limit,
            slow_seconds=args.slow_seconds,
            retry_after=args.retry_after,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"stand-in cortex listening on {fake.url}", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
    return 0
