#!/usr/bin/env python3
"""Lints and renders charts/weir-operator with Helm's own Go SDK (PyPI helm-python-sdk) and
checks what users rely on. Run through `make chart` (installs the SDK first).

Usage: check-chart.py [--output FILE] [--namespace NS] [--set key=value ...]
  --output FILE  also write the rendered manifests (CRDs first) for `kubectl apply -f FILE`.
Each check prints `ok <what>`; the first failure exits non-zero naming what is wrong.
"""
import argparse
import pathlib
import sys

import helm_python as helm
import yaml

HERE = pathlib.Path(__file__).resolve().parent
CHART = HERE / "weir-operator"
ROOT = HERE.parent


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)
    print(f"ok {what}")


def render(values=None, namespace="weir-system"):
    chart = helm.Chart.load(CHART)
    chart.validate_schema(values or {})
    out = chart.render(values or {}, name="weir", namespace=namespace, is_install=True)
    docs = []
    for path in sorted(p for p in out if p.endswith((".yaml", ".yml"))):
        for doc in yaml.safe_load_all(out[path]):
            if doc:
                docs.append(doc)
    return chart, docs


def find(docs, kind, name=None):
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(hits) != 1:
        fail(f"expected one {kind} {name or ''}, found {len(hits)}")
    return hits[0]


