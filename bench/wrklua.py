"""The wrk Lua script the benches share: POST each of some JSON bodies in turn, with a key,
as fast as the server answers (closed loop) or paced to a fixed total rate."""

from __future__ import annotations

import json
import tempfile

# Paced mode: each wrk thread keeps a schedule of send times one interval apart (wall clock
# from gettimeofday through LuaJIT's ffi, as wrk's Lua has no clock finer than a second) and
# delay() holds each connection's next request until its slot. The thread's connections
# share the schedule, so the offered rate stays fixed whatever the latency, as long as a
# connection is free; a late slot is sent at once and the schedule does not slip.
_PACED = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_usec; }} slipway_timeval;
int gettimeofday(slipway_timeval *tv, void *tz);
]]
local tv = ffi.new("slipway_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end
interval = {interval_ms}
next_at = nil
delay = function()
  local now = now_ms()
  if next_at == nil then next_at = now + math.random() * interval end
  local wait = next_at - now
  next_at = next_at + interval
  if wait < 0 then return 0 end
  return wait
end
"""


def wrk_body_script(
    bodies: list[str], token: str, *, rate: float | None = None, threads: int = 2
) -> str:
    """Write a wrk script that cycles through ``bodies`` (JSON texts); return its path.

    ``rate``: pace the requests to that many per second in total, over ``threads`` wrk
    threads (pass wrk's ``-t``); None sends each next request as soon as the answer arrives.
    """
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
    if rate is not None:
        if rate <= 0:
            raise ValueError(f"a paced wrk script needs a rate above 0 requests/s, not {rate}")
        lines.append(_PACED.format(interval_ms=f"{threads * 1000.0 / rate:.6f}"))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    return f.name
