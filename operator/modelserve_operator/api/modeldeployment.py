"""ModelDeployment: which ModelVersion should serve, and how traffic reaches it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from modelserve_operator.api.base import (
    FREE_FORM,
    ApiModel,
    Condition,
    EnvVar,
    cel,
    validations,
)
from modelserve_operator.api.modelversion import ModelVersionSpec

DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


class Pause(ApiModel):
    """Hold the rollout: for a duration, or until `modelserve promote` when empty."""

    duration: str | None = Field(
        None, description="How long to wait, e.g. 30s or 5m; empty waits for promote.",
        pattern=DURATION, max_length=32,
    )


class AnalysisStep(ApiModel):
    """Judge the canary with the named metrics (and the built-in pod health check)."""

    metrics: list[str] | None = Field(
        None, description="Names of entries in spec.rollout.analysis.metrics.", max_length=16
    )


class CanaryStep(ApiModel):
    """One step: exactly one of setWeight, pause or analysis."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "[has(self.setWeight), has(self.pause), has(self.analysis)]"
                ".filter(x, x).size() == 1",
                "each spec.rollout.canary.steps entry sets exactly one of setWeight, pause"
                " or analysis",
            ),
            cel(
                "!has(self.setWeight) || (self.setWeight >= 0 && self.setWeight <= 100)",
                "spec.rollout.canary.steps[].setWeight must be between 0 and 100",
                ".setWeight",
            ),
        )
    }

    set_weight: int | None = Field(None, description="Percent of traffic to the canary.")
    pause: Pause | None = Field(None, description="Wait before the next step.")
    analysis: AnalysisStep | None = Field(None, description="Run analysis before going on.")


class Canary(ApiModel):
    """Canary steps, run in order; the rollout promotes after the last one."""

    steps: list[CanaryStep] = Field(
        default_factory=list,
        description="Steps in order. setWeight values must not decrease.",
        max_length=64,
        json_schema_extra=validations(
            cel(
                "self.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
                "spec.rollout.canary.steps: setWeight values must not decrease"
                " (e.g. 10, 50, 100)",
            )
        ),
    )


class PrometheusQuery(ApiModel):
    """A PromQL query; {{namespace}}, {{deployment}}, {{revision}} are filled in."""

    address: str | None = Field(
        None, description="Prometheus base URL; defaults to the operator's setting.",
        max_length=1024,
    )
    query: str = Field(description="PromQL returning one number.", max_length=4096)


class AnalysisMetric(ApiModel):
    """A metric the canary must keep within bounds."""

    name: str = Field(description="Name that canary analysis steps refer to.", max_length=63)
    prometheus: PrometheusQuery = Field(description="Where the number comes from.")
    max: float | None = Field(None, description="Fail a measurement above this value.")
    min: float | None = Field(None, description="Fail a measurement below this value.")
    interval: str = Field("10s", description="Time between measurements.", pattern=DURATION)
    count: int = Field(3, ge=1, le=1000, description="Measurements per analysis step.")
    failure_limit: int = Field(
        0, ge=0, le=1000, description="Failed measurements tolerated before rollback."
    )


class Analysis(ApiModel):
    """Metrics available to canary analysis steps."""

    metrics: list[AnalysisMetric] = Field(
        default_factory=list, description="Named metrics.", max_length=16
    )


class Rollout(ApiModel):
    """How a new version replaces the serving one."""

    strategy: Literal["Canary", "Recreate", "Rolling"] = Field(
        "Rolling", description="Canary (steps), Recreate (stop old first) or Rolling."
    )
    canary: Canary | None = Field(None, description="Canary steps, for strategy Canary.")
    analysis: Analysis | None = Field(None, description="Metrics for analysis steps.")
    progress_deadline_seconds: int = Field(
        600, ge=1, le=86400,
        description="A canary not Ready within this long is rolled back.",
    )
    scale_down_delay_seconds: int = Field(
        30, ge=0, le=86400,
        description="Keep the previous stable scaled up this long after promotion.",
    )


class GatewayRef(ApiModel):
    """The Gateway the HTTPRoute and GRPCRoute attach to."""

    name: str = Field(description="Gateway name.", max_length=253)
    namespace: str | None = Field(None, description="Gateway namespace.", max_length=63)
    section_name: str | None = Field(None, description="Listener name.", max_length=253)


