//! The Helm chart (`deploy/helm/troupe`): Helm itself (helm-python-sdk, `tests/helm/render.py`)
//! lints it and renders it for one node, a cluster with the chart's own NATS, and a cluster
//! on an external NATS; every object validates against the Kubernetes schemas and the
//! Prometheus Operator's (`tests/helm/validate.mjs`, npm `kubernetes-models`); the pods are
//! non-root with a read-only root, probe `/healthz` and `/readyz`, take their tokens and
//! keys from existing Secrets; and values that cannot work are refused with what to change.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::python::python;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rendered() -> Value {
    let output = Command::new(python())
        .arg(root().join("tests/helm/render.py"))
        .arg(root().join("deploy/helm/troupe"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "render.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What the schemas find wrong with `objects` (nothing, when they are valid).
fn schema_problems(objects: &[Value]) -> Value {
    let mut node = Command::new("node")
        .arg("validate.mjs")
        .current_dir(root().join("tests/helm"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    node.stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(objects).unwrap())
        .unwrap();
    let output = node.wait_with_output().unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

fn objects<'a>(render: &'a Value, case: &str) -> &'a [Value] {
    render["cases"][case]["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("{case}: {}", render["cases"][case]))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|variable| variable["name"] == name)
}

#[test]
fn the_chart_lints_renders_and_validates_against_the_kubernetes_schemas() {
    let render = rendered();
    assert_eq!(render["lint"]["errors"], json!([]), "{}", render["lint"]);
    for case in ["single", "cluster", "external-nats"] {
        assert_eq!(schema_problems(objects(&render, case)), json!([]), "{case}");
    }

    // One node: a StatefulSet of one, its data on a volume, no NATS.
    let single = objects(&render, "single");
    let node = find(single, "StatefulSet", "home-troupe");
    assert_eq!(node["spec"]["replicas"], 1);
    assert_eq!(
        node["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "data"
    );
    let pod = &node["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        env_of(container, "TROUPE_TOKEN").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "troupe-auth", "key": "token"})
    );
    assert!(env_of(container, "TROUPE_NATS_URL").is_none());
    assert_eq!(
        find(single, "PodDisruptionBudget", "home-troupe")["spec"]["maxUnavailable"],
        1
    );
    assert!(
        !single
            .iter()
            .any(|object| object["kind"] == "HorizontalPodAutoscaler")
    );

    // A cluster: three nodes named by their pods, the chart's NATS, autoscaling on CPU and
    // turns/s, a ServiceMonitor reading /metrics with the operator's token.
    let cluster = objects(&render, "cluster");
    let nodes = find(cluster, "StatefulSet", "home-troupe");
    let container = &nodes["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_of(container, "TROUPE_NATS_URL").unwrap()["value"],
        "nats://home-troupe-nats:4222"
    );
    assert_eq!(
        env_of(container, "TROUPE_NODE_ID").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env_of(container, "TROUPE_OPS_TOKEN").unwrap()["valueFrom"]["secretKeyRef"]["key"],
        "ops-token"
    );
    assert_eq!(
        env_of(container, "OPENAI_API_KEY").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "llm-keys", "key": "openai"})
    );
    assert!(
        nodes["spec"]["replicas"].is_null(),
        "the autoscaler owns the count"
    );
    let nats = find(cluster, "StatefulSet", "home-troupe-nats");
    assert_eq!(nats["spec"]["replicas"], 3);
    let config = find(cluster, "ConfigMap", "home-troupe-nats")["data"]["nats.conf"]
        .as_str()
        .unwrap();
    assert!(
        config.contains("jetstream") && config.contains("home-troupe-nats-2.home-troupe-nats:6222"),
        "{config}"
    );
    let autoscaler = find(cluster, "HorizontalPodAutoscaler", "home-troupe");
    assert_eq!(autoscaler["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
    let metrics: Vec<&str> = autoscaler["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|metric| metric["type"].as_str().unwrap())
        .collect();
    assert_eq!(metrics, ["Resource", "Pods"]);
    let monitor = find(cluster, "ServiceMonitor", "home-troupe");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["key"],
        "ops-token"
    );
    // The Troupe service selects Troupe's pods only, not NATS's.
    let service = find(cluster, "Service", "home-troupe");
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/component"],
        "node"
    );

    let external = objects(&render, "external-nats");
    let container =
        &find(external, "StatefulSet", "home-troupe")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_of(container, "TROUPE_NATS_URL").unwrap()["value"],
        "nats://nats.infra:4222"
    );
    assert!(
        !external
            .iter()
            .any(|object| object["metadata"]["name"] == "home-troupe-nats")
    );
}

#[test]
fn values_that_cannot_work_are_refused_with_what_to_change() {
    let render = rendered();
    let refusal = |case: &str| {
        render["cases"][case]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        refusal("no-secret").contains("auth.existingSecret: name a Secret"),
        "{}",
        refusal("no-secret")
    );
    assert!(
        refusal("replicas-without-cluster").contains("more than one node needs cluster.enabled")
    );
    assert!(refusal("cluster-without-nats").contains("set cluster.natsUrl"));
}
