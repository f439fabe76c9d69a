// Validates rendered Kubernetes objects against the Kubernetes schemas (kubernetes-models)
// and the Prometheus Operator's (ServiceMonitor). Reads a JSON array of objects on stdin;
// prints a JSON array of {kind, name, error} for each object that fails, or has no schema.
import { readFileSync } from "node:fs";

/** The model class for an apiVersion and kind, e.g. apps/v1 StatefulSet; null if none. */
async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const path = group === "monitoring.coreos.com"
    ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`
    : group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
  try {
    return (await import(path))[kind] ?? null;
  } catch {
    return null;
  }
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const problems = [];
for (const object of objects) {
  const name = object.metadata?.name;
  const Model = await modelFor(object.apiVersion, object.kind);
  if (!Model) {
    problems.push({ kind: object.kind, name, error: `no schema for ${object.apiVersion} ${object.kind}` });
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    problems.push({ kind: object.kind, name, error: String(error.message ?? error) });
  }
}
console.log(JSON.stringify(problems));
