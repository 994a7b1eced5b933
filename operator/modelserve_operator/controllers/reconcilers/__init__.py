"""Reconcilers: read the cluster view, ask `decisions`, render, apply through `cluster`.

model_deployment  one ModelDeployment, in per-concern steps
model_version     one ModelVersion's validity
version_lookup    which ModelVersion the spec asks for (template snapshots)
analysis          the Prometheus measurements of a canary's analysis step
autoscaling       the HPA / KEDA ScaledObject and the replica hand-over
"""
