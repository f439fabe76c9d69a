//! `/v1/embeddings` through the real binary, served by the local all-MiniLM-L6-v2 on ONNX
//! Runtime (fetched by `./scripts/fetch-test-models`): the official `openai` Python SDK
//! gets vectors in both encodings, near where meanings are; bad requests get clear
//! errors; a node without ONNX Runtime starts, chats, and says what is missing.

use serde_json::{Value, json};
use troupe_testkit::process::TroupeProcess;

use crate::python::{run_python, script};
use crate::support::{
    binary, echo_node, get, get_as, http, metric_value, post_json_as, test_models_dir,
};

async fn post_embeddings(node: &TroupeProcess, body: &Value) -> (u16, Value) {
    post_json_as(node, Some("embed-token"), "/v1/embeddings", body).await
}

#[tokio::test]
async fn the_openai_sdk_gets_local_embeddings_that_put_a_question_near_its_answer() {
    let config = format!(
        "[server]\ntoken = \"embed-token\"\n\n[models]\ndir = \"{}\"\ndevice = \"cpu\"\n\n\
         [[providers]]\nname = \"main\"\nkind = \"echo\"\n",
        test_models_dir().display()
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let seen = run_python(vec![
        script("openai_embeddings.py").display().to_string(),
        format!("{}/v1", node.http_url()),
        "embed-token".into(),
    ])
    .await;
    assert_eq!(seen["model"], "all-minilm-l6-v2");
    assert_eq!(seen["sizes"], json!([384, 384, 384, 384, 384, 384]));
    assert_eq!(seen["indexes"], json!([0, 1, 2]));
    let tokens = seen["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!((20..60).contains(&tokens), "{seen}");
    assert_eq!(seen["usage"]["total_tokens"], tokens);
    assert_eq!(
        seen["nearest"],
        json!([0, 1, 2]),
        "each question finds its fact"
    );
    let same = seen["same_text_same_vector"].as_f64().unwrap();
    assert!(same > 0.9999, "base64 and float agree: {same}");

    for (body, status, code) in [
        (
            json!({"input": [1, 2, 3], "model": "m"}),
            400,
            "invalid_request",
        ),
        (json!({"input": "", "model": "m"}), 400, "invalid_request"),
        (
            json!({"input": "hi", "model": "m", "dimensions": 1536}),
            400,
            "invalid_request",
        ),
        (json!({"model": "m"}), 422, "invalid_message"),
    ] {
        let (got, answer) = post_embeddings(&node, &body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let anonymous = http()
        .post(format!("{}/v1/embeddings", node.http_url()))
        .json(&json!({"input": "hi", "model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status().as_u16(),
        401,
        "the same auth as every route"
    );

    let (_, models) = get_as(&node, "embed-token", "/api/v1/models").await;
    assert_eq!(models["onnxruntime"]["found"], true, "{models}");
    assert_eq!(models["models"][0]["name"], "all-minilm-l6-v2");
    assert_eq!(models["models"][0]["ready"], true, "{models}");
    let metrics = crate::support::metrics_page_as(&node, "embed-token").await;
    assert!(
        metrics.contains("troupe_local_model_items_total{model=\"all-minilm-l6-v2\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_onnx_runtime_the_node_chats_and_says_what_is_missing() {
    let node = echo_node("").await;
    let (status, answer) = crate::support::post_message(
        &node,
        &json!({"id": "m1", "sender_id": "ada", "payload": "still here"}),
    )
    .await;
    assert_eq!(
        (status, answer["reply"]["payload"].as_str()),
        (200, Some("still here"))
    );
    let response = http()
        .post(format!("{}/v1/embeddings", node.http_url()))
        .json(&json!({"input": "hi", "model": "all-minilm-l6-v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "model_unavailable");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ONNX Runtime is not installed"),
        "{message}"
    );
    assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
    let (_, models) = get(&node, "/api/v1/models").await;
    assert_eq!(models["onnxruntime"]["found"], false, "{models}");
    assert_eq!(models["models"][0]["ready"], false);
    assert!(
        node.log().contains("local embeddings are off"),
        "the log says so at start"
    );
    assert_eq!(
        metric_value(&node, "troupe_local_model_items_total").await,
        None
    );
}

#[tokio::test]
async fn an_openai_compatible_embeddings_service_can_stand_in_for_the_local_model() {
    let fake = troupe_testkit::fake_llm::FakeLlm::start(None).await;
    let config = format!(
        "[models]\nembedder_url = \"{}\"\nembedder_model = \"text-embedding-3-small\"\nembedder_key_env = \"EMBED_KEY\"\n\n\
         [[providers]]\nname = \"main\"\nkind = \"echo\"\n",
        fake.openai_base_url()
    );
    let node = TroupeProcess::start_with_env(binary(), &config, &[("EMBED_KEY", "sk-embed-test")])
        .await
        .unwrap();
    let response = http()
        .post(format!("{}/v1/embeddings", node.http_url()))
        .json(&json!({"input": ["first text", "second text"], "model": "any"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["model"], "text-embedding-3-small");
    let vector: Vec<f64> = serde_json::from_value(answer["data"][1]["embedding"].clone()).unwrap();
    assert_eq!(vector.len(), 32, "the service's own size");
    let length: f64 = vector.iter().map(|value| value * value).sum::<f64>().sqrt();
    assert!((length - 1.0).abs() < 1e-3, "{length}");
    let asked = fake.requests();
    let asked = asked
        .iter()
        .find(|request| request.path == "/v1/embeddings")
        .unwrap();
    assert_eq!(asked.body["input"], json!(["first text", "second text"]));
    assert_eq!(asked.body["model"], "text-embedding-3-small");
    assert_eq!(asked.headers["authorization"], "Bearer sk-embed-test");
    let (_, models) = get(&node, "/api/v1/models").await;
    assert_eq!(models["models"][0]["ready"], true, "{models}");
    assert_eq!(models["models"][0]["service"], fake.openai_base_url());

    // A service that is down fails the request, clearly.
    let down = "[models]\nembedder_url = \"http://127.0.0.1:9/v1\"\nembedder_model = \"m\"\n\n\
                [[providers]]\nname = \"main\"\nkind = \"echo\"\n";
    let node = TroupeProcess::start(binary(), down).await.unwrap();
    let response = http()
        .post(format!("{}/v1/embeddings", node.http_url()))
        .json(&json!({"input": "hello", "model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "model_failed", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:9"),
        "{refused}"
    );
}
