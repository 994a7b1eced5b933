"""`modelserve predict`: one inference request through a ModelDeployment's user-facing
Service, from wherever kubectl works (the same kubeconfig, through the official client).

The request goes through the API server's Service proxy
(`/api/v1/namespaces/NS/services/NAME:http/proxy/v2/models/NAME/infer`), so it needs no
port-forward, no ingress and no route to the pod network: the same path on a laptop and
in CI, authorised by the user's kubeconfig (`services/proxy`). It answers what a client
of the Service would get, from whichever revision the Service picks.

    modelserve predict resnet50 --input x='[[0.1, 0.2, 0.3, 0.4]]'
    modelserve predict resnet50 --request body.json     # a whole Open Inference request
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelserve_operator.commands import CommandError, cluster, raw

# Open Inference Protocol datatypes of the numpy kinds a user types on a command line.
_DATATYPES = {"f": "FP32", "i": "INT64", "u": "INT64", "b": "BOOL"}


def _proxy_path(name: str, namespace: str | None, suffix: str) -> str:
    ns = namespace or cluster().namespace
    return f"/api/v1/namespaces/{ns}/services/{name}:http/proxy/v2/models/{name}{suffix}"


def parse_inputs(pairs: list[str], declared: dict[str, str]) -> list[dict[str, Any]]:
    """`name=JSON-array` pairs -> Open Inference inputs, typed as the model declares."""
    inputs = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--input {pair!r}: write NAME=JSON, e.g. x='[[1, 2, 3]]'")
        try:
            array = np.asarray(json.loads(value))
        except (ValueError, TypeError) as error:
            raise CommandError(f"--input {name}: not a JSON array of numbers ({error})") from None
        if array.dtype.kind not in _DATATYPES:
            raise CommandError(f"--input {name}: only numbers and booleans, got {array.dtype}")
        datatype = declared.get(name) or _DATATYPES[array.dtype.kind]
        inputs.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                       "data": array.ravel().tolist()})
    return inputs


def predict(name: str, namespace: str | None, pairs: list[str],
            request_file: str | None) -> str:
    if request_file:
        with open(request_file) as f:
            try:
                body = json.load(f)
            except ValueError as error:
                raise CommandError(f"--request {request_file}: not JSON ({error})") from None
    else:
        if not pairs:
            raise CommandError("give --input NAME=JSON (repeatable) or --request FILE")
        metadata = raw("GET", _proxy_path(name, namespace, ""), what=f"model {name}")
        declared = {i["name"]: i["datatype"] for i in metadata.get("inputs", [])}
        body = {"inputs": parse_inputs(pairs, declared)}
    answer = raw("POST", _proxy_path(name, namespace, "/infer"), body, what=f"infer {name}")
    lines = [f"model {answer.get('model_name')} version {answer.get('model_version')}"]
    for output in answer.get("outputs", []):
        data = np.asarray(output.get("data", [])).reshape(output.get("shape") or [-1])
        lines.append(f"{output['name']} {output.get('datatype', '')} "
                     f"{list(output.get('shape', []))}: {json.dumps(data.tolist())}")
    return "\n".join(lines)
