"""Faults → Kubernetes manifests: Chaos Mesh objects where Chaos Mesh has the kind, else the kubectl
Job that causes the change (and puts it back after the duration).

Pure functions of the specs: nothing here needs a running shop. Selectors follow upstream Sock Shop's
``name: <service>`` labels (``selector_style="upstream"``) or sockdrill's own
``app.kubernetes.io/name`` labels. A recurring fault (``schedule``) becomes a Chaos Mesh ``Schedule``
(``spec.scheduler`` is gone since Chaos Mesh 2.0) or, for Jobs, a ``CronJob``.

    >>> from sockdrill.chaos.spec import parse_fault
    >>> docs = render_faults([parse_fault({"kind": "pod.kill", "target": "carts"})])
    >>> (docs[0]["kind"], docs[0]["spec"]["action"], docs[0]["spec"]["selector"]["labelSelectors"])
    ('PodChaos', 'pod-kill', {'name': 'carts'})
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from sockdrill.chaos.spec import FaultSpec, go_duration
from sockdrill.errors import FaultError

API = "chaos-mesh.org/v1alpha1"
MANAGED = {"app.kubernetes.io/managed-by": "sockdrill"}
# Where sockdrill's name differs from upstream's manifests (upstream's shipping queue is RabbitMQ).
UPSTREAM_NAMES = {"queue": "rabbitmq"}
# Container ports of the HTTP services (upstream: front-end 8079, the rest 80).
HTTP_PORTS = {"front-end": 8079}
JOB_ACCOUNT = "sockdrill-chaos"
KUBECTL_IMAGE = "bitnami/kubectl:1.30"


@dataclass(frozen=True)
class RenderOptions:
    namespace: str = "sock-shop"
    selector_style: Literal["upstream", "sockdrill"] = "upstream"


def service_name(name: str, opts: RenderOptions) -> str:
    return UPSTREAM_NAMES.get(name, name) if opts.selector_style == "upstream" else name


def labels(name: str, opts: RenderOptions) -> dict[str, str]:
    if opts.selector_style == "upstream":
        return {"name": service_name(name, opts)}
    return {"app.kubernetes.io/name": name}


def selector(name: str | None, opts: RenderOptions) -> dict[str, Any]:
    """Pods of one service, or (``None``) every pod of the namespace."""
    sel: dict[str, Any] = {"namespaces": [opts.namespace]}
    if name is not None:
        sel["labelSelectors"] = labels(name, opts)
    return sel


def http_port(name: str) -> int:
    return HTTP_PORTS.get(name, 80)


def object_name(spec: FaultSpec, suffix: str = "") -> str:
    if spec.name:
        base = spec.name
    else:
        base = f"{spec.kind.replace('.', '-').replace('_', '-')}-{spec.target.replace('->', '-to-')}"
        base = base.replace("*", "all")
    base = re.sub(r"[^a-z0-9-]", "-", (base + (f"-{suffix}" if suffix else "")).lower()).strip("-")
    return base[:63].rstrip("-")


def metadata(spec: FaultSpec, opts: RenderOptions, suffix: str = "",
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": object_name(spec, suffix), "namespace": opts.namespace,
                            "labels": {**MANAGED, "sockdrill.io/fault-kind": spec.kind.replace("_", "-")}}
    if annotations:
        meta["annotations"] = annotations
    return meta


def chaos_object(kind: str, spec: FaultSpec, opts: RenderOptions, body: dict[str, Any], *,
                 suffix: str = "", annotations: dict[str, str] | None = None,
                 with_duration: bool = True) -> dict[str, Any]:
    """A Chaos Mesh object (or a Schedule around it when the fault recurs)."""
    inner = dict(body)
    # A one-shot kind still needs a duration under a Schedule: with Forbid, a run that never ends
    # would block every later one.
    if with_duration or spec.schedule:
        inner["duration"] = go_duration(spec.duration_s)
    meta = metadata(spec, opts, suffix, annotations)
    if spec.schedule:
        key = kind[0].lower() + kind[1:]
        key = {"HTTPChaos": "httpChaos"}.get(kind, key)
        return {"apiVersion": API, "kind": "Schedule", "metadata": meta,
                "spec": {"schedule": spec.schedule, "type": kind, "historyLimit": 5,
                         "concurrencyPolicy": "Forbid", key: inner}}
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": inner}


def mode_fields(spec: FaultSpec) -> dict[str, Any]:
    # A named pod has no stable name on Kubernetes: "one pod of the service" is the honest equivalent.
    return {"mode": "one" if (spec.mode == "one" or spec.pod) else "all"}


def job(spec: FaultSpec, opts: RenderOptions, image: str, apply: str, restore: str, *,
        save: str = "", note: str = "") -> list[dict[str, Any]]:
    """A Job that applies a change, holds it for the duration and restores it (``save`` runs first and
    may store the previous value in shell variables that ``restore`` uses)."""
    secs = max(1, round(spec.duration_s))
    script = "set -eu\n" + (save + "\n" if save else "") + f"{apply}\n" + \
        f"trap '{_sq(restore)}' EXIT TERM INT\nsleep {secs}\n"
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{"name": "fault", "image": image, "command": ["/bin/sh", "-c", script]}],
    }
    if image == KUBECTL_IMAGE:
        pod_spec["serviceAccountName"] = JOB_ACCOUNT
    annotations = {"sockdrill.io/note": note} if note else None
    body = {"backoffLimit": 0, "activeDeadlineSeconds": secs + 120, "ttlSecondsAfterFinished": 600,
            "template": {"metadata": {"labels": dict(MANAGED)}, "spec": pod_spec}}
    meta = metadata(spec, opts, annotations=annotations)
    if spec.schedule:
        if spec.schedule.startswith("@every"):
            raise FaultError(f"schedule: {spec.kind} renders as a CronJob, which needs a cron expression, "
                             f"not {spec.schedule!r}")
        return [{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
                 "spec": {"schedule": spec.schedule, "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": body}}}]
    return [{"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": body}]


def _sq(text: str) -> str:
    return text.replace("'", "'\"'\"'")


def rbac(opts: RenderOptions) -> list[dict[str, Any]]:
    """What the kubectl Jobs need: patch deployments and set env, exec into pods, patch Istio routes."""
    meta = {"name": JOB_ACCOUNT, "namespace": opts.namespace, "labels": dict(MANAGED)}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [{"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"],
                    "verbs": ["get", "patch"]},
                   {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                   {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
                   {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices"],
                    "verbs": ["get", "patch", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": JOB_ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": JOB_ACCOUNT, "namespace": opts.namespace}]},
    ]


def quote(text: str) -> str:
    return shlex.quote(text)


def render_faults(specs: list[FaultSpec], opts: RenderOptions | None = None) -> list[dict[str, Any]]:
    """Every fault's manifests, plus the RBAC the kubectl Jobs need (once)."""
    from sockdrill.chaos.kinds import get_kind

    opts = opts or RenderOptions()
    docs: list[dict[str, Any]] = []
    for spec in specs:
        docs.extend(get_kind(spec.kind).render(spec, opts))
    if any(d.get("kind") in ("Job", "CronJob") and _uses_account(d) for d in docs):
        docs = rbac(opts) + docs
    return docs


def _uses_account(doc: dict[str, Any]) -> bool:
    spec = doc["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else spec["template"]
    return template["spec"].get("serviceAccountName") == JOB_ACCOUNT


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=120)
