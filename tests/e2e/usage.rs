//! Token accounting end to end: the fake model server reports usage as each API publishes
//! it (Anthropic's cache tokens apart from the input; OpenAI's streamed usage chunk with
//! `cached_tokens` inside the prompt), the node prices every turn from `[[prices]]`,
//! `GET /api/v1/usage` and `troupe usage` show it, it survives a restart, and a spent
//! daily budget refuses the next turn with a clear error.

use std::process::Command;

use serde_json::{Value, json};
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, get_as, metrics_page_as, post_message_as};

const TOKEN: &str = "usage-token";

fn text(pieces: &[&str]) -> FakeReply {
    FakeReply::Text(pieces.iter().map(|piece| (*piece).to_owned()).collect())
}

async fn say(node: &TroupeProcess, sender: &str, payload: &str) -> (u16, Value) {
    post_message_as(
        node,
        Some(TOKEN),
        &json!({"sender_id": sender, "payload": payload}),
    )
    .await
}

#[tokio::test]
async fn anthropic_turns_are_priced_with_their_cache_tokens_and_survive_a_restart() {
    let fake = FakeLlm::start(Some("ak-usage")).await;
    fake.script([text(&["Hel", "lo"]), text(&["Bye"])]);
    let config = format!(
        "[server]\ntoken = \"{TOKEN}\"\n\n[assistant]\nprovider = \"claude\"\n\n\
         [[providers]]\nname = \"claude\"\nkind = \"anthropic\"\nbase_url = \"{}\"\n\
         model = \"claude-cached\"\napi_key_env = \"TROUPE_E2E_ANTHROPIC\"\n\n\
         [[prices]]\nmodel = \"claude-cached\"\ninput = 3.0\noutput = 15.0\n\
         cache_read = 0.3\ncache_write = 3.75\n",
        fake.anthropic_base_url()
    );
    let mut node =
        TroupeProcess::start_with_env(binary(), &config, &[("TROUPE_E2E_ANTHROPIC", "ak-usage")])
            .await
            .unwrap();
    assert_eq!(say(&node, "ada", "hello").await.0, 200);
    assert_eq!(say(&node, "ada", "goodbye").await.0, 200);

    let (status, report) = get_as(&node, TOKEN, "/api/v1/usage?by=person&since=1h").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["by"], "person");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    let ada = &rows[0];
    assert_eq!(ada["key"], "api:ada");
    // Each answer: 5 uncached + 40 read from the cache + 10 written to it; 2 then 1 out.
    assert_eq!(ada["turns"], 2);
    assert_eq!(ada["input_tokens"], 110);
    assert_eq!(ada["cache_read_tokens"], 80);
    assert_eq!(ada["cache_write_tokens"], 20);
    assert_eq!(ada["output_tokens"], 3);
    let expected = (2.0 * (5.0 * 3.0 + 40.0 * 0.3 + 10.0 * 3.75) + 3.0 * 15.0) / 1e6;
    let cost = ada["cost"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-9, "{cost} against {expected}");
    assert_eq!(report["total"]["unpriced_turns"], 0);

    let (_, by_model) = get_as(&node, TOKEN, "/api/v1/usage?by=model").await;
    assert_eq!(by_model["rows"][0]["key"], "claude-cached");
    let (status, refused) = get_as(&node, TOKEN, "/api/v1/usage?by=colour").await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (400, &json!("invalid_query"))
    );
    let (status, refused) = get_as(&node, TOKEN, "/api/v1/usage?since=last%20week").await;
    assert_eq!(status, 400);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("since: `last week` is not a moment")
    );
    let (status, _) = crate::support::get(&node, "/api/v1/usage").await;
    assert_eq!(status, 401, "the owner's token only");

    // What a restart keeps: the ledger, read back into the book.
    assert_eq!(
        node.terminate(std::time::Duration::from_secs(20))
            .await
            .unwrap(),
        Some(0)
    );
    node.restart().await.unwrap();
    let (_, again) = get_as(&node, TOKEN, "/api/v1/usage?by=person&since=1h").await;
    assert_eq!(again["rows"], report["rows"]);

    let table = Command::new(binary())
        .args(["usage", "--by", "model", "--since", "7d", "--url"])
        .arg(node.http_url())
        .args(["--token", TOKEN])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{printed}");
    let line = printed
        .lines()
        .find(|line| line.starts_with("claude-cached"))
        .unwrap_or_else(|| panic!("{printed}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "claude-cached",
            "2",
            "2",
            "110",
            "80",
            "3",
            "113",
            &format!("{expected:.6}")
        ]
    );
}

#[tokio::test]
async fn a_spent_daily_budget_refuses_the_next_turn_and_the_guard_stops_a_runaway() {
    let fake = FakeLlm::start(None).await;
    let tool_call = || FakeReply::ToolCall {
        id: "call_1".into(),
        name: "calculator__evaluate".into(),
        argument_pieces: vec![r#"{"expression":"1+1"}"#.into()],
    };
    fake.script([text(&["one", "two"]), tool_call(), tool_call(), tool_call()]);
    let config = format!(
        "[server]\ntoken = \"{TOKEN}\"\n\n[[providers]]\nname = \"main\"\nkind = \"openai\"\n\
         base_url = \"{}\"\nmodel = \"gpt-cached\"\n\n\
         [[prices]]\nmodel = \"gpt-cached\"\ninput = 1.0\noutput = 2.0\n\n\
         [budgets]\nmax_tokens_per_turn = 100\n\n\
         [[budgets.people]]\nperson = \"api:ada\"\ntokens_per_day = 47\n",
        fake.openai_base_url()
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    // The streamed answer's usage chunk: 5 + 40 cached prompt tokens, 2 out.
    let (status, _) = say(&node, "ada", "count").await;
    assert_eq!(status, 200);
    let (status, refused) = say(&node, "ada", "count again").await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"]["code"], "budget_exceeded");
    assert_eq!(
        refused["error"]["message"],
        "api:ada has used today's budget: 47 of 47 tokens (it renews at 00:00 UTC)"
    );
    assert_eq!(fake.requests().len(), 1, "the model was not asked");

    // Bob has no budget, but his turn keeps calling tools: 3 × 47 tokens is past 100.
    let (status, stopped) = say(&node, "bob", "loop").await;
    assert_eq!(status, 502, "{stopped}");
    assert_eq!(stopped["error"]["code"], "turn_token_limit");
    assert_eq!(fake.requests().len(), 4);
    let (_, report) = get_as(&node, TOKEN, "/api/v1/usage?by=person").await;
    let bob = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == "api:bob")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        (
            bob["model_calls"].as_u64(),
            bob["cache_read_tokens"].as_u64()
        ),
        (Some(3), Some(120))
    );
    let page = metrics_page_as(&node, TOKEN).await;
    assert!(
        page.contains("troupe_turns_guarded_total{guard=\"budget\"} 1"),
        "{page}"
    );
    assert!(page.contains("troupe_turns_guarded_total{guard=\"turn_tokens\"} 1"));
}
