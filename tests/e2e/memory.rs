//! Long-term memory through the real binary, on the local all-MiniLM-L6-v2: what a person
//! told the assistant on Telegram is recalled, after a restart, in a new web conversation
//! of theirs (the accounts are linked: one person, one memory), shown as a
//! `memory__recall` tool call and put in the model's prompt; forgetting it really deletes
//! it, and a later recall finds nothing.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::fake_llm::FakeLlm;
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::telegram::FakeTelegram;

use crate::support::{
    binary, call, connect_as, eventually, frames_until_final, get, openai_provider, send,
    test_models_dir,
};

const TELEGRAM_TOKEN: &str = "123456:TEST-token";

/// The texts of `person`'s memories, as `node` lists them.
pub(crate) async fn memories_of(node: &TroupeProcess, person: &str) -> Vec<String> {
    let (_, listed) = get(node, &format!("/api/v1/memory/{person}")).await;
    listed["memories"]
        .as_array()
        .map(|memories| {
            memories
                .iter()
                .map(|memory| memory["text"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Asks in a new web conversation; answers the recall shown (if any) and the system
/// prompt the model got.
pub(crate) async fn ask_on_the_web(
    node: &TroupeProcess,
    fake: &FakeLlm,
    id: &str,
) -> (Option<Value>, String) {
    let mut socket = connect_as(node, "ada").await;
    let conversation = format!("ada/{id}");
    send(
        &mut socket,
        json!({"type": "message", "id": id, "payload": "What is my cat called?", "conversation_id": conversation}),
    )
    .await;
    let frames = frames_until_final(&mut socket, id).await;
    assert_eq!(frames.last().unwrap()["type"], "reply", "{frames:?}");
    let recall = frames
        .iter()
        .find(|frame| frame["type"] == "tool_result" && frame["name"] == "memory__recall")
        .cloned();
    let request = fake.requests().last().unwrap().body.clone();
    let system = request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (recall, system)
}

/// The turn showed `fact` recalled, and its model's prompt held it as a memory.
pub(crate) fn assert_recalled(recall: Option<Value>, system: &str, fact: &str) {
    let recall = recall.expect("the recall is shown as a tool result");
    assert!(recall["result"].to_string().contains(fact), "{recall}");
    assert!(
        system.contains("What you remember about this person"),
        "{system}"
    );
    assert!(system.contains(fact), "{system}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fact_told_on_telegram_is_recalled_on_the_web_after_a_restart_until_it_is_forgotten() {
    let telegram = FakeTelegram::start(TELEGRAM_TOKEN).await;
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "{}\n[models]\ndir = \"{}\"\ndevice = \"cpu\"\n\n\
         [[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\n\n\
         [[identities]]\nperson = \"ada\"\nmembers = [\"telegram:42\", \"ws:ada\"]\n",
        openai_provider(&fake.openai_base_url(), ""),
        test_models_dir().display(),
        telegram.api_base()
    );
    let mut node =
        TroupeProcess::start_with_env(binary(), &config, &[("TG_TOKEN", TELEGRAM_TOKEN)])
            .await
            .unwrap();
    telegram.user_says(42, "My cat is called Mimi.");
    telegram
        .wait_for_sent(Duration::from_secs(20), |sent| !sent.is_empty())
        .await;
    eventually(Duration::from_secs(20), || async {
        !memories_of(&node, "person:ada").await.is_empty()
    })
    .await;
    node.terminate(Duration::from_secs(20)).await.unwrap();
    node.restart().await.unwrap();

    let (recall, system) = ask_on_the_web(&node, &fake, "w1").await;
    assert_recalled(recall, &system, "My cat is called Mimi.");

    // Both exchanges are kept; forgetting about the cat deletes them for good.
    eventually(Duration::from_secs(20), || async {
        memories_of(&node, "person:ada").await.len() == 2
    })
    .await;
    let (status, forgotten) = call(
        &node,
        reqwest::Method::DELETE,
        "/api/v1/memory/person:ada?about=my%20cat",
    )
    .await;
    assert_eq!(status, 200, "{forgotten}");
    assert_eq!(
        forgotten["forgotten"].as_array().unwrap().len(),
        2,
        "{forgotten}"
    );
    assert!(memories_of(&node, "person:ada").await.is_empty());
    let (recall, system) = ask_on_the_web(&node, &fake, "w2").await;
    assert_eq!(recall, None, "nothing is recalled");
    assert!(!system.contains("Mimi"), "{system}");

    // Bad requests get clear errors.
    let (status, refused) = call(&node, reqwest::Method::GET, "/api/v1/memory/nobody").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, refused) = call(&node, reqwest::Method::DELETE, "/api/v1/memory/person:ada").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, _) = call(
        &node,
        reqwest::Method::DELETE,
        "/api/v1/memory/person:ada/m-0000000000000001",
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn without_the_embedding_model_memory_is_off_and_says_so() {
    let node = crate::support::echo_node("").await;
    let (status, refused) = get(&node, "/api/v1/memory/person:ada").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (503, Some("model_unavailable"))
    );
    assert!(
        node.log().contains("long-term memory is off"),
        "the log says so"
    );
}
