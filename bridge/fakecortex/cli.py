"""``python -m bridge.fakecortex``: run the stand-in alone until interrupted."""

from __future__ import annotations

import argparse
import sys

from bridge.fakecortex.server import FakeCortex

DESCRIPTION = """\
A local stand-in for Cortex's Deploys API (create, update, list, search and delete deploys
of any entity), to try the bridge without a Cortex account (docs/try-it.md). It checks the
bearer token and every request body against Cortex's API description, and keeps what it
was sent in memory until it stops."""

EPILOG = """\
what it holds, outside the Cortex API (same token; chaos and the rate limit never touch it):
  GET /_stand-in/deploys   every deploy stored, by entity
  GET /_stand-in/stats     requests per method, faults applied, refused requests, deploys

examples:
  python -m bridge.fakecortex
  export CORTEX_API_URL=http://127.0.0.1:8787 CORTEX_API_TOKEN=test-token
  curl -s -H "Authorization: Bearer test-token" http://127.0.0.1:8787/_stand-in/deploys
  python -m bridge.fakecortex --chaos 0.3 --seed 7 --rate-limit 1000
"""


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.fakecortex",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8787, help="port: CORTEX_API_URL's (default: 8787)"
    )
    parser.add_argument(
        "--token",
        default="test-token",
        help="the bearer token it accepts: CORTEX_API_TOKEN (default: test-token)",
    )
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
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long every API request takes before it is answered, as a slow Cortex "
        "(two faces recording one deploy at once, say); default: 0",
    )
    args = parser.parse_args(argv)
    try:
        fake = FakeCortex(
            latency=args.latency,
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
    except OSError as exc:  # the port taken, the address not this machine's
        reason = (exc.strerror or type(exc).__name__).lower()
        print(f"fakecortex: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    print(f"stand-in cortex listening on {fake.url}  (token {args.token})", flush=True)
    print(f"  export CORTEX_API_URL={fake.url} CORTEX_API_TOKEN={args.token}", flush=True)
    print(f"  what it holds: {fake.url}/_stand-in/deploys", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
    return 0
