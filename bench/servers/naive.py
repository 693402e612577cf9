"""The reference naive server: the mission's FastAPI example, as a user would first write it.

A joblib-loaded pipeline, a pydantic body, and `predict` + `predict_proba` per request.
Run: SLIPWAY_BENCH_MODEL=model.joblib uvicorn naive:app --app-dir bench/servers
"""

from __future__ import annotations

import os

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

model = joblib.load(os.environ["SLIPWAY_BENCH_MODEL"])
app = FastAPI()


class Transaction(BaseModel):
    features: list[float]


@app.post("/predict")
def predict(tx: Transaction) -> dict:
    X = np.array([tx.features])
    return {
        "label": int(model.predict(X)[0]),
        "probability": float(model.predict_proba(X)[0, 1]),
    }