class Traffic(ApiModel):
    """How requests are split between stable and canary."""

    provider: Literal["service", "gateway-api", "istio"] = Field(
        "service",
        description="service (replica ratio), gateway-api (HTTPRoute and GRPCRoute) or istio.",
    )
    gateway_ref: GatewayRef | None = Field(None, description="For provider gateway-api.")
    hostnames: list[str] | None = Field(
        None, description="Hostnames for the route.", max_length=16
    )


class Autoscaling(ApiModel):
    """GPU-utilisation autoscaling through a HorizontalPodAutoscaler or KEDA."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas",
                ".minReplicas",
            ),
            cel(
                "self.targetGPUUtilization >= 1 && self.targetGPUUtilization <= 100",
                "spec.autoscaling.targetGPUUtilization must be a percent between 1 and 100",
                ".targetGPUUtilization",
            ),
            cel(
                "self.provider == 'keda' || self.minReplicas >= 1",
                "spec.autoscaling.minReplicas 0 needs provider keda: a"
                " HorizontalPodAutoscaler cannot scale to zero",
                ".minReplicas",
            ),
        )
    }

    min_replicas: int = Field(1, ge=0, le=10000, description="Fewest replicas.")
    max_replicas: int = Field(description="Most replicas.", ge=1, le=10000)
    target_gpu_utilization: int = Field(
        70, alias="targetGPUUtilization", description="Target mean GPU utilisation, percent."
    )
    provider: Literal["hpa", "keda"] = Field("hpa", description="hpa or keda.")
    metric_source: Literal["dcgm", "runtime"] = Field(
        "dcgm",
        description="dcgm (DCGM_FI_DEV_GPU_UTIL via Prometheus) or runtime (NVML gauge).",
    )
    target_queue_depth: int | None = Field(
        None, ge=1, description="Optional second target: queued requests per pod."
    )
    behavior: dict[str, Any] | None = Field(
        None, description="HPA behavior, passed through.", json_schema_extra=FREE_FORM
    )


class Fallback(ApiModel):
    """A lighter version kept warm to serve while the primary has no ready pods."""

    model_version: str = Field(description="ModelVersion to serve as fallback.", max_length=253)
    replicas: int = Field(1, ge=1, le=100, description="Replicas kept warm.")


class ProbeSettings(ApiModel):
    """Timing of one probe."""

    initial_delay_seconds: int | None = Field(None, ge=0, description="Delay before the first.")
    period_seconds: int | None = Field(None, ge=1, description="Time between probes.")
    timeout_seconds: int | None = Field(None, ge=1, description="Timeout of one probe.")
    failure_threshold: int | None = Field(None, ge=1, description="Failures before acting.")


class Probes(ApiModel):
    """Probe timings; the startup probe allows minutes for an engine build by default."""

    startup: ProbeSettings | None = Field(None, description="Startup probe.")
    readiness: ProbeSettings | None = Field(None, description="Readiness probe.")
    liveness: ProbeSettings | None = Field(None, description="Liveness probe.")


class PodOverrides(ApiModel):
    """Pod settings merged with the operator's (the operator's own entries win on clash)."""

    node_selector: dict[str, str] | None = Field(None, description="Extra node labels.")
    tolerations: list[dict[str, Any]] | None = Field(
        None, description="Extra tolerations.", json_schema_extra={"items": FREE_FORM}
    )
    affinity: dict[str, Any] | None = Field(
        None, description="Pod affinity, merged with GPU node affinity.",
        json_schema_extra=FREE_FORM,
    )
    annotations: dict[str, str] | None = Field(None, description="Pod annotations.")
    labels: dict[str, str] | None = Field(None, description="Pod labels.")
    env: list[EnvVar] | None = Field(None, description="Extra environment.", max_length=128)
    volumes: list[dict[str, Any]] | None = Field(
        None, description="Extra volumes.", json_schema_extra={"items": FREE_FORM}
    )
    volume_mounts: list[dict[str, Any]] | None = Field(
        None, description="Extra mounts in the runtime.", json_schema_extra={"items": FREE_FORM}
    )
    runtime_class_name: str | None = Field(None, description="e.g. nvidia.", max_length=253)
    service_account_name: str | None = Field(None, description="Pod identity.", max_length=253)
    image_pull_secrets: list[str] | None = Field(None, description="Pull secret names.")
    priority_class_name: str | None = Field(None, description="Priority class.")


class ModelCache(ApiModel):
    """The node-local model cache (installed through the chart's modelCache values)."""

    enabled: bool | None = Field(
        None,
        description="Download each model once per node and share it between this "
        "deployment's pods and restarts; unset follows the chart's modelCache.enabled.",
    )


class ModelDeploymentSpec(ApiModel):
    """Which version serves, how many replicas, and how new versions roll out."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.modelVersion) != has(self.template)",
                "set exactly one of spec.modelVersion or spec.template",
                ".modelVersion",
            ),
        )
    }

    model_version: str | None = Field(
        None, description="Name of the ModelVersion to serve.", max_length=253
    )
    template: ModelVersionSpec | None = Field(
        None,
        description="Inline ModelVersion spec; each change becomes a new owned ModelVersion.",
    )
    replicas: int = Field(1, ge=0, le=10000, description="Replicas when not autoscaled.")
    rollout: Rollout = Field(default_factory=Rollout, description="Rollout strategy.")
    traffic: Traffic = Field(default_factory=Traffic, description="Traffic routing.")
    autoscaling: Autoscaling | None = Field(None, description="Autoscaling on GPU use.")
    revision_history_limit: int = Field(
        10, ge=0, le=100, description="Old revisions kept for rollback."
    )
    fallback: Fallback | None = Field(None, description="Warm fallback version.")
    probes: Probes | None = Field(None, description="Probe timings.")
    pod: PodOverrides | None = Field(None, description="Pod settings merged with ours.")
    model_cache: ModelCache | None = Field(
        None, description="Node-local model cache: download once per node (needs sha256)."
    )


class HistoryEntry(ApiModel):
    """A revision this ModelDeployment has served."""

    revision: int = Field(description="Revision number.")
    model_version: str = Field(description="ModelVersion backing it.")
    started_at: str | None = Field(None, description="When it started serving.")
    stopped_at: str | None = Field(None, description="When it stopped serving.")
    outcome: str | None = Field(
        None, description="Serving, Superseded, RolledBack or Aborted."
    )


class RolloutControl(ApiModel):
    """Requests from `modelserve promote|abort`, written to status so spec never drifts."""

    promote: bool | None = Field(None, description="Finish the current pause step.")
    promote_full: bool | None = Field(None, description="Skip all remaining steps.")
    abort: bool | None = Field(None, description="Send all traffic back to stable.")


class Measurement(ApiModel):
    """One analysis measurement."""

    metric: str = Field(description="Analysis metric name.")
    value: float | None = Field(None, description="Measured value; empty when no data.")
    passed: bool = Field(description="Whether it was within bounds.")
    at: float = Field(description="When it was taken (Unix seconds).")


class AnalysisStatus(ApiModel):
    """Measurements of the running analysis step."""

    revision: int = Field(description="Canary revision analysed.")
    step: int = Field(description="Index of the analysis step.")
    measurements: list[Measurement] | None = Field(None, description="Taken so far.")
    message: str | None = Field(None, description="Summary of the verdict so far.")


class AutoscalerCondition(ApiModel):
    """One condition of the HorizontalPodAutoscaler, as it reported it."""

    type: str = Field(description="AbleToScale, ScalingActive or ScalingLimited.")
    status: str = Field(description='"True", "False" or "Unknown".')
    reason: str | None = Field(None, description="The HPA's reason, e.g. FailedGetPodsMetric.")
    message: str | None = Field(None, description="The HPA's message.")


class AutoscalingStatus(ApiModel):
    """What the HorizontalPodAutoscaler (KEDA's, for provider keda) last reported."""

    provider: str | None = Field(None, description="hpa or keda.")
    scale_target: str | None = Field(
        None, description="The Deployment it scales: always the stable revision's.")
    current_replicas: int | None = Field(None, description="Replicas the HPA last saw.")
    desired_replicas: int | None = Field(None, description="Replicas the HPA wants.")
    current_gpu_utilization: int | None = Field(
        None, alias="currentGPUUtilization",
        description="Mean GPU utilisation (percent) over the scaled pods, as the HPA sees it.")
    target_gpu_utilization: int | None = Field(
        None, alias="targetGPUUtilization", description="The target, percent.")
    current_queue_depth: str | None = Field(
        None, description="Mean queued requests per pod, when a queue-depth target is set.")
    last_scale_time: str | None = Field(None, description="When the HPA last scaled.")
    conditions: list[AutoscalerCondition] | None = Field(
        None, description="The HPA's own conditions.", max_length=8)


class ModelProgress(ApiModel):
    """How far the pods of the revision being rolled out are, while they are not Ready:
    read from their progress endpoint (the model download, then the runtime's load)."""

    phase: str = Field(description="What the slowest pod does: downloading, loading the "
                       "model, building engine, ...")
    message: str = Field(description="The same for people: pods, done / total, rate, time "
                         "left.")
    pods: int = Field(description="Pods of the revision that are not Ready yet.")
    unit: str | None = Field(None, description="What done and total count (bytes, ...).")
    done: int | None = Field(None, description="Units done by the slowest pod.")
    total: int | None = Field(None, description="Units in all, when known.")
    seconds_left: int | None = Field(None, description="Estimate for the slowest pod.")
    elapsed_seconds: int | None = Field(None, description="Seconds the slowest pod has "
                                        "spent in this phase.")
    updated_at: str = Field(description="When this was written (it is refreshed at most "
                            "every 10 s, or when it moved by 5%).")


class ModelDeploymentStatus(ApiModel):
    """What is serving, how ready it is, and how the rollout is going."""

    observed_generation: int | None = Field(None, description="Generation last reconciled.")
    conditions: list[Condition] | None = Field(
        None, description="Ready, Progressing, Degraded (Argo CD, kubectl wait); Reconciling "
        "and Stalled (kstatus: Flux, kpt).")
    phase: str | None = Field(None, description="Ready, Progressing, Paused or Degraded.")
    replicas: int | None = Field(None, description="Pods of the serving revision.")
    ready_replicas: int | None = Field(None, description="Ready pods.")
    desired_replicas: int | None = Field(None, description="Wanted pods.")
    ready: str | None = Field(None, description="ready/desired, for kubectl get.")
    selector: str | None = Field(None, description="Pod label selector (scale subresource).")
    revision: int | None = Field(None, description="Stable (serving) revision.")
    model_version: str | None = Field(None, description="ModelVersion of the stable revision.")
    canary_revision: int | None = Field(None, description="Canary revision, while one runs.")
    canary_model_version: str | None = Field(None, description="Canary's ModelVersion.")
    canary_weight: int | None = Field(None, description="Percent of traffic on the canary.")
    current_step: int | None = Field(None, description="Index of the running canary step.")
    endpoint: str | None = Field(None, description="In-cluster URL of the inference API.")
    history: list[HistoryEntry] | None = Field(None, description="Revisions, newest first.")
    template_hash: str | None = Field(None, description="Hash of spec.template last seen.")
    step_started_at: float | None = Field(
        None, description="When the current canary step began (Unix seconds).")
    aborted_revision: int | None = Field(
        None, description="Revision rolled back; it is not retried until the spec changes.")
    previous_revision: int | None = Field(
        None, description="Previous stable, kept scaled up for a fast rollback.")
    previous_retire_at: float | None = Field(
        None, description="When the previous stable is scaled away (Unix seconds).")
    fallback_active: bool | None = Field(
        None, description="True while the fallback version takes the traffic.")
    traffic_note: str | None = Field(None, description="How the weight is realised.")
    traffic_provider: str | None = Field(
        None, description="The traffic provider whose routing objects were last applied; "
        "when spec.traffic.provider changes, the old provider's objects are deleted.")
    control: RolloutControl | None = Field(
        None, description="Pending promote/abort requests (written by the CLI).")
    analysis: AnalysisStatus | None = Field(None, description="Running analysis.")
    autoscaling: AutoscalingStatus | None = Field(
        None, description="The autoscaler's view, while spec.autoscaling is set.")
    model_progress: ModelProgress | None = Field(
        None, description="Download and load progress of the revision being rolled out, "
        "while its pods are not Ready.")

    @classmethod
    def read(cls, raw: dict[str, Any] | None) -> ModelDeploymentStatus:
        """The status as stored, read through this model. A field this version does not
        know (one an older operator wrote) is left out, as the API server prunes it, so
        reading never fails on an object written by another version."""
        return cls.model_validate(
            {k: v for k, v in (raw or {}).items() if k in _STATUS_WIRE_NAMES})

    def condition(self, type_: str) -> Condition | None:
        """The condition of this type, if set."""
        return next((c for c in self.conditions or () if c.type == type_), None)


# The stored names (camelCase) of the status fields, for read().
_STATUS_WIRE_NAMES = frozenset(f.alias or n for n, f in ModelDeploymentStatus.model_fields.items())
