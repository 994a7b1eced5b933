"""Labels and selectors of everything modelserve renders.

Selector rules, because a Deployment's selector can never change after creation:
- A revision's Deployment selects `deployment + revision + pool`. `role` is deliberately
  absent: a canary becomes the stable when promoted, and its Deployment must not have to
  be recreated for that.
- `role` is put on the Deployment and its Service, not on the pod template: a pod
  template change rolls every pod, and promotion must not restart the canary at the
  moment it takes all traffic. Queries per revision use the `revision` label instead.
- `pool` ("primary" or "fallback") is fixed for a Deployment's life. It keeps the
  fallback's pods out of the revisions' selectors (whatever revision number the fallback
  carries) and out of the user-facing Service, which selects `deployment + pool=primary`,
  so with the `service` traffic provider stable and canary share traffic by replica ratio.
"""

from __future__ import annotations

from modelserve_operator.render.names import label_value

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
MANAGED_BY = "app.kubernetes.io/managed-by"
APP_VERSION = "app.kubernetes.io/version"
DEPLOYMENT = "modelserve.io/deployment"
REVISION = "modelserve.io/revision"
ROLE = "modelserve.io/role"
POOL = "modelserve.io/pool"

MODEL_VERSION_ANNOTATION = "modelserve.io/model-version"
VERSION_HASH_ANNOTATION = "modelserve.io/version-hash"

RUNTIME_NAME = "modelserve-runtime"
ROLES = ("stable", "canary", "fallback")


def pool_of(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return "fallback" if role == "fallback" else "primary"


def common_labels(md_name: str) -> dict[str, str]:
    """Labels on every object of one ModelDeployment (`kubectl get all -l …` finds them)."""
    return {
        NAME: RUNTIME_NAME,
        INSTANCE: label_value(md_name),
        MANAGED_BY: "modelserve",
        DEPLOYMENT: label_value(md_name),
    }


def selector_labels(md_name: str, revision: int, role: str) -> dict[str, str]:
    """The immutable selector of a revision's Deployment and Service (see module doc)."""
    selector = {DEPLOYMENT: label_value(md_name), POOL: pool_of(role)}
    if role != "fallback":
        # The fallback has one Deployment whose version may change: a revision in its
        # selector would make that change impossible without recreating it.
        selector[REVISION] = str(revision)
    return selector


def serving_selector(md_name: str) -> dict[str, str]:
    """Pods that serve user traffic: every primary revision of this ModelDeployment.

    Also what the controllers publish as `status.selector` for the scale subresource.
    """
    return {DEPLOYMENT: label_value(md_name), POOL: "primary"}


def pod_labels(md_name: str, version_name: str, revision: int, role: str) -> dict[str, str]:
    """Labels of the pod template: nothing here may change when a canary is promoted."""
    return {
        **common_labels(md_name),
        APP_VERSION: label_value(version_name),
        REVISION: str(revision),
        POOL: pool_of(role),
    }


def revision_labels(md_name: str, revision: int, role: str) -> dict[str, str]:
    """Labels of a revision's Deployment and Service metadata (role may change here)."""
    return {**common_labels(md_name), REVISION: str(revision), ROLE: role, POOL: pool_of(role)}
