"""The modelserve Kubernetes operator: api -> render -> controllers."""

GROUP = "modelserve.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "modelserve-operator"
# Set by `modelserve rollback --canary` (or in git) to the revision a rollback should
# reach through the canary steps; without it a rollback to a retained revision is direct.
ROLLBACK_STEPS_ANNOTATION = f"{GROUP}/rollback-with-steps"
