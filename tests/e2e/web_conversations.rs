//! The web app's conversations in a real browser (`python/browser_conversations.py`):
//! new chat, titles by the model, switch, search, rename, delete (gone from the node
//! too), reload, edit and resend, regenerate, a text file and a picture attached (the
//! picture reaches the model as an image part and comes back after a reload; an SVG is
//! refused), and the phone
//! layout's drawer, with axe-core in both themes; and a person with a token of their own
//! chatting in the page as themselves.

use serde_json::{Value, json};
use troupe_testkit::fake_llm::FakeLlm;
use troupe_testkit::process::TroupeProcess;

use crate::python::{run_python, script};
use crate::support::{ADA_TOKEN, OWNER_TOKEN, binary, http, openai_provider, owner_and_ada_node};
use crate::web_app::{artefacts, axe_script};

#[tokio::test]
async fn conversations_are_created_switched_searched_deleted_and_restored_in_a_real_browser() {
    let fake = FakeLlm::start(None).await;
    let config = format!(
        "[server]\ntoken = \"page-token\"\n\n{}",
        openai_provider(&fake.openai_base_url(), "")
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let seen = run_python(vec![
        script("browser_conversations.py").display().to_string(),
        node.http_url(),
        "page-token".into(),
        artefacts().display().to_string(),
        axe_script().display().to_string(),
    ])
    .await;
    assert_eq!(seen["empty"], "No conversations yet.");
    assert_eq!(seen["after_new_chat"], 0, "a new chat starts empty");
    assert_eq!(seen["current"], "echo: Pears are green");
    assert_eq!(
        seen["switched"],
        json!(["Apples are red", "echo: Apples are red"])
    );
    assert_eq!(seen["confirmations"].as_array().unwrap().len(), 1);
    assert!(
        seen["confirmations"][0]
            .as_str()
            .unwrap()
            .contains("Apples are red"),
        "{seen}"
    );
    assert_eq!(
        seen["after_delete"], 0,
        "the deleted one was shown: a new chat"
    );
    assert_eq!(seen["after_reload"], json!(["Pears are green"]));
    let edited = json!(["Pears are yellow", "echo: Pears are yellow"]);
    assert_eq!(seen["after_edit"], edited);
    assert_eq!(seen["after_regenerate"], edited);
    assert_eq!(seen["answers_after_regenerate"], 1);
    assert_eq!(
        seen["after_edit_reload"], edited,
        "the node kept the replacement only"
    );
    assert_eq!(
        seen["refused_image"],
        "drawing.svg: only PNG, JPEG, GIF and WebP pictures can be sent."
    );
    assert_eq!(
        seen["chips"], 2,
        "the text file and the picture are attached"
    );
    assert_eq!(seen["pictures_shown"], 1, "{seen}");
    assert_eq!(
        seen["pictures_after_reload"], 1,
        "fetched from the node: {seen}"
    );
    assert_eq!(
        seen["picture_url_after_leaving"], "revoked",
        "a conversation left frees its pictures"
    );
    // The model got the picture as an image part of the message.
    let asked = fake
        .requests()
        .into_iter()
        .filter_map(|request| request.body["messages"].as_array().cloned())
        .filter_map(|messages| messages.last().cloned())
        .find(|last| last["content"].is_array())
        .expect("a request with the picture");
    let parts = asked["content"].as_array().unwrap();
    assert_eq!(parts[1]["type"], "image_url", "{asked}");
    let url = parts[1]["image_url"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("data:image/png;base64,iVBORw0KGgo"),
        "{url}"
    );
    let answer = seen["file_answer"].as_str().unwrap();
    assert!(
        answer.contains("What is in the file?")
            && answer.contains("notes.txt")
            && answer.contains("Buy milk\nand bread"),
        "the model got the file inside the message: {answer}"
    );
    assert_eq!(seen["chips_after_send"], 0);
    assert_eq!(seen["drawer_closed"], false);
    assert_eq!(seen["drawer_open"], true);
    assert_eq!(seen["drawer_after_escape"], false);
    assert_eq!(seen["axe_violations"], json!([]));

    // Deleted on the node, not only in the page; the other one is still there.
    for (conversation, status) in [("apples", 404), ("pears", 200)] {
        let id = seen["ids"][conversation].as_str().unwrap();
        // The first is the sender's own conversation; a new chat's is `<sender>/…`.
        let sender = seen["ids"]["apples"].as_str().unwrap();
        if conversation == "pears" {
            assert!(id.starts_with(&format!("{sender}/")), "{id}");
        }
        let answer = http()
            .get(format!(
                "{}/api/v1/sessions/ws:{}",
                node.http_url(),
                id.replace('/', "%2F")
            ))
            .bearer_auth("page-token")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{conversation}");
    }
}

#[tokio::test]
async fn a_person_with_a_token_of_their_own_chats_in_the_page_as_themselves() {
    let node = owner_and_ada_node().await;
    let seen = run_python(vec![
        script("browser_chat.py").display().to_string(),
        node.http_url(),
        ADA_TOKEN.into(),
    ])
    .await;
    assert_eq!(seen["assistant"], "hello from a real browser", "{seen}");
    let get = |token: &'static str, path: &'static str| {
        let url = format!("{}{path}", node.http_url());
        async move {
            let answer = http().get(url).bearer_auth(token).send().await.unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        }
    };
    let (_, info) = get(ADA_TOKEN, "/api/v1/info").await;
    assert_eq!(info["you"], json!({"sender_id": "ada"}));
    let (_, info) = get(OWNER_TOKEN, "/api/v1/info").await;
    assert_eq!(info["you"], json!({"owner": true}));
    // The page chatted as Ada, in her own conversation, which her token reads back.
    let (status, listed) = get(ADA_TOKEN, "/api/v1/conversations?platform=ws").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["conversations"][0]["conversation_id"], "ada");
    let (status, history) = get(ADA_TOKEN, "/api/v1/conversations/ada?platform=ws").await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        history["history"][0]["content"],
        "hello from a real browser"
    );
    let (status, _) = get(OWNER_TOKEN, "/api/v1/conversations/ada?platform=ws").await;
    assert_eq!(status, 403, "Ada's conversation is hers");
}
