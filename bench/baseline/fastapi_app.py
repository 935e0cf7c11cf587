"""The seed-style baseline: the classic FastAPI + scikit-learn tutorial service.

`joblib.load` once at start, then `predict_proba` per request on the JSON body's feature
vector. Served by uvicorn with its defaults (one worker), as the tutorial does. Run by
bench/mesh-vs-fastapi.ts; not part of mlmesh.

    MODEL_PATH=model.joblib /usr/bin/python3 -m uvicorn fastapi_app:app --port 8000
"""

import os

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

model = joblib.load(os.environ["MODEL_PATH"])
app = FastAPI()


class PredictRequest(BaseModel):
    features: list[float]


@app.post("/predict")
def predict(req: PredictRequest):
    proba = model.predict_proba(np.asarray([req.features], dtype=np.float64))[0]
    return {"score": float(proba[1]), "probabilities": [float(p) for p in proba]}
