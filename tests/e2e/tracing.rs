//! Distributed tracing, end to end: real `troupe` processes export their spans over
//! OTLP/gRPC to a real collector (`rotel-agent`), and the spans it received must form one
//! trace per message: the client's `traceparent` is its parent, and in a cluster the hop
//! from the ingress node to the session's owner stays in the same trace.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use troupe_testkit::cluster::ClusterSandbox;
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::otlp::{ExportedSpan, OtlpReceiver};
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, connect, frames_until_final, openai_provider, send};

const ECHO: &str = "[[providers]]\nname = \"main\"\nkind = \"echo\"\n";
/// Export batches every 100 ms instead of every 5 s, so the tests wait less.
const FAST_EXPORT: (&str, &str) = ("OTEL_BSP_SCHEDULE_DELAY", "100");

fn traceparent(trace: u32, span: u32) -> (String, String, String) {
    let trace_id = format!("{trace:032x}");
    let span_id = format!("{span:016x}");
    let header = format!("00-{trace_id}-{span_id}-01");
    (header, trace_id, span_id)
}

/// An echo node exporting its spans to `endpoint`.
async fn traced_echo_node(endpoint: &str) -> TroupeProcess {
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), FAST_EXPORT];
    TroupeProcess::start_with_env(binary(), ECHO, &env)
        .await
        .expect("troupe starts")
}

/// The echo model's call, named as OpenTelemetry's GenAI conventions name model calls.
const MODEL_CALL: &str = "chat echo";
/// The spans of one turn on a single node.
const TURN_SPANS: [&str; 4] = ["gateway_turn", "session_turn", MODEL_CALL, "snapshot_save"];
/// The test double's model's call (the cluster test's provider).
const FAKE_MODEL_CALL: &str = "chat fake-model";
/// The spans of one turn that crosses from an ingress node to the session's owner.
const HOP_SPANS: [&str; 5] = [
    "gateway_turn",
    "cluster_ingress",
    "cluster_turn",
    "session_turn",
    FAKE_MODEL_CALL,
];

fn count(spans: &[ExportedSpan], name: &str) -> usize {
    spans.iter().filter(|span| span.name == name).count()
}

fn in_trace<'a>(spans: &'a [ExportedSpan], trace_id: &str) -> Vec<&'a ExportedSpan> {
    spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .collect()
}

