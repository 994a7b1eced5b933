"""Kubernetes plumbing: the API client facade, the in-memory view of the cluster the
watches keep, the work queue, leader election, the reconcile context and metrics."""
