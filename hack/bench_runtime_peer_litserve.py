#!/usr/bin/env python3
"""The peer for hack/bench-runtime: the same TorchScript model, fp16, on LitServe with
its own dynamic batching. Tensors travel base64-encoded in JSON (LitServe has no binary
tensor protocol; base64 is the cheapest thing it accepts without custom routes).

usage: bench_runtime_peer_litserve.py MODEL_PATH MAX_BATCH PORT
"""

from __future__ import annotations

import base64
import sys

import litserve as ls
import numpy as np
import torch


class TorchScriptAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.device = device
        self.model = torch.jit.load(sys.argv[1], map_location="cpu").half().to(device).eval()

    def decode_request(self, request: dict) -> list[np.ndarray]:
        return [
            np.frombuffer(base64.b64decode(t["b64"]), dtype=t["dtype"]).reshape(t["shape"])
            for t in request["inputs"]
        ]

    def batch(self, inputs: list[list[np.ndarray]]) -> list[torch.Tensor]:
        return [
            torch.from_numpy(np.concatenate([x[i] for x in inputs])) for i in range(len(inputs[0]))
        ]

    def predict(self, xs: list[torch.Tensor]) -> np.ndarray:
        with torch.inference_mode():
            args = [x.to(self.device, non_blocking=True) for x in xs]
            args = [a.half() if a.is_floating_point() else a for a in args]
            out = self.model(*args)
            if isinstance(out, tuple | list):
                out = out[0]
            return out.float().cpu().numpy()

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict:
        return {"output": base64.b64encode(output.tobytes()).decode(), "shape": list(output.shape)}


if __name__ == "__main__":
    max_batch, port = int(sys.argv[2]), int(sys.argv[3])
    api = TorchScriptAPI(max_batch_size=max_batch, batch_timeout=0.001)
    server = ls.LitServer(api, accelerator="cuda", devices=1, workers_per_device=1)
    server.run(port=port, generate_client_file=False, log_level="warning")
