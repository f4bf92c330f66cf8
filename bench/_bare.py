"""A bare quart-trio app: the framework floor for ``bench.throughput``.

Served the same way as the gateway: ``hypercorn -k trio --bind 127.0.0.1:PORT bench._bare:app``.
``GET /healthz`` (and ``/health``) answers a small JSON document, nothing else happens.
"""

from __future__ import annotations

from quart_trio import QuartTrio

app = QuartTrio("bare")


@app.get("/health")
@app.get("/healthz")
async def health() -> dict[str, object]:
    return {"ok": True, "status": "live"}
