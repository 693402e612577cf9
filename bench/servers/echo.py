"""The ceiling: FastAPI + uvicorn answering with the request body, nothing else.

Run: uvicorn echo:app --app-dir bench/servers --no-access-log
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")
