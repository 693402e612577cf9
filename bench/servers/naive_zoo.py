"""The naive server for the zoo: one joblib-loaded pipeline per model, a DataFrame per request.

What a user first writes for a DataFrame-trained pipeline: the JSON record into a one-row
DataFrame, then ``predict`` (and ``predict_proba`` for a classifier) per request.
Run: SLIPWAY_BENCH_MODELS=dir-of-joblib-files uvicorn naive_zoo:app --app-dir bench/servers
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from fastapi import FastAPI

models = {p.stem: joblib.load(p) for p in Path(os.environ["SLIPWAY_BENCH_MODELS"]).glob("*.joblib")}
app = FastAPI()


@app.post("/predict/{name}")
def predict(name: str, record: dict[str, Any]) -> dict:
    model = models[name]
    X = pd.DataFrame([record])
    out: dict[str, Any] = {"prediction": model.predict(X)[0].item()}
    if hasattr(model, "predict_proba"):
        out["probabilities"] = model.predict_proba(X)[0].tolist()
    return out
