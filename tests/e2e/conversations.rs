//! `/api/v1/conversations`: a person's conversations on one platform, newest first, paged,
//! searched, and deleted for good, each caller seeing only what its token may.

use reqwest::Method;
use serde_json::{Value, json};
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, http, post_message_as};

const OWNER: &str = "owner-token-0123456789";
const ADA: &str = "ada-token-0123456789ab";

async fn node() -> TroupeProcess {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[server]\ntoken = \"{OWNER}\"\n\n[[server.tokens]]\nsender_id = \"ada\"\ntoken_env = \"ADA_TOKEN\"\n"
    );
    TroupeProcess::start_with_env(binary(), &config, &[("ADA_TOKEN", ADA)])
        .await
        .expect("troupe starts")
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

    let (status, listed) = request(
        &node,
        Method::GET,
        OWNER,
        "/api/v1/conversations?sender=carol&platform=api",
    )
    .await;
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
    let (_, found) = request(
        &node,
        Method::GET,
        OWNER,
        "/api/v1/conversations?sender=carol&platform=api&q=and%20more",
    )
    .await;
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
    let (_, listed) = request(
        &node,
        Method::GET,
        OWNER,
        "/api/v1/conversations?sender=carol&platform=api",
    )
    .await;
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

    let (status, own) = request(
        &node,
        Method::GET,
        ADA,
        "/api/v1/conversations?platform=api",
    )
    .await;
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
    let (_, own) = request(
        &node,
        Method::GET,
        ADA,
        "/api/v1/conversations?platform=api",
    )
    .await;
    assert_eq!(own["total"], 0);
}
