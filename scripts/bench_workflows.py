#!/usr/bin/env python3
"""The workflow numbers of docs/benchmarks.md, against a node already running on URL.

steps   RUNS runs of STEPS calculator steps each, started at once: steps/s until all ended.
lag     a workflow firing every second: how late each firing's first step began after its
        due time (read from the journals), over FIRINGS firings.
start   starts a run that waits 2 s, then calls a tool, and prints its id, for the caller to
        kill the node at once and start it again after the wait's end; `recovered RUN MS`
        then prints how long after MS (unix ms, when the node was started again) the run
        journaled its next step.
chain   starts a run of 100 waits of 100 ms and prints its id; `moved RUN MS` then prints how
        long after MS (unix ms, when the run's node was killed) another node journaled the
        run's next record, and waits for the run to finish.

Standard library only (the node's own API)."""

import json
import sys
import time
import urllib.request

URL = sys.argv[1]


def call(method, path, body=None, content_type="application/json"):
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data=data, method=method)
    request.add_header("content-type", content_type)
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
        return json.loads(text) if text else None


def put(toml):
    call("POST", "/api/v1/workflows", toml, "application/toml")


def run_of(workflow, run):
    return call("GET", f"/api/v1/workflows/{workflow}/runs/{run}")


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def steps(runs, count):
    lines = [f'name = "steps"', 'owner = "person:bench"']
    for index in range(count):
        lines += ["[[steps]]", f'id = "s{index}"', 'tool = "calculator.evaluate"',
                  f'arguments = {{ expression = "{index} * 2" }}']
    put("\n".join(lines) + "\n")
    started = time.monotonic()
    ids = [call("POST", "/api/v1/workflows/steps/runs", {})["run"]["run"] for _ in range(runs)]
    pending = set(ids)
    while pending:
        for run in list(pending):
            if run_of("steps", run)["run"]["status"] != "running":
                pending.discard(run)
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    failed = [run for run in ids if run_of("steps", run)["run"]["status"] != "finished"]
    print(f"{runs} runs x {count} steps = {runs * count} steps in {elapsed:.2f} s: "
          f"{runs * count / elapsed:.0f} steps/s; failed runs: {len(failed)}")


def lag(firings):
    put('name = "tick"\nowner = "person:bench"\n[[triggers]]\nevery = "1s"\n'
        '[[steps]]\nid = "a"\ntool = "time.now"\n')
    time.sleep(firings + 2)
    call("DELETE", "/api/v1/workflows/tick")
    lags = []
    for summary in call("GET", "/api/v1/workflows/tick/runs")["runs"]:
        journal = run_of("tick", summary["run"])["journal"]
        due = summary["cause"]["due_ms"]
        first = next(record["at"] for record in journal if record["type"] == "step_started")
        lags.append(first - due)
    lags = lags[:firings]
    print(f"{len(lags)} firings, due to first step: p50 {percentile(lags, 0.5)} ms, "
          f"p99 {percentile(lags, 0.99)} ms, max {max(lags)} ms")


def start_waiting():
    put('name = "napper"\nowner = "person:bench"\n[[steps]]\nid = "nap"\nwait = "2s"\n'
        '[[steps]]\nid = "after"\ntool = "time.now"\n')
    print(call("POST", "/api/v1/workflows/napper/runs", {})["run"]["run"])


def recovered(run, spawned_ms):
    while True:
        journal = run_of("napper", run)["journal"]
        later = [record["at"] for record in journal if record["at"] >= spawned_ms]
        if later:
            print(f"the run journaled its next step {later[0] - spawned_ms} ms after the node "
                  "was started again (its wait had ended while the node was down)")
            return
        time.sleep(0.01)


def chain():
    lines = ['name = "chain"', 'owner = "person:bench"']
    for index in range(100):
        lines += ["[[steps]]", f'id = "w{index}"', 'wait = "100ms"']
    put("\n".join(lines) + "\n")
    print(call("POST", "/api/v1/workflows/chain/runs", {})["run"]["run"])


def moved(run, killed_ms):
    while True:
        try:
            shown = run_of("chain", run)
        except OSError:
            time.sleep(0.01)
            continue
        later = [record["at"] for record in shown["journal"] if record["at"] >= killed_ms]
        if later:
            print(f"another node journaled the run's next record {later[0] - killed_ms} ms "
                  "after its node was killed")
            break
        time.sleep(0.01)
    while run_of("chain", run)["run"]["status"] == "running":
        time.sleep(0.1)
    print(f"the run ended: {run_of('chain', run)['run']['status']}")


if __name__ == "__main__":
    section = sys.argv[2]
    if section == "steps":
        steps(int(sys.argv[3]), int(sys.argv[4]))
    elif section == "lag":
        lag(int(sys.argv[3]))
    elif section == "start":
        start_waiting()
    elif section == "recovered":
        recovered(sys.argv[3], int(sys.argv[4]))
    elif section == "chain":
        chain()
    elif section == "moved":
        moved(sys.argv[3], int(sys.argv[4]))