def allows(role, group, resource, verb):
    return any(
        group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r.get("verbs", [])
        for r in role["rules"]
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--output")
    ap.add_argument("--namespace", default="weir-system")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()

    report = helm.lint(str(CHART), strict=True, kube_version="v1.20.2")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
    check(not problems, f"helm lint --strict (kube 1.20.2): {problems or 'clean'}")

    chart_crds = []
    for name in ("streamjob.yaml", "streamjobsnapshot.yaml"):
        chart_crds.append((CHART / "crds" / name).read_text())
        check(chart_crds[-1] == (ROOT / "crds" / name).read_text(),
              f"chart CRD equals crds/{name} (operator/check-crds.sh --write regenerates both)")
    chart_crd = "\n---\n".join(c.rstrip() for c in chart_crds)

    chart, docs = render()
    dep = find(docs, "Deployment", "weir-weir-operator")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    check(c["image"] == f"weir-operator:{chart.metadata['appVersion']}", f"default image tag is the appVersion ({c['image']})")
    env = {e["name"]: e for e in c["env"]}
    check(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace",
          "POD_NAMESPACE from the downward API (leader election)")
    check(env["WEIR_OPERATOR_METRICS_ADDR"]["value"] == "0.0.0.0:8080", "metrics address from metrics.port")
    check(env["WEIR_OPERATOR_REQUIRE_SECURITY"]["value"] == "false", "jobSecurity.required is off by default")
    check(c["readinessProbe"]["httpGet"]["path"] == "/healthz" and c["livenessProbe"]["httpGet"]["port"] == "metrics",
          "liveness and readiness probes on /healthz")
    check(pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
          and c["securityContext"]["capabilities"]["drop"] == ["ALL"], "non-root, read-only root, no capabilities")
    sa = find(docs, "ServiceAccount")
    check(pod["serviceAccountName"] == sa["metadata"]["name"], "pod runs as the chart's ServiceAccount")

    role = find(docs, "ClusterRole")
    needed = [
        ("weir.dev", "streamjobs", v) for v in ("get", "list", "watch", "patch")
    ] + [("weir.dev", "streamjobs/status", "patch")] + [
        ("weir.dev", "streamjobsnapshots", v) for v in ("get", "list", "watch", "create", "patch", "delete")
    ] + [("weir.dev", "streamjobsnapshots/status", "patch"), ("weir.dev", "streamjobsnapshots/finalizers", "update")] + [
        ("apps", "deployments", v) for v in ("list", "watch", "patch", "delete")
    ] + [("", r, v) for r in ("services", "configmaps") for v in ("list", "watch", "patch", "delete")] + [
        ("", "pods", "list"), ("", "pods", "create"), ("", "pods", "deletecollection"), ("", "secrets", "get"), ("events.k8s.io", "events", "create"),
    ]
    missing = [n for n in needed if not allows(role, *n)]
    check(not missing, f"ClusterRole grants what the operator calls (missing: {missing or 'none'})")
    check(not allows(role, "", "secrets", "list") and not any("*" in r["verbs"] or "*" in r["resources"] for r in role["rules"]),
          "least privilege: no wildcards, secrets readable by name only")
    lease_role = find(docs, "Role")
    check(allows(lease_role, "coordination.k8s.io", "leases", "update")
          and lease_role["metadata"]["namespace"] == "weir-system", "Lease access only in the release namespace")
    binding = find(docs, "ClusterRoleBinding")
    check(binding["subjects"][0]["namespace"] == "weir-system", "binding names the release namespace")

    _, docs2 = render({"image": {"repository": "ghcr.io/acme/weir-operator", "tag": "1.2.3", "pullPolicy": "Always"},
                       "replicaCount": 2, "rbac": {"create": False}, "metrics": {"port": 9090, "service": {"enabled": False}}})
    dep2 = find(docs2, "Deployment")
    check(dep2["spec"]["replicas"] == 2 and dep2["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/acme/weir-operator:1.2.3",
          "image and replicas overrides")
    check(not [d for d in docs2 if d["kind"] in ("ClusterRole", "Role", "Service")], "rbac.create=false and metrics.service.enabled=false render no RBAC or Service")
    _, docs3 = render({"jobSecurity": {"required": True}})
    env3 = {e["name"]: e for e in find(docs3, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    check(env3["WEIR_OPERATOR_REQUIRE_SECURITY"]["value"] == "true", "jobSecurity.required=true tells the operator to require spec.security")

    _, docs4 = render({"watchNamespaces": ["team-a", "team-b"]})
    roles4 = [d for d in docs4 if d["kind"] == "Role" and d["metadata"]["namespace"] in ("team-a", "team-b")]
    bindings4 = [d for d in docs4 if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] in ("team-a", "team-b")]
    check(len(roles4) == 2 and len(bindings4) == 2 and all(allows(r, "", "secrets", "get") and allows(r, "weir.dev", "streamjobsnapshots", "create") for r in roles4),
          "watchNamespaces: a Role and RoleBinding with the operator's rules in each watched namespace")
    check(not [d for d in docs4 if d["kind"] in ("ClusterRole", "ClusterRoleBinding")], "watchNamespaces: no ClusterRole, so no Secret outside them is readable")
    env4 = {e["name"]: e for e in find(docs4, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    check(env4["WEIR_OPERATOR_WATCH_NAMESPACES"]["value"] == "team-a,team-b", "watchNamespaces reach the operator")
    check("WEIR_OPERATOR_WATCH_NAMESPACES" not in env, "cluster-wide by default")

    for bad, want in [({"replicaCount": "two"}, "replicaCount"), ({"imag": {}}, "imag"), ({"watchNamespaces": ["Team A"]}, "watchNamespaces")]:
        try:
            render(bad)
        except helm.HelmError as e:
            check(want in str(e), f"values schema rejects {bad} naming '{want}'")
        else:
            fail(f"values {bad} were accepted")
    try:
        render({"serviceAccount": {"create": False}})
    except helm.HelmError as e:
        check("serviceAccount.name is required" in str(e), "an external ServiceAccount must be named")
    else:
        fail("serviceAccount.create=false without a name rendered")

    if args.output:
        values = {}
        for kv in args.set:
            key, _, value = kv.partition("=")
            node = values
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = int(value) if value.isdigit() else value
        chart, docs = render(values, args.namespace)
        # Helm's install order: what a pod refers to (ServiceAccount, RBAC) before Deployments.
        order = ["Namespace", "ServiceAccount", "Secret", "ConfigMap", "ClusterRole", "ClusterRoleBinding",
                 "Role", "RoleBinding", "Service", "Deployment"]
        docs.sort(key=lambda d: order.index(d["kind"]) if d["kind"] in order else len(order))
        text = chart_crd.rstrip() + "\n---\n" + "\n---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
        pathlib.Path(args.output).write_text(text)
        print(f"wrote {args.output} ({len(docs)} objects + {len(chart_crds)} CRDs)")


if __name__ == "__main__":
    main()
