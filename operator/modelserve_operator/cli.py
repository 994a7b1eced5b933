"""`modelserve` command line: run the operator, export models, drive rollouts."""

from __future__ import annotations

import argparse
import sys


def _operator_run(args: argparse.Namespace) -> int:
    import kopf
    import prometheus_client

    from modelserve_operator import logs
    from modelserve_operator.controllers import handlers, runtime
    from modelserve_operator.render import RenderSettings

    logs.setup(args.log_level, json_logs=not args.plain_logs)
    runtime.STATE.config = runtime.Config(
        workers=args.workers, resync_seconds=args.resync_seconds,
        render=RenderSettings(runtime_image=args.runtime_image),
        prometheus_url=args.prometheus_url,
        namespaces=[n for ns in args.namespace for n in ns.split(",") if n],
    )
    prometheus_client.start_http_server(args.metrics_port, addr=args.bind)
    namespaces = [n for ns in args.namespace for n in ns.split(",") if n]
    assert handlers  # imported for its Kopf registrations
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{args.bind}:{args.health_port}/healthz",
    )
    return 0


def _export(args: argparse.Namespace, rest: list[str]) -> int:
    from modelserve_runtime import export

    return export.main(rest)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="modelserve", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    operator = sub.add_parser("operator", help="run the Kubernetes operator")
    operator_sub = operator.add_subparsers(dest="action", required=True)
    run = operator_sub.add_parser("run", help="run the operator (wraps `kopf run`)")
    run.add_argument("--namespace", "-n", action="append", default=[],
                     help="watch only this namespace (repeat or comma-separate); "
                          "default: all namespaces")
    run.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics")
    run.add_argument("--health-port", type=int, default=8081, help="liveness /healthz")
    run.add_argument("--bind", default="0.0.0.0", help="address for metrics and health")
    run.add_argument("--workers", type=int, default=16, help="concurrent reconciles")
    run.add_argument("--resync-seconds", type=float, default=300.0,
                     help="re-check every ModelDeployment this often, events or not")
    run.add_argument("--runtime-image", default="ghcr.io/modelserve/runtime:0.1.0",
                     help="runtime image for versions that name none")
    run.add_argument("--prometheus-url", default=None,
                     help="Prometheus for canary analysis queries without an address")
    run.add_argument("--log-level", default="INFO")
    run.add_argument("--plain-logs", action="store_true", help="text logs instead of JSON")
    run.set_defaults(handler=_operator_run)

    export = sub.add_parser("export", add_help=False,
                            help="export a PyTorch module to ONNX (see `export --help`)")
    export.set_defaults(handler=None)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        return _export(argparse.Namespace(), argv[1:])
    args = parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
