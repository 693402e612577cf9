"""The real ceiling: a bare ASGI app under uvicorn that reads the body, parses the JSON and
answers with it, nothing else (no framework, no routing).

Run: uvicorn raw:app --app-dir bench/servers --no-access-log
"""

from __future__ import annotations

import json
from typing import Any

_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    out = json.dumps(json.loads(body or b"null")).encode()
    headers = [*_HEADERS, (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})
