"""The baseline for benchmarks/receiver.py: a bare Flask app that reads the body and answers 200.

Run under the same gunicorn settings as `serve`:

    gunicorn -w 2 -k bridge.gevent_worker.GeventWorker --keep-alive 5 \
        --chdir benchmarks bare_flask:app
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask("bare")


@app.post("/webhooks/github")
def github() -> tuple[Response, int]:
    """Read the body as the receiver does, answer like an ignored event."""
    request.get_data(cache=False)
    return jsonify(status="ignored", reason="bare flask baseline"), 200


@app.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Alive."""
    return jsonify(status="ok"), 200
