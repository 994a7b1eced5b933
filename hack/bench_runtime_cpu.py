"""CPU mode of hack/bench-runtime (`hack/bench-runtime --cpu`): the modelserve runtime
over HTTP and gRPC against KServe's ModelServer over HTTP and gRPC, in one run, on a
small ONNX model, on CPU. See docs/runtime.md (Benchmark on CPU).

Model: an MLP built here with onnx's helper API (784 -> 512 -> 512 -> 10, ReLU, FP32,
dynamic batch; no downloads). One request = one row. HTTP bodies use the binary tensor
extension (what tritonclient sends by default; KServe's ModelServer accepts it too),
gRPC requests `raw_input_contents`; both servers answer outputs binary/raw. Each server
is one process pinned to --server-cpus with one onnxruntime thread; the load generator
(hack/loadgen, Go, HTTP or gRPC) runs on --loadgen-cpus; closed loop at each
concurrency. modelserve runs its defaults (dynamic batching, max batch 64, audit log to
/dev/null); KServe's ModelServer runs as its docs show a custom model (no batcher: it
has none in the server; batching is a separate agent container in KServe).

KServe comes from its own virtualenv (.bench/kserve-venv, made on first use with the
pinned versions below), since its dependency pins are not the project's.

usage: hack/build-loadgen; hack/bench-runtime --cpu [--out DIR] [--concurrency 1,8,64]
       [--warmup 1] [--duration 4] [--rounds 1] [--http-json]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KSERVE_PINS = ["kserve==0.21.0", "onnxruntime==1.31.1"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL = "mlp"
EXTRA: list[str] = []
IN_DIM, HIDDEN, OUT_DIM = 784, 512, 10


# --- model and requests ----------------------------------------------------------------
def build_mlp(path: str) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dims = [IN_DIM, HIDDEN, HIDDEN, OUT_DIM]
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes, MODEL,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", IN_DIM])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT_DIM])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def http_binary_body() -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(1).standard_normal((1, IN_DIM)).astype(np.float32)
    header = json.dumps({
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, IN_DIM],
                    "parameters": {"binary_data_size": x.nbytes}}],
        "parameters": {"binary_data_output": True},
    }).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header)),
                                  "Content-Type": "application/octet-stream"}


def http_json_body() -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(1).standard_normal((1, IN_DIM)).astype(np.float32)
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, IN_DIM],
                       "data": x.reshape(-1).tolist()}]}
    return json.dumps(doc).encode(), {"Content-Type": "application/json"}


def grpc_body() -> bytes:
    sys.path.insert(0, os.path.join(ROOT, "runtime"))
    from modelserve_runtime.proto import grpc_predict_v2_pb2 as pb

    x = np.random.default_rng(1).standard_normal((1, IN_DIM)).astype(np.float32)
    req = pb.ModelInferRequest(model_name=MODEL)
    req.inputs.add(name="x", datatype="FP32", shape=[1, IN_DIM])
    req.raw_input_contents.append(x.tobytes())
    return req.SerializeToString()


# --- servers -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kserve_python(args) -> str:
    if args.kserve_python:
        return args.kserve_python
    venv = os.path.join(ROOT, ".bench", "kserve-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"making {venv} ({', '.join(KSERVE_PINS)})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *KSERVE_PINS], check=True)
    return python


class Served:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], http_port: int,
                 grpc_port: int, log_dir: str) -> None:
        self.name, self.http_port, self.grpc_port = name, http_port, grpc_port
        self.log = open(os.path.join(log_dir, f"{name}.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 120
        while not self._ready():
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited {self.proc.returncode}; see {self.log.name}")
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{name} not ready in 120 s; see {self.log.name}")
            time.sleep(0.2)
        time.sleep(1.0)  # the gRPC listener and anything else starting up

    def _ready(self) -> bool:
        try:
            if not self.http_port:  # gRPC only (the floor): listening is ready
                socket.create_connection(("127.0.0.1", self.grpc_port), timeout=2).close()
                return True
            url = f"http://127.0.0.1:{self.http_port}/v2/models/{MODEL}/ready"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def cpu_s(self) -> float:
        total = 0.0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # process group = the server's session
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def start_modelserve(model_path: str, args, log_dir: str, name: str = "modelserve",
                     extra_env: dict[str, str] | None = None) -> Served:
    http_port, grpc_port = free_port(), free_port()
    path = [os.path.join(ROOT, "runtime"), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, MODELSERVE_ORT_THREADS="1", PYTHONPATH=":".join(filter(None, path)),
               **(extra_env or {}))
    cmd = ["taskset", "-c", args.server_cpus, sys.executable, "-m", "modelserve_runtime.server",
           "--model-name", MODEL, "--model-path", model_path, "--device", "cpu",
           "--max-batch-size", str(args.max_batch), "--port", str(http_port), *EXTRA,
           "--grpc-port", str(grpc_port), "--host", "127.0.0.1"]
    return Served(name, cmd, env, http_port, grpc_port, log_dir)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """`--variant label:NAME=VALUE[,NAME=VALUE]`: the runtime again with other settings
    (MODELSERVE_* env), measured, not default; gRPC rows only, after the systems."""
    label, _, assignments = text.partition(":")
    env = dict(a.split("=", 1) for a in assignments.split(",") if a)
    if not label or not env:
        raise SystemExit(f"--variant {text!r}: write label:NAME=VALUE[,NAME=VALUE]")
    return label, env


def start_kserve(model_path: str, args, log_dir: str) -> Served:
    http_port, grpc_port = free_port(), free_port()
    cmd = ["taskset", "-c", args.server_cpus, kserve_python(args),
           os.path.join(HERE, "bench_runtime_peer_kserve.py"), "--model-path", model_path,
           "--model-name", MODEL, "--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return Served("kserve", cmd, env, http_port, grpc_port, log_dir)


def start_grpc_floor(model_path: str, args, log_dir: str, server: str = "asyncio") -> Served:
    grpc_port = free_port()
    cmd = ["taskset", "-c", args.server_cpus, sys.executable,
           os.path.join(HERE, "bench_runtime_grpc_floor.py"), "--grpc-port", str(grpc_port),
           "--model-name", MODEL, "--server", server]
    name = "grpc-floor" if server == "asyncio" else f"grpc-floor-{server}"
    return Served(name, cmd, dict(os.environ), 0, grpc_port, log_dir)


# --- load ----------------------------------------------------------------------------
def run_level(served: Served, protocol: str, body: bytes, headers: dict[str, str], conc: int,
              args) -> dict:
    with tempfile.NamedTemporaryFile() as f:
        f.write(body)
        f.flush()
        cmd = ["taskset", "-c", args.loadgen_cpus, args.loadgen, "-body", f.name,
               "-c", str(conc), "-warmup", f"{args.warmup}s", "-duration", f"{args.duration}s"]
        if protocol == "grpc":
            cmd += ["-grpc", f"127.0.0.1:{served.grpc_port}", "-conns", str(max(1, conc // 16))]
        else:
            cmd += ["-url", f"http://127.0.0.1:{served.http_port}/v2/models/{MODEL}/infer"]
            for name, value in headers.items():
                cmd += ["-H", f"{name}: {value}"]
        env = dict(os.environ, GOMAXPROCS=str(len(args.loadgen_cpus.split(","))))
        cpu0, t0 = served.cpu_s(), time.time()
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        wall = time.time() - t0
    r = json.loads(out.stdout)
    r["srv_cores"] = (served.cpu_s() - cpu0) / wall
    # CPU time per answered request: on a shared machine a fairer efficiency figure than
    # req/s, which also moves with whatever else holds the server's core.
    r["cpu_us_per_req"] = r["srv_cores"] * wall / max(1, r["throughput"] * args.duration) * 1e6
    return r


def check_answers(served: Served, body: bytes, headers: dict[str, str]) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{served.http_port}/v2/models/{MODEL}/infer", data=body,
        headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200, (served.name, r.status)


STARTERS = {"modelserve": start_modelserve, "kserve": start_kserve,
            "grpc-floor": start_grpc_floor,
            "grpc-floor-threads": functools.partial(start_grpc_floor, server="threads"),
            "grpc-floor-h2": functools.partial(start_grpc_floor, server="h2")}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hack/bench-runtime --cpu")
    p.add_argument("--out", default=os.path.join(ROOT, ".bench", "cpu"))
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=1, help="repeat the whole table")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--server-cpus", default="0", help="taskset list for each server")
    p.add_argument("--loadgen-cpus", default="1", help="taskset list for the load generator")
    p.add_argument("--loadgen", default=os.path.join(ROOT, ".bench", "loadgen"))
    p.add_argument("--kserve-python", default=None)
    p.add_argument("--http-json", action="store_true", help="also JSON bodies over HTTP")
    p.add_argument("--protocols", default="http,grpc", help="subset of http,grpc")
    p.add_argument("--variant", action="append", default=[], type=parse_variant,
                   help="label:MODELSERVE_X=1[,...]: the runtime with other settings "
                        "(gRPC rows only; repeatable)")
    p.add_argument("--systems", default=",".join(STARTERS),
                   help=f"subset of {','.join(STARTERS)} (grpc-floor: gRPC only)")
    args = p.parse_args(argv)
    if not os.path.exists(args.loadgen):
        raise SystemExit(f"{args.loadgen} missing: run hack/build-loadgen first")
    os.makedirs(args.out, exist_ok=True)
    levels = [int(c) for c in args.concurrency.split(",")]
    model_path = os.path.join(args.out, "mlp.onnx")
    build_mlp(model_path)
    protocols = args.protocols.split(",")
    systems = args.systems.split(",")
    unknown = sorted(set(systems) - set(STARTERS))
    if unknown:
        raise SystemExit(f"--systems: unknown {unknown}; choose from {list(STARTERS)}")
    variants = {f"ms-{label}": env for label, env in args.variant}
    systems += list(variants)
    bodies = {"http": http_binary_body(), "grpc": (grpc_body(), {})}
    if args.http_json:
        bodies["http-json"] = http_json_body()
    check = bodies["http"]
    bodies = {k: v for k, v in bodies.items() if k.split("-")[0] in protocols}

    rows: list[dict] = []
    print(f"== {MODEL} {IN_DIM}-{HIDDEN}-{HIDDEN}-{OUT_DIM} FP32 on CPU; servers on cpus "
          f"{args.server_cpus}, load generator on {args.loadgen_cpus}; "
          f"{args.warmup:g}+{args.duration:g} s per level")
    print(f"{'system':<18} {'protocol':<10} {'conc':>5} {'req/s':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'errors':>6} {'srv cpu':>7} {'cpu us/req':>10}")
    for round_no in range(args.rounds):
        for system in systems:
            try:
                if system in variants:
                    served = start_modelserve(model_path, args, args.out, system,
                                              variants[system])
                else:
                    served = STARTERS[system](model_path, args, args.out)
            except SystemExit as exc:  # one server that cannot start costs its rows only
                print(f"{system:<18} did not start: {exc}", flush=True)
                continue
            try:
                if served.http_port:
                    check_answers(served, *check)
                for protocol, (body, headers) in bodies.items():
                    wire = "grpc" if protocol == "grpc" else "http"
                    if wire == "http" and (not served.http_port or system in variants):
                        continue
                    for conc in levels:
                        r = run_level(served, wire, body, headers, conc, args)
                        r.update(system=served.name, protocol=protocol, round=round_no)
                        rows.append(r)
                        print(f"{served.name:<18} {protocol:<10} {conc:>5} "
                              f"{r['throughput']:>9.0f} {r['p50_ms'] or float('nan'):>8.2f} "
                              f"{r['p99_ms'] or float('nan'):>8.2f} {r['errors']:>6} "
                              f"{r['srv_cores']:>7.2f} {r['cpu_us_per_req']:>10.0f}", flush=True)
            finally:
                served.stop()

    print("\nmodelserve vs KServe ModelServer, same protocol, same run (target: >= 3x req/s "
          "at c=64); medians over rounds, range if more than one:")
    print(f"  {'protocol':<10} {'conc':<6} {'req/s ratio':>16} {'cpu/req ratio (peer/ours)':>28}")

    def pick(system: str, protocol: str, conc: int, key: str) -> list[float]:
        return [r[key] for r in rows if r["system"] == system and r["protocol"] == protocol
                and r["concurrency"] == conc]

    def show(ratios: list[float]) -> str:
        span = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
        return f"{np.median(ratios):.2f}x{span}"

    for protocol in bodies:
        for conc in levels:
            ours = pick("modelserve", protocol, conc, "throughput")
            peer = pick("kserve", protocol, conc, "throughput")
            if not ours or len(ours) != len(peer):
                continue
            speed = [a / b for a, b in zip(ours, peer, strict=True) if b]
            ours_cpu = pick("modelserve", protocol, conc, "cpu_us_per_req")
            peer_cpu = pick("kserve", protocol, conc, "cpu_us_per_req")
            cost = [b / a for a, b in zip(ours_cpu, peer_cpu, strict=True) if a]
            if speed and cost:
                print(f"  {protocol:<10} c={conc:<4} {show(speed):>16} {show(cost):>28}")
    for floor_name in ("grpc-floor-h2", "grpc-floor-threads", "grpc-floor"):
        if not any(r["system"] == floor_name for r in rows):
            continue
        print(f"\nmodelserve's gRPC CPU per request over the do-nothing server's "
              f"({floor_name}), same run; medians:")
        for conc in levels:
            ours = pick("modelserve", "grpc", conc, "cpu_us_per_req")
            base = pick(floor_name, "grpc", conc, "cpu_us_per_req")
            peer = pick("kserve", "grpc", conc, "cpu_us_per_req")
            for label in variants:
                mine = pick(label, "grpc", conc, "cpu_us_per_req")
                if mine and base:
                    print(f"  grpc       c={conc:<4} {label} {np.median(mine):.0f} us: "
                          f"{np.median(mine) / np.median(base):.2f}x floor")
            if ours and base:
                line = (f"  grpc       c={conc:<4} ours {np.median(ours):.0f} us, floor "
                        f"{np.median(base):.0f} us: {np.median(ours) / np.median(base):.2f}x floor")
                if peer:
                    line += (f"; KServe {np.median(peer):.0f} us = "
                             f"{np.median(peer) / np.median(base):.2f}x floor")
                print(line)
    with open(os.path.join(args.out, "cpu-results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\nwrote {os.path.join(args.out, 'cpu-results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
