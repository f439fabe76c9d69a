// The operator's dashboard: one live stream of snapshots (`GET /api/v1/ops/stream`,
// Server-Sent Events read through fetch so that the token goes in a header, never in the
// URL), drawn into tables and SVG charts. Text only ever goes in through textContent.

const TOKEN_KEY = "troupe.token";
const HISTORY = 300; // points kept per chart: five minutes at one a second
const SVG = "http://www.w3.org/2000/svg";

const history = { turns: [], added: [], errors: [], tokens: [] };
const view = { period: "today", by: "person" };
let latest = null;

const $ = (id) => document.getElementById(id);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function number(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

function ms(value) {
  return value === null || value === undefined ? "–" : `${number(value, value < 10 ? 2 : 0)} ms`;
}

function ago(unixSeconds) {
  if (!unixSeconds) return "never";
  const seconds = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

/** Fills `table` with a header row and one row per item; a cell is text or a node. */
function table(table, headings, rows, empty) {
  table.replaceChildren();
  const head = element("tr");
  for (const heading of headings) head.append(element("th", heading));
  table.append(element("thead"));
  table.tHead.append(head);
  const body = element("tbody");
  if (rows.length === 0) {
    const row = element("tr");
    const cell = element("td", empty, "muted");
    cell.colSpan = headings.length;
    row.append(cell);
    body.append(row);
  }
  for (const cells of rows) {
    const row = element("tr");
    for (const cell of cells) {
      const td = element("td");
      if (cell instanceof Node) td.append(cell);
      else td.textContent = cell;
      row.append(td);
    }
    body.append(row);
  }
  table.append(body);
}

function badge(text, tone) {
  return element("span", text, `badge ${tone}`);
}

const BRIDGE_TONES = {
  connected: "good", starting: "neutral", standby: "neutral",
  backing_off: "bad", failed: "bad", stopped: "bad",
};
const BRIDGE_WORDS = {
  connected: "up", starting: "starting", standby: "standby (another node)",
  backing_off: "down (retrying)", failed: "down", stopped: "stopped",
};

/** A line chart of `points` into `svg`. */
/** The chart's drawing size: its size on screen, so that lines and labels stay crisp. */
function size(svg) {
  const width = Math.max(120, Math.round(svg.clientWidth || 300));
  const height = Math.max(60, Math.round(svg.clientHeight || 90));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  return { width, height };
}

function lineChart(svg, points) {
  const { width, height } = size(svg);
  const top = Math.max(1e-9, ...points.filter((point) => point !== null));
  const step = width / (HISTORY - 1);
  const start = HISTORY - points.length;
  const coordinates = points
    .map((point, index) => point === null ? null
      : `${((start + index) * step).toFixed(1)},${(height - 4 - (point / top) * (height - 12)).toFixed(1)}`)
    .filter((point) => point !== null);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", coordinates.join(" "));
  line.setAttribute("class", "line");
  svg.append(line);
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", "4");
  label.setAttribute("y", "12");
  label.setAttribute("class", "scale");
  label.textContent = `max ${number(top, top < 10 ? 2 : 0)}`;
  svg.append(label);
}

/** Bars of tokens per day. */
function barChart(svg, reported) {
  const { width, height } = size(svg);
  // Every one of the last seven days (UTC) has its slot, used or not.
  const byDay = new Map(reported.map((row) => [row.key, row]));
  const rows = [];
  for (let back = 6; back >= 0; back -= 1) {
    const key = new Date(Date.now() - back * 86400000).toISOString().slice(0, 10);
    rows.push(byDay.get(key) ?? { key, total_tokens: 0, cost: 0 });
  }
  const top = Math.max(1, ...rows.map((row) => row.total_tokens));
  const slot = width / rows.length;
  rows.forEach((row, index) => {
    const bar = document.createElementNS(SVG, "rect");
    const tall = (row.total_tokens / top) * (height - 24);
    bar.setAttribute("x", (index * slot + 4).toFixed(1));
    bar.setAttribute("y", (height - 14 - tall).toFixed(1));
    bar.setAttribute("width", (slot - 8).toFixed(1));
    bar.setAttribute("height", tall.toFixed(1));
    bar.setAttribute("class", "bar");
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${row.key}: ${number(row.total_tokens)} tokens, cost ${number(row.cost, 4)}`;
    bar.append(title);
    svg.append(bar);
    const day = document.createElementNS(SVG, "text");
    day.setAttribute("x", (index * slot + slot / 2).toFixed(1));
    day.setAttribute("y", String(height - 2));
    day.setAttribute("class", "scale middle");
    day.textContent = row.key.slice(5);
    svg.append(day);
  });
}

function remember(series, value) {
  series.push(value);
  if (series.length > HISTORY) series.shift();
}

function drawTraffic(traffic, providers) {
  const figures = [
    ["Turns / s", number(traffic.turns_per_sec, 1)],
    ["Messages in", number(traffic.messages_in)],
    ["Replies out", number(traffic.replies_out)],
    ["Sessions open", number(traffic.sessions_open)],
    ["Passivated", number(traffic.sessions_passivated)],
    ["Errors / s", number(traffic.errors_per_sec, 2)],
  ];
  $("figures").replaceChildren(...figures.map(([label, value]) => {
    const figure = element("div", null, "figure");
    figure.append(element("span", value, "value"), element("span", label, "label"));
    figure.dataset.figure = label;
    return figure;
  }));
  const tokens = providers.reduce((sum, provider) => sum + provider.tokens_per_min, 0);
  remember(history.turns, traffic.turns_per_sec);
  remember(history.added, traffic.stages.added.p99_ms);
  remember(history.errors, traffic.errors_per_sec);
  remember(history.tokens, tokens);
  lineChart($("chart-turns"), history.turns);
  lineChart($("chart-added"), history.added);
  lineChart($("chart-errors"), history.errors);
  lineChart($("chart-tokens"), history.tokens);
  const names = { queue: "Queue", model: "Model call", tools: "Tool round", store: "Store", added: "Added by Troupe" };
  table($("stages"), ["Stage", "p50", "p99"],
    Object.keys(names).filter((stage) => traffic.stages[stage])
      .map((stage) => [names[stage], ms(traffic.stages[stage].p50_ms), ms(traffic.stages[stage].p99_ms)]),
    "Nothing measured yet");
  table($("errors"), ["Code", "Turns", "Per second"],
    Object.entries(traffic.errors).sort((a, b) => b[1].total - a[1].total)
      .map(([code, count]) => [code, number(count.total), number(count.per_sec, 2)]),
    "No failed turns");
}

function drawBridges(bridges) {
  table($("bridges"), ["Bridge", "Kind", "State", "Received", "Answered", "Delivered", "Failed", "Last message", "Last error"],
    bridges.map((bridge) => {
      const state = badge(BRIDGE_WORDS[bridge.state] ?? bridge.state, BRIDGE_TONES[bridge.state] ?? "neutral");
      state.dataset.bridge = bridge.name;
      return [bridge.name, bridge.kind, state, number(bridge.messages_received),
        number(bridge.replies_answered), number(bridge.replies_delivered), number(bridge.deliveries_failed),
        ago(bridge.last_message_at), bridge.last_error ?? ""];
    }), "No bridges configured");
}

function drawProviders(providers) {
  table($("providers"), ["Provider", "Model", "Calls / s", "p50", "p99", "Errors", "Rate limited", "Fallbacks", "Tokens / min"],
    providers.map((provider) => {
      const errors = Object.entries(provider.errors).map(([kind, count]) => `${kind} ${number(count)}`).join(", ");
      return [`${provider.name} (${provider.kind})`, provider.model, number(provider.calls_per_sec, 2),
        ms(provider.latency.p50_ms), ms(provider.latency.p99_ms), errors || "none",
        number(provider.errors.rate_limited ?? 0), number(provider.fallbacks), number(provider.tokens_per_min)];
    }), "No providers");
}

function drawUsage(usage) {
  const report = usage[view.period][view.by];
  const rows = report.rows.map((row) => [row.key, number(row.turns), number(row.input_tokens),
    number(row.cache_read_tokens), number(row.output_tokens), number(row.total_tokens), number(row.cost, 4)]);
  const total = report.total;
  if (report.rows.length > 0) {
    rows.push([element("strong", "Total"), number(total.turns), number(total.input_tokens),
      number(total.cache_read_tokens), number(total.output_tokens), number(total.total_tokens),
      element("strong", number(total.cost, 4))]);
  }
  table($("usage"), [view.by[0].toUpperCase() + view.by.slice(1), "Turns", "Input", "Cached", "Output", "Total tokens", "Cost"],
    rows, "No tokens used in this period");
  barChart($("chart-days"), usage.days.rows);
}

function drawSkills(skills) {
  table($("skills"), ["Skill", "Kind", "State", "Calls", "Failures", "Last error"],
    skills.map((skill) => [skill.name, skill.kind,
      badge(skill.state, skill.state === "available" ? "good" : skill.state === "starting" ? "neutral" : "bad"),
      number(skill.calls), number(skill.failures), skill.last_error ?? ""]), "No skills");
}

function drawCluster(cluster) {
  const box = $("cluster");
  box.replaceChildren();
  if (!cluster) {
    box.append(element("p", "A single node with embedded storage (no NATS).", "muted"));
    return;
  }
  box.append(element("p", `This node: ${cluster.node_id} · NATS ${cluster.nats} · ${cluster.ready ? "ready" : "not ready"} · ${cluster.shards} shards, ${cluster.unowned_shards} unowned`));
  const members = element("table");
  table(members, ["Node", "Address", "Shards", "Last seen"],
    cluster.members.map((member) => [member.node_id, member.address ?? "", number(cluster.shards_by_owner[member.node_id] ?? 0),
      `${number(member.last_seen_ms)} ms ago`]), "No members");
  box.append(members);
  if (cluster.singletons.length > 0) {
    const singletons = element("table");
    table(singletons, ["Singleton", "Runs on"],
      cluster.singletons.map((singleton) => [singleton.name, singleton.node ?? "nobody (moving)"]), "");
    box.append(singletons);
  }
}

function drawTree(children) {
  const root = element("li", "NodeSupervisor");
  const list = element("ul");
  for (const child of children) {
    const item = element("li", child.name);
    if (child.restarts > 0) item.append(" ", badge(`${child.restarts} restarts`, "bad"));
    list.append(item);
  }
  root.append(list);
  $("tree").replaceChildren(root);
}

function drawWorkflows(workflows) {
  const box = $("workflows");
  if (!workflows) {
    box.replaceChildren(element("p", "Workflows are off on this node.", "muted"));
    return;
  }
  const figures = element("table");
  table(figures, ["Running", "Finished", "Failed", "Cancelled", "Resumed", "Retries", "Missed firings"],
    [[number(workflows.active), number(workflows.finished),
      workflows.failed > 0 ? badge(number(workflows.failed), "bad") : number(workflows.failed),
      number(workflows.cancelled), number(workflows.resumed), number(workflows.retried),
      workflows.missed > 0 ? badge(number(workflows.missed), "bad") : number(workflows.missed)]], "");
  const parts = [figures];
  if (workflows.running.length > 0) {
    const running = element("table");
    table(running, ["Run going on here", "Workflow", "Status", "Steps done", "Started"],
      workflows.running.map((run) => [run.run, run.workflow,
        run.status === "paused" ? badge("paused", "neutral") : run.status,
        number(run.steps_finished), new Date(run.started_ms).toLocaleString()]), "");
    running.dataset.runs = "";
    parts.push(running);
  }
  box.replaceChildren(...parts,
    element("p", `${number(workflows.started)} ${workflows.started === 1 ? "run" : "runs"} started since the node started · ${number(workflows.started_per_sec, 2)}/s lately. Each run step by step: troupe workflow logs <run>, or GET /api/v1/workflows/{name}/runs/{run}.`, "muted"));
}

function drawCanvas(overview) {
  const box = $("canvas");
  box.replaceChildren(element("p", `${number(overview.canvas.rooms_open)} canvas rooms open, ${number(overview.canvas.connections)} connections`));
  const models = overview.models?.models ?? [];
  const list = element("ul");
  for (const model of models) {
    list.append(element("li", `${model.name} (${model.kind}, serves ${model.serves}): ${model.ready ? "ready" : model.problem ?? "not ready"}`));
  }
  if (models.length > 0) box.append(list);
}

/** A trace id, linked to `telemetry.trace_url` when the node has one. */
function trace(id, template) {
  if (!id) return element("span", "no trace (export off)", "muted");
  const code = element("code", id);
  if (!template) return code;
  const link = element("a");
  link.href = template.replace("{trace_id}", encodeURIComponent(id));
  link.rel = "noopener noreferrer";
  link.target = "_blank";
  link.append(code);
  return link;
}

function drawFailed(failed, template) {
  table($("failed"), ["When", "Session", "Message", "Code", "What happened", "Trace"],
    failed.map((turn) => [ago(turn.at), turn.session, turn.message_id, turn.code, turn.message,
      trace(turn.trace_id, template)]),
    "No failed turns");
}

function draw(overview) {
  latest = overview;
  const node = overview.node;
  const status = $("status");
  status.textContent = `Live · v${node.version} · ${node.ready ? "ready" : `not ready: ${node.not_ready}`} · updated ${new Date(overview.at).toLocaleTimeString("en-GB")}`;
  status.className = `status ${node.ready ? "good" : "bad"}`;
  drawTraffic(overview.traffic, overview.providers);
  drawBridges(overview.bridges);
  drawProviders(overview.providers);
  drawUsage(overview.usage);
  drawSkills(overview.skills);
  drawCluster(overview.cluster);
  drawTree(overview.supervision);
  drawWorkflows(overview.workflows);
  drawCanvas(overview);
  drawFailed(overview.failed_turns, node.trace_url);
}

/** Reads the stream until it ends; calls `onEvent` with each parsed snapshot. */
async function follow(token, onEvent) {
  const response = await fetch("/api/v1/ops/stream", {
    headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
  });
  if (response.status === 401 || response.status === 403) throw new Error("unauthorized");
  if (!response.ok || !response.body) throw new Error(`the node answered ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split("\n");
      const name = lines.find((line) => line.startsWith("event:"))?.slice(6).trim() ?? "message";
      const data = lines.filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n");
      if (name === "overview" && data) onEvent(JSON.parse(data));
      else if (name === "error") $("status").textContent = `The node: ${data}`;
    }
  }
}

function askForToken(message) {
  $("board").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message ?? "";
  $("status").textContent = "Signed out";
  $("token").focus();
}

async function run() {
  const token = localStorage.getItem(TOKEN_KEY) ?? "";
  if (!token) {
    askForToken();
    return;
  }
  for (;;) {
    try {
      $("sign-in").hidden = true;
      $("board").hidden = false;
      await follow(token, draw);
    } catch (error) {
      if (error.message === "unauthorized") {
        askForToken("That token is not accepted.");
        return;
      }
      $("status").textContent = `Disconnected (${error.message}); reconnecting…`;
      $("status").className = "status bad";
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function choose(attribute, value) {
  for (const button of document.querySelectorAll(`[data-${attribute}]`)) {
    button.setAttribute("aria-pressed", String(button.dataset[attribute] === value));
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-period], button[data-by]");
  if (!button) return;
  if (button.dataset.period) { view.period = button.dataset.period; choose("period", view.period); }
  if (button.dataset.by) { view.by = button.dataset.by; choose("by", view.by); }
  if (latest) drawUsage(latest.usage);
});

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(TOKEN_KEY, $("token").value.trim());
  run();
});

run();
