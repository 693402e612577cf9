"""Export the reference pipeline as an MLflow model, for ``mlflow models serve``.

Runs from MLflow's own virtualenv (bench/README.md), on the joblib file ``bench/serve.py``
dumped from the pipeline it registered in Slipway, so both serve the same fitted object:

    .venv-mlflow/bin/python bench/servers/mlflow_export.py model.joblib OUT_DIR

``mlflow.sklearn.save_model`` with its defaults (skops serialization, ``predict`` as the pyfunc)
and the signature a user would log (a float64 tensor of the model's width), so the scoring
server checks inputs against it as in production.
"""

from __future__ import annotations

import sys

import joblib
import mlflow.sklearn
import numpy as np
from mlflow.models import infer_signature

# The reference model's trees: skops refuses to load a type the caller has not vouched for.
TRUSTED = ["sklearn.tree._tree.Tree"]


def main() -> None:
    model_path, out_dir = sys.argv[1], sys.argv[2]
    pipe = joblib.load(model_path)
    example = np.zeros((2, pipe.n_features_in_))
    mlflow.sklearn.save_model(
        pipe,
        out_dir,
        signature=infer_signature(example, pipe.predict(example)),
        skops_trusted_types=TRUSTED,
    )


if __name__ == "__main__":
    main()
