"""Trains the benchmark's model once and writes it in both forms the benchmark serves:
model.joblib for the FastAPI + scikit-learn baseline, and model.onnx (the same weights,
converted by hand with onnx.helper: Debian has no skl2onnx) for mlmesh. Also writes
features.csv (entity rows the feature store is loaded with) and expected.json (sklearn's
probabilities for the first rows, so the benchmark can check both services agree).

    /usr/bin/python3 make_baseline_model.py OUT_DIR [N_FEATURES]
"""

import json
import os
import sys

import joblib
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

out = sys.argv[1]
n_features = int(sys.argv[2]) if len(sys.argv) > 2 else 20
os.makedirs(out, exist_ok=True)

X, y = make_classification(n_samples=5000, n_features=n_features, n_informative=8, random_state=7)
model = LogisticRegression(max_iter=1000).fit(X, y)
joblib.dump(model, os.path.join(out, "model.joblib"))

# p = sigmoid(X W + b); probabilities = [1 - p, p], as predict_proba orders the classes.
w = numpy_helper.from_array(model.coef_.T.astype(np.float32), "W")
b = numpy_helper.from_array(model.intercept_.astype(np.float32), "B")
one = numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")
nodes = [
    helper.make_node("MatMul", ["input", "W"], ["xw"]),
    helper.make_node("Add", ["xw", "B"], ["logit"]),
    helper.make_node("Sigmoid", ["logit"], ["p1"]),
    helper.make_node("Sub", ["one", "p1"], ["p0"]),
    helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
]
graph = helper.make_graph(
    nodes,
    "baseline_lr",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_features])],
    [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
    initializer=[w, b, one],
)
m = helper.make_model(graph, producer_name="mlmesh-bench", opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
onnx.checker.check_model(m)
onnx.save(m, os.path.join(out, "model.onnx"))

names = [f"f{i:02d}" for i in range(n_features)]
with open(os.path.join(out, "features.csv"), "w") as f:
    f.write("user_id,event_ts," + ",".join(names) + "\n")
    for i in range(1000):
        f.write(f"u{i},2026-01-01T00:00:00Z," + ",".join(repr(float(v)) for v in X[i]) + "\n")
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"features": names, "rows": X[:10].tolist(), "probabilities": model.predict_proba(X[:10]).tolist()}, f)
print(json.dumps({"n_features": n_features, "out": out}))