fn named<'a>(spans: &[&'a ExportedSpan], name: &str) -> &'a ExportedSpan {
    let found: Vec<_> = spans.iter().filter(|span| span.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span in {spans:#?}");
    found[0]
}

async fn post_traced(base: &str, sender: &str, text: &str, traceparent: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/messages"))
        .header("traceparent", traceparent)
        .json(&json!({"sender_id": sender, "payload": text}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the request is answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_trace_continues_through_every_span_of_its_turn() {
    let collector = OtlpReceiver::start().await;
    let endpoint = collector.endpoint();
    let node = traced_echo_node(&endpoint).await;

    let (rest_header, rest_trace, rest_parent) = traceparent(0xa1, 0xb1);
    let response = post_traced(&node.http_url(), "alice", "over rest", &rest_header).await;
    assert_eq!(response.status(), StatusCode::OK);

    let (ws_header, ws_trace, ws_parent) = traceparent(0xa2, 0xb2);
    let mut socket = connect(&node, &[]).await;
    let frame =
        json!({"type": "message", "id": "w1", "payload": "over ws", "traceparent": ws_header});
    send(&mut socket, frame).await;
    let frames = frames_until_final(&mut socket, "w1").await;
    assert_eq!(frames.last().unwrap()["type"], "reply", "{frames:?}");

    // A malformed header is ignored: the turn is answered and starts a trace of its own.
    let response = post_traced(&node.http_url(), "bob", "bad header", "00-zz-yy-01").await;
    assert_eq!(response.status(), StatusCode::OK);
    let bob_reply: Value = response.json().await.unwrap();
    let bob_message = bob_reply["reply"]["in_reply_to"]
        .as_str()
        .unwrap()
        .to_owned();

    let spans = collector
        .wait_for(Duration::from_secs(20), |spans| {
            TURN_SPANS.iter().all(|name| count(spans, name) >= 3)
        })
        .await;

    let rest = in_trace(&spans, &rest_trace);
    let gateway = named(&rest, "gateway_turn");
    assert_eq!(
        gateway.parent_id, rest_parent,
        "the client's span is the parent"
    );
    assert_eq!(gateway.kind, "SPAN_KIND_SERVER");
    assert_eq!(gateway.attributes["access"], "api");
    assert_eq!(gateway.resource["service.name"], "troupe");
    let turn = named(&rest, "session_turn");
    assert_eq!(turn.parent_id, gateway.span_id);
    assert_eq!(turn.attributes["session"], "api:alice");
    let model = named(&rest, MODEL_CALL);
    assert_eq!(model.parent_id, turn.span_id);
    assert_eq!(model.kind, "SPAN_KIND_CLIENT");
    for (attribute, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "echo"),
        ("gen_ai.request.model", "echo"),
        ("gen_ai.conversation.id", "api:alice"),
        ("gen_ai.response.finish_reasons", "stop"),
    ] {
        assert_eq!(model.attributes[attribute], value, "{attribute}: {model:?}");
    }
    assert_eq!(named(&rest, "snapshot_save").parent_id, turn.span_id);

    let ws = in_trace(&spans, &ws_trace);
    let gateway = named(&ws, "gateway_turn");
    assert_eq!(gateway.parent_id, ws_parent);
    assert_eq!(gateway.attributes["access"], "ws");
    assert_eq!(gateway.attributes["message_id"], "w1");
    assert_eq!(named(&ws, "session_turn").parent_id, gateway.span_id);

    let bob = spans
        .iter()
        .find(|span| span.name == "gateway_turn" && span.attributes["message_id"] == bob_message)
        .expect("the turn with a malformed header is traced too");
    assert_eq!(bob.parent_id, "", "a new root");
    assert_ne!(bob.trace_id, "0".repeat(32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_covers_a_message_from_its_ingress_node_to_its_owner() {
    let collector = OtlpReceiver::start().await;
    let endpoint = collector.endpoint();
    let fake = FakeLlm::start(None).await;
    let config = openai_provider(&fake.openai_base_url(), "");
    let cluster = ClusterSandbox::start_with_env(
        binary(),
        2,
        &config,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            FAST_EXPORT,
        ],
    )
    .await
    .unwrap();
    cluster
        .wait_settled(0, &["node-0", "node-1"], 64, Duration::from_secs(20))
        .await
        .unwrap();
    // Enough conversations that some are owned by node-1.
    let mut traces = Vec::new();
    for conversation in 0..16u32 {
        let (header, trace_id, parent) = traceparent(0xc000 + conversation, 0xd000 + conversation);
        let sender = format!("t{conversation}");
        let response = post_traced(&cluster.nodes[0].http_url(), &sender, "hi", &header).await;
        assert_eq!(response.status(), StatusCode::OK);
        traces.push((trace_id, parent));
    }
    let spans = collector
        .wait_for(Duration::from_secs(20), |spans| {
            // Each node exports in its own batches: wait for every span of every trace.
            HOP_SPANS
                .iter()
                .all(|name| count(spans, name) >= traces.len())
        })
        .await;
    let mut crossed = 0;
    for (trace_id, parent) in &traces {
        let trace = in_trace(&spans, trace_id);
        let gateway = named(&trace, "gateway_turn");
        assert_eq!(&gateway.parent_id, parent);
        assert_eq!(gateway.resource["service.instance.id"], "node-0");
        let ingress = named(&trace, "cluster_ingress");
        assert_eq!(ingress.parent_id, gateway.span_id);
        assert_eq!(ingress.kind, "SPAN_KIND_PRODUCER");
        let owner_turn = named(&trace, "cluster_turn");
        assert_eq!(
            owner_turn.parent_id, ingress.span_id,
            "the hop stays in the trace"
        );
        assert_eq!(owner_turn.kind, "SPAN_KIND_CONSUMER");
        let owner = &owner_turn.resource["service.instance.id"];
        assert_eq!(&owner_turn.attributes["node"], owner);
        let turn = named(&trace, "session_turn");
        assert_eq!(turn.parent_id, owner_turn.span_id);
        assert_eq!(&turn.resource["service.instance.id"], owner);
        assert_eq!(named(&trace, FAKE_MODEL_CALL).parent_id, turn.span_id);
        if owner == "node-1" {
            crossed += 1;
        }
    }
    assert!(crossed > 0, "node-1 owns some of the sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_nothing_but_its_spans() {
    // Nothing listens on the endpoint: every export fails, every turn must still be answered
    // and the node must still stop cleanly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut node = traced_echo_node(&endpoint).await;
    for turn in 0..20 {
        let (header, ..) = traceparent(0xe000 + turn, 0xf000 + turn);
        let response = post_traced(&node.http_url(), "carol", "hello", &header).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let exit = node.terminate(Duration::from_secs(20)).await.unwrap();
    assert_eq!(exit, Some(0), "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_otlp_endpoint_is_refused_at_start_up_naming_its_key() {
    let error = TroupeProcess::start_with_env(
        binary(),
        ECHO,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")],
    )
    .await
    .err()
    .expect("no node with a bad endpoint")
    .to_string();
    assert!(error.contains("telemetry.otlp_endpoint"), "{error}");
}

#[tokio::test]
async fn model_and_tool_calls_follow_the_gen_ai_conventions_with_the_usage_reported() {
    let collector = OtlpReceiver::start().await;
    let fake = FakeLlm::start(None).await;
    fake.script([
        FakeReply::ToolCall {
            id: "call_1".into(),
            name: "calculator__evaluate".into(),
            argument_pieces: vec![r#"{"expression":"#.into(), r#""6 * 7"}"#.into()],
        },
        FakeReply::Text(vec!["It is ".into(), "42.".into()]),
    ]);
    let config = format!(
        "{}\n[[skills]]\nkind = \"builtin\"\nname = \"calculator\"\n",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = crate::support::traced_node(&config, &collector).await;
    let answer = crate::support::http()
        .post(format!("{}/api/v1/messages", node.http_url()))
        .json(&json!({"sender_id": "ada", "payload": "what is 6 times 7?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // The model was asked for its usage in the stream (OpenAI's `stream_options`).
    let asked = fake.requests();
    assert_eq!(
        asked[0].body["stream_options"],
        json!({"include_usage": true})
    );

    let spans = collector
        .wait_for(Duration::from_secs(20), |spans| {
            count(spans, FAKE_MODEL_CALL) >= 2
                && count(spans, "execute_tool calculator__evaluate") >= 1
        })
        .await;
    let calls: Vec<&ExportedSpan> = spans
        .iter()
        .filter(|span| span.name == FAKE_MODEL_CALL)
        .collect();
    assert_eq!(calls.len(), 2, "{spans:?}");
    let expected_usage = [("tool_calls", "2"), ("stop", "2")];
    for (call, (finish, output)) in calls.iter().zip(expected_usage) {
        assert_eq!(call.kind, "SPAN_KIND_CLIENT");
        for (attribute, value) in [
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "fake-model"),
            ("gen_ai.conversation.id", "api:ada"),
            ("gen_ai.usage.input_tokens", "5"),
            ("gen_ai.usage.output_tokens", output),
            ("gen_ai.response.finish_reasons", finish),
        ] {
            assert_eq!(call.attributes[attribute], value, "{attribute}: {call:?}");
        }
    }
    let tool = spans
        .iter()
        .find(|span| span.name == "execute_tool calculator__evaluate")
        .unwrap();
    assert_eq!(tool.attributes["gen_ai.operation.name"], "execute_tool");
    assert_eq!(tool.attributes["gen_ai.tool.name"], "calculator__evaluate");
    assert_eq!(tool.attributes["gen_ai.tool.call.id"], "call_1");
    assert_eq!(tool.trace_id, calls[0].trace_id, "one turn, one trace");

    // The same usage on /metrics, under the conventions' names.
    let metrics = crate::support::metrics_page(&node.http_url()).await;
    for line in [
        "gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"fake-model\",gen_ai_token_type=\"input\"} 10",
        "gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"fake-model\",gen_ai_token_type=\"output\"} 4",
        "gen_ai_client_operation_duration_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"fake-model\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_turn_on_the_dashboard_carries_the_trace_its_spans_were_exported_under() {
    let collector = OtlpReceiver::start().await;
    let fake = FakeLlm::start(None).await;
    fake.script([FakeReply::Status {
        status: 401,
        retry_after: None,
        message: "bad key".into(),
    }]);
    let config = format!(
        "[telemetry]\ntrace_url = \"http://jaeger.example/trace/{{trace_id}}\"\n\n{}",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = crate::support::traced_node(&config, &collector).await;
    let failed = crate::support::http()
        .post(format!("{}/api/v1/messages", node.http_url()))
        .json(&json!({"sender_id": "ada", "id": "doomed", "payload": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);

    let overview = crate::support::first_overview(&node, None).await;
    assert_eq!(
        overview["node"]["trace_url"],
        "http://jaeger.example/trace/{trace_id}"
    );
    let turn = &overview["failed_turns"][0];
    assert_eq!(turn["message_id"], "doomed");
    assert_eq!(turn["code"], "provider_unauthorized");
    let trace_id = turn["trace_id"].as_str().expect("a trace id").to_owned();
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    let spans = collector
        .wait_for(Duration::from_secs(20), |spans| {
            spans.iter().any(|span| span.trace_id == trace_id)
        })
        .await;
    assert!(
        spans
            .iter()
            .any(|span| span.trace_id == trace_id && span.name == "chat fake-model"),
        "the failed model call is in that trace"
    );
}
