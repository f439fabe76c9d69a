//! `/api/v1/conversations`: a person's conversations on one platform, newest first, paged,
//! searched, titled (by the model, else from the first message) and renamed, and deleted
//! for good, each caller seeing only what its token may.

use reqwest::Method;
use serde_json::{Value, json};
use troupe_testkit::fake_llm::{FakeLlm, FakeReply};
use troupe_testkit::process::TroupeProcess;

use crate::support::{
    ADA_TOKEN, OWNER_TOKEN, binary, http, openai_provider, owner_and_ada_node, post_message_as,
};

const OWNER: &str = OWNER_TOKEN;
const ADA: &str = ADA_TOKEN;

async fn node() -> TroupeProcess {
    owner_and_ada_node().await
}

async fn say(node: &TroupeProcess, token: &str, sender: &str, conversation: &str, text: &str) {
    let (status, body) = post_message_as(
        node,
        Some(token),
        &json!({"sender_id": sender, "conversation_id": conversation, "payload": text}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn request(node: &TroupeProcess, method: Method, token: &str, path: &str) -> (u16, Value) {
    let answer = http()
        .request(method, format!("{}{path}", node.http_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (
        answer.status().as_u16(),
        answer.json().await.unwrap_or(Value::Null),
    )
}

/// `GET /api/v1/conversations?{query}` as `token`.
async fn list(node: &TroupeProcess, token: &str, query: &str) -> (u16, Value) {
    let path = format!("/api/v1/conversations?{query}");
    request(node, Method::GET, token, &path).await
}

fn first_messages(listed: &Value) -> Vec<&str> {
    listed["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|conversation| conversation["first_message"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_person_lists_their_conversations_newest_first_searches_pages_and_deletes_them() {
    let node = node().await;
    // Last changes a second apart: `updated_at` counts seconds.
    for (conversation, text) in [
        ("carol", "About apples\nand more"),
        ("carol/pears", "About pears"),
        ("carol/plums", "About plums"),
    ] {
        say(&node, OWNER, "carol", conversation, text).await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    say(&node, OWNER, "dave", "dave", "About apples too").await;
    say(&node, OWNER, "carol", "carolyn", "Someone else's").await;

    let (status, listed) = list(&node, OWNER, "sender=carol&platform=api").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        first_messages(&listed),
        ["About plums", "About pears", "About apples"]
    );
    assert_eq!(listed["total"], 3);
    assert_eq!(listed["conversations"][0]["conversation_id"], "carol/plums");
    assert_eq!(listed["conversations"][0]["key"], "api:carol/plums");
    assert_eq!(listed["conversations"][0]["messages"], 2);

    let path = "/api/v1/conversations?sender=carol&platform=api&limit=2";
    let (_, first_page) = request(&node, Method::GET, OWNER, path).await;
    assert_eq!(first_messages(&first_page), ["About plums", "About pears"]);
    assert_eq!(first_page["next_offset"], 2);
    let (_, last_page) = request(&node, Method::GET, OWNER, &format!("{path}&offset=2")).await;
    assert_eq!(first_messages(&last_page), ["About apples"]);
    assert_eq!(last_page["next_offset"], Value::Null);

    // The search reads everything said, in any case: the echo's answers too.
    let search = "/api/v1/conversations?sender=carol&platform=api&q=PEARS";
    let (_, found) = request(&node, Method::GET, OWNER, search).await;
    assert_eq!(first_messages(&found), ["About pears"]);
    let (_, found) = list(&node, OWNER, "sender=carol&platform=api&q=and%20more").await;
    assert_eq!(first_messages(&found), ["About apples"]);

    let (status, deleted) = request(
        &node,
        Method::DELETE,
        OWNER,
        "/api/v1/conversations/carol%2Fpears?platform=api",
    )
    .await;
    assert_eq!(
        (status, &deleted["deleted"]),
        (200, &json!(true)),
        "{deleted}"
    );
    let (status, _) = request(
        &node,
        Method::GET,
        OWNER,
        "/api/v1/sessions/api:carol%2Fpears",
    )
    .await;
    assert_eq!(status, 404, "deleted on the node");
    let (_, listed) = list(&node, OWNER, "sender=carol&platform=api").await;
    assert_eq!(first_messages(&listed), ["About plums", "About apples"]);
    let (status, missing) = request(
        &node,
        Method::DELETE,
        OWNER,
        "/api/v1/conversations/carol%2Fpears?platform=api",
    )
    .await;
    assert_eq!(
        (status, &missing["error"]["code"]),
        (404, &json!("not_found"))
    );
}

#[tokio::test]
async fn each_token_sees_and_deletes_only_the_conversations_it_may() {
    let node = node().await;
    say(&node, ADA, "ada", "ada/diary", "Dear diary").await;
    say(&node, OWNER, "carol", "carol", "Hello").await;

    let (status, own) = list(&node, ADA, "platform=api").await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(first_messages(&own), ["Dear diary"]);
    for (token, path) in [
        (ADA, "/api/v1/conversations?sender=carol&platform=api"),
        (OWNER, "/api/v1/conversations?sender=ada&platform=api"),
    ] {
        let (status, refused) = request(&node, Method::GET, token, path).await;
        assert_eq!(
            (status, &refused["error"]["code"]),
            (403, &json!("sender_not_allowed")),
            "{path}"
        );
    }
    for (token, path) in [
        (ADA, "/api/v1/conversations/carol?platform=api"),
        (OWNER, "/api/v1/conversations/ada%2Fdiary?platform=api"),
    ] {
        let (status, refused) = request(&node, Method::DELETE, token, path).await;
        assert_eq!(status, 403, "{path}: {refused}");
    }
    for path in [
        "/api/v1/conversations?platform=api",
        "/api/v1/conversations?sender=carol&platform=NOT%20A%20PLATFORM",
        "/api/v1/conversations?sender=carol&bogus=1",
    ] {
        let (status, refused) = request(&node, Method::GET, OWNER, path).await;
        assert_eq!(
            (status, &refused["error"]["code"]),
            (400, &json!("invalid_query")),
            "{path}"
        );
    }
    let (status, _) = request(
        &node,
        Method::DELETE,
        ADA,
        "/api/v1/conversations/ada%2Fdiary?platform=api",
    )
    .await;
    assert_eq!(status, 200);
    let (_, own) = list(&node, ADA, "platform=api").await;
    assert_eq!(own["total"], 0);
}

#[tokio::test]
async fn a_conversation_is_titled_once_renamed_searched_by_title_and_forgotten_with_it() {
    let node = node().await;
    say(
        &node,
        OWNER,
        "carol",
        "carol/plums",
        "About plums\nin autumn",
    )
    .await;
    let title = "/api/v1/conversations/carol%2Fplums/title?platform=api";
    // No model is configured (echo): the first line of the first message is the title.
    let (status, titled) = request(&node, Method::POST, OWNER, title).await;
    assert_eq!(
        (status, &titled["title"]),
        (200, &json!("About plums")),
        "{titled}"
    );
    let rename = |title: &str| json!({ "title": title });
    let patch = |token: &'static str, path: &'static str, body: Value| {
        let node = &node;
        async move {
            let answer = http()
                .patch(format!("{}{path}", node.http_url()))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        }
    };
    let path = "/api/v1/conversations/carol%2Fplums?platform=api";
    let (status, renamed) = patch(OWNER, path, rename("Plum season")).await;
    assert_eq!((status, &renamed["title"]), (200, &json!("Plum season")));
    // Titled once: asking again keeps the person's name for it.
    let (_, again) = request(&node, Method::POST, OWNER, title).await;
    assert_eq!(again["title"], "Plum season");
    let (_, listed) = list(&node, OWNER, "sender=carol&platform=api&q=season").await;
    assert_eq!(listed["conversations"][0]["title"], "Plum season");
    assert_eq!(listed["conversations"][0]["first_message"], "About plums");

    for (token, path, body, status, code) in [
        (OWNER, path, rename(""), 422, "invalid_request"),
        (OWNER, path, rename("two\nlines"), 422, "invalid_request"),
        (
            OWNER,
            path,
            json!({"title": "x", "extra": 1}),
            400,
            "invalid_json",
        ),
        (
            OWNER,
            "/api/v1/conversations/carol%2Fnone?platform=api",
            rename("x"),
            404,
            "not_found",
        ),
        (ADA, path, rename("Mine now"), 403, "sender_not_allowed"),
    ] {
        let (got, answer) = patch(token, path, body).await;
        assert_eq!(
            (got, &answer["error"]["code"]),
            (status, &json!(code)),
            "{path}: {answer}"
        );
    }

    let (status, _) = request(&node, Method::DELETE, OWNER, path).await;
    assert_eq!(status, 200);
    let (status, _) = request(
        &node,
        Method::GET,
        OWNER,
        "/api/v1/sessions/titles:api%2Fcarol%2Fplums",
    )
    .await;
    assert_eq!(status, 404, "the title went with the conversation");
    // No message may write as the titles' platform.
    let (status, _) = post_message_as(
        &node,
        Some(OWNER),
        &json!({"platform": "titles", "sender_id": "x", "payload": "x"}),
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn the_model_titles_a_conversation_from_its_first_message() {
    let fake = FakeLlm::start(None).await;
    fake.script([
        FakeReply::Text(vec!["Granny Smith and more.".into()]),
        FakeReply::Text(vec!["\"Apple varieties.\"".into()]),
    ]);
    let config = format!(
        "[server]\ntoken = \"{OWNER}\"\n\n{}",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    say(&node, OWNER, "carol", "carol", "Which apples keep longest?").await;
    let (status, titled) = request(
        &node,
        Method::POST,
        OWNER,
        "/api/v1/conversations/carol/title?platform=api",
    )
    .await;
    assert_eq!(
        (status, &titled["title"]),
        (200, &json!("Apple varieties")),
        "{titled}"
    );
    let asked = &fake.requests()[1].body;
    assert!(
        asked["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("title"),
        "{asked}"
    );
    assert_eq!(
        asked["messages"][1]["content"],
        "Which apples keep longest?"
    );
    assert!(
        asked
            .get("tools")
            .is_none_or(|tools| tools.as_array().is_none_or(Vec::is_empty)),
        "{asked}"
    );
}
