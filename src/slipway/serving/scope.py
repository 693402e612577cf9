"""What Slipway keeps in an ASGI request's scope, under one name each.

The gate writes the request id, start time and API key when a request comes in; the answerer
writes which version answered how many rows; the access log, error bodies and ``require_admin``
read them. Keys are namespaced (``slipway.``) so they never collide with Starlette's own.
"""

from __future__ import annotations

REQUEST_ID = "slipway.request_id"  # str: the X-Request-ID echoed on the answer
STARTED = "slipway.started"  # float: time.perf_counter() when the gate took the request
KEY = "slipway.key"  # the authenticated API key (auth.Key); absent on open paths
SERVED = "slipway.served"  # (model, version, rows) of a prediction, for the access log
