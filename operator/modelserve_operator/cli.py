"""`modelserve` command line: run the operator, export models, drive rollouts."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelserve_operator.controllers.cluster.leader import LeaderConfig


def _operator_run(args: argparse.Namespace) -> int:
    import kopf
    import prometheus_client

    from modelserve_operator import logs
    from modelserve_operator.controllers import handlers, operator_process
    from modelserve_operator.render import RenderSettings

    logs.setup(args.log_level, json_logs=not args.plain_logs)
    operator_process.STATE.config = operator_process.Config(
        workers=args.workers, resync_seconds=args.resync_seconds,
        render=RenderSettings(runtime_image=args.runtime_image,
                              model_cache_path=args.model_cache_path,
                              model_cache_max_size=args.model_cache_max_size,
                              model_cache_default=args.model_cache_default),
        prometheus_url=args.prometheus_url,
        leader_election=_leader_config(args),
        namespaces=[n for ns in args.namespace for n in ns.split(",") if n],
    )
    prometheus_client.start_http_server(args.metrics_port, addr=args.bind)
    namespaces = [n for ns in args.namespace for n in ns.split(",") if n]
    assert handlers  # imported for its Kopf registrations
    from modelserve_operator.controllers.cluster import leader

    kopf.run(
        standalone=True,
        # Kopf would otherwise derive its identity from getpass.getuser(), which fails for
        # a uid without a passwd entry: exactly the chart's pod (runAsUser 65532).
        identity=args.leader_election_identity or leader.default_identity(),
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{args.bind}:{args.health_port}/healthz",
    )
    return 0


def _leader_config(args: argparse.Namespace) -> LeaderConfig | None:
    from modelserve_operator.controllers.cluster import leader

    if not args.leader_election:
        return None
    namespace = args.leader_election_namespace or _own_namespace()
    if not namespace:
        raise SystemExit("--leader-election needs --leader-election-namespace (or POD_NAMESPACE)")
    try:
        return leader.LeaderConfig(
            namespace=namespace, name=args.leader_election_name,
            identity=args.leader_election_identity or leader.default_identity(),
            lease_duration=args.leader_election_lease_duration,
            renew_deadline=args.leader_election_renew_deadline,
            retry_period=args.leader_election_retry_period)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def _own_namespace() -> str | None:
    import os

    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if os.path.exists(path):
        with open(path) as handle:
            return handle.read().strip()
    return None


def _rollout(args: argparse.Namespace) -> int:
    from modelserve_operator import commands

    commands.use_context(args.context)
    try:
        if args.command == "promote":
            out = commands.promote(args.name, args.namespace, full=args.full)
        elif args.command == "abort":
            out = commands.abort(args.name, args.namespace)
        elif args.command == "rollback":
            out = commands.rollback(args.name, args.namespace, args.to_revision, args.wait,
                                    timeout=args.timeout, canary=args.canary)
        elif args.command == "history":
            out = commands.history_table(args.name, args.namespace)
        else:
            out = commands.status_screen(args.name, args.namespace)
    except commands.CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from modelserve_operator import commands, predict

    try:
        print(predict.predict(args.name, args.namespace, args.input, args.request))
    except commands.CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
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
    run.add_argument("--workers", type=int, default=32, help="concurrent reconciles")
    run.add_argument("--resync-seconds", type=float, default=300.0,
                     help="re-check every ModelDeployment this often, events or not")
    run.add_argument("--runtime-image", default="ghcr.io/modelserve/runtime:0.1.0",
                     help="runtime image for versions that name none")
    run.add_argument("--prometheus-url", default=None,
                     help="Prometheus for canary analysis queries without an address")
    cache = run.add_argument_group("node-local model cache (docs/storage/node-cache.md)")
    cache.add_argument("--model-cache-path", default=None,
                       help="hostPath directory on every node for the model cache; "
                            "unset: no cache")
    cache.add_argument("--model-cache-max-size", default=None,
                       help="evict models no pod on the node uses beyond this size (200Gi)")
    cache.add_argument("--model-cache-default", action="store_true",
                       help="cache for ModelDeployments that do not set spec.modelCache")
    election = run.add_argument_group("leader election (run several replicas safely)")
    election.add_argument("--leader-election", action="store_true",
                          help="reconcile only while holding a coordination.k8s.io Lease")
    election.add_argument("--leader-election-namespace", default=None,
                          help="namespace of the Lease (default: POD_NAMESPACE or the "
                               "service account's namespace)")
    election.add_argument("--leader-election-name", default="modelserve-operator",
                          help="name of the Lease")
    election.add_argument("--leader-election-identity", default=None,
                          help="this replica's holderIdentity (default: POD_NAME + random)")
    election.add_argument("--leader-election-lease-duration", type=float, default=15.0,
                          help="seconds a standby waits after the last renewal it saw")
    election.add_argument("--leader-election-renew-deadline", type=float, default=10.0,
                          help="seconds a leader keeps trying to renew before it exits")
    election.add_argument("--leader-election-retry-period", type=float, default=2.0,
                          help="seconds between renewals / a standby's looks")
    run.add_argument("--log-level", default="INFO")
    run.add_argument("--plain-logs", action="store_true", help="text logs instead of JSON")
    run.set_defaults(handler=_operator_run)

    def rollout_command(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text)
        command.add_argument("name", help="ModelDeployment name")
        command.add_argument("--namespace", "-n", default=None,
                             help="default: the kubeconfig context's namespace")
        command.add_argument("--context", default=None,
                             help="kubeconfig context (default: the current one)")
        command.set_defaults(handler=_rollout)
        return command

    rollout_command("promote", "finish the current canary pause (--full: skip all steps)") \
        .add_argument("--full", action="store_true", help="promote to 100% now")
    rollout_command("abort", "send all traffic back to stable; canary to zero")
    rollback = rollout_command("rollback", "serve a retained revision again")
    rollback.add_argument("--to-revision", type=int, default=None,
                          help="revision to serve (default: the previous one)")
    rollback.add_argument("--canary", action="store_true",
                          help="go through the canary steps (default: serve the retained "
                               "revision straight away, as an emergency rollback should)")
    rollback.add_argument("--wait", action="store_true",
                          help="wait for what the rollback does: 100%% on the revision and "
                               "Ready (with --canary: or its first pause)")
    rollback.add_argument("--timeout", type=float, default=300,
                          help="seconds --wait waits (default 300)")
    rollout_command("history", "list retained revisions")
    rollout_command("status", "revisions, weights, analysis and recent events")

    predict = sub.add_parser(
        "predict", help="send one inference request through the model's Service",
        description="One Open Inference request through the ModelDeployment's user-facing "
                    "Service, via the API server's service proxy (needs services/proxy).")
    predict.add_argument("name", help="ModelDeployment name")
    predict.add_argument("--namespace", "-n", default=None)
    predict.add_argument("--input", action="append", default=[], metavar="NAME=JSON",
                         help="an input tensor as a JSON array, e.g. x='[[1, 2, 3, 4]]' "
                              "(repeat for several inputs)")
    predict.add_argument("--request", metavar="FILE",
                         help="a whole Open Inference request body (JSON) instead")
    predict.set_defaults(handler=_predict)

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
