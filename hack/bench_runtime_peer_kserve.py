"""KServe's ModelServer serving an ONNX model with onnxruntime: the peer of
`hack/bench-runtime --cpu` (run with the kserve venv's Python, not the project's).

A plain `kserve.Model` as KServe's docs write one: inputs as numpy, one onnxruntime run
per request (ModelServer has no batcher of its own), outputs binary. onnxruntime gets
one intra-op thread, as the modelserve runtime does in the same benchmark.

usage: python bench_runtime_peer_kserve.py --model-path M.onnx --model-name mlp \
           --http_port P --grpc_port Q
"""

from __future__ import annotations

import argparse

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class OnnxModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True

    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        feeds = {inp.name: inp.as_numpy() for inp in payload.inputs}
        results = self.session.run(self.output_names, feeds)
        outputs = []
        for name, array in zip(self.output_names, results, strict=True):
            out = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
            out.set_data_from_numpy(array, binary_data=True)
            outputs.append(out)
        return InferResponse(
            model_name=self.name, infer_outputs=outputs, response_id=payload.id or ""
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-name", required=True)
    # ModelServer reads its own flags (--http_port, --grpc_port, ...) from sys.argv.
    args, _ = parser.parse_known_args()
    ModelServer().start([OnnxModel(args.model_name, args.model_path)])
