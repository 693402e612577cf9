"""The wrk Lua script the benches share: POST each of some JSON bodies in turn, with a key."""

from __future__ import annotations

import json
import tempfile


def wrk_body_script(bodies: list[str], token: str) -> str:
    """Write a wrk script that cycles through ``bodies`` (JSON texts); return its path."""
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        f'wrk.headers["Authorization"] = "Bearer {token}"',
        "bodies = {" + ", ".join(json.dumps(b) for b in bodies) + "}",
        "i = 0",
        "request = function()",
        f"  i = i % {len(bodies)} + 1",
        '  return wrk.format("POST", nil, nil, bodies[i])',
        "end",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    return f.name
