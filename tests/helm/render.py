"""Lints and renders the Helm chart (deploy/helm/troupe) with Helm itself (helm-python-sdk,
no cluster needed) for each case of values, and prints one JSON object:
{"lint": {...}, "cases": {name: {"objects": [...]} or {"error": "..."}}}.

Usage: render.py CHART_DIR
"""
import json
import logging
import sys

import helm_python
import yaml

SECRET = {"existingSecret": "troupe-auth"}

CASES = {
    # The defaults: one node, embedded storage.
    "single": {"auth": SECRET},
    # A cluster of three with the chart's own NATS, autoscaling on CPU and turns/s, a
    # ServiceMonitor, the operator's token and a provider key from Secrets.
    "cluster": {
        "auth": {**SECRET, "opsTokenKey": "ops-token"},
        "replicaCount": 3,
        "cluster": {"enabled": True},
        "nats": {"deploy": True},
        "autoscaling": {"enabled": True, "turnsPerSecond": {"enabled": True}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        "secretEnv": [{"name": "OPENAI_API_KEY", "secretName": "llm-keys", "key": "openai"}],
        "env": [{"name": "RUST_LOG", "value": "info"}],
    },
    # A cluster on a NATS run elsewhere.
    "external-nats": {
        "auth": SECRET,
        "replicaCount": 2,
        "cluster": {"enabled": True, "natsUrl": "nats://nats.infra:4222"},
        "persistence": {"enabled": False},
    },
    # Values that cannot work.
    "no-secret": {},
    "replicas-without-cluster": {"auth": SECRET, "replicaCount": 3},
    "cluster-without-nats": {"auth": SECRET, "replicaCount": 2, "cluster": {"enabled": True}},
}


def render(chart, values):
    try:
        rendered = chart.render(values, name="home", namespace="assistant", is_install=True)
    except helm_python.HelmError as error:
        return {"error": str(error)}
    objects = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(document for document in yaml.safe_load_all(text) if document)
    return {"objects": objects}


def main() -> None:
    logging.disable(logging.CRITICAL)
    chart_dir = sys.argv[1]
    chart = helm_python.Chart.load(chart_dir)
    cases = {name: render(chart, values) for name, values in CASES.items()}
    print(json.dumps({"lint": helm_python.lint(chart_dir), "cases": cases}))


if __name__ == "__main__":
    main()
