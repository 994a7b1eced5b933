"""Kopf handlers and the reconcile loops they drive."""
