"""The modelserve Kubernetes operator: api -> render -> controllers."""

GROUP = "modelserve.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "modelserve-operator"
