//! A person linked across platforms in the web app: what their Telegram account said (the
//! XSS corpus, so the history the page renders was written by a bridge) is their main
//! conversation in the page, inert (`python/browser_linked.py`), and the page and REST
//! continue that one conversation while each reply stays on the platform that asked.

use std::time::Duration;

use serde_json::{Value, json};
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::telegram::FakeTelegram;

use crate::python::{run_python, script};
use crate::support::{ADA_TOKEN, OWNER_TOKEN, binary, get_as, post_message_as, said};
use crate::web_app::{artefacts, axe_script};

const TELEGRAM_TOKEN: &str = "123456:TEST-token";

async fn linked_node(telegram: &FakeTelegram) -> TroupeProcess {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n\
         [server]\ntoken = \"{OWNER_TOKEN}\"\n\n\
         [[server.tokens]]\nsender_id = \"ada\"\ntoken_env = \"ADA_TOKEN\"\n\n\
         [[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\n\n\
         [[identities]]\nperson = \"ada\"\nmembers = [\"telegram:42\", \"ws:ada\", \"api:ada\"]\n",
        telegram.api_base()
    );
    TroupeProcess::start_with_env(
        binary(),
        &config,
        &[("ADA_TOKEN", ADA_TOKEN), ("TG_TOKEN", TELEGRAM_TOKEN)],
    )
    .await
    .expect("troupe starts")
}

fn texts(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|text| text.as_str().unwrap_or_default().trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_written_on_telegram_is_the_linked_persons_page_conversation_and_stays_inert() {
    let telegram = FakeTelegram::start(TELEGRAM_TOKEN).await;
    let node = linked_node(&telegram).await;
    let corpus = std::fs::read_to_string(script("xss_corpus.md")).unwrap();
    telegram.user_says(42, &corpus);
    telegram
        .wait_for_sent(Duration::from_secs(20), |sent| !sent.is_empty())
        .await;

    let seen = run_python(vec![
        script("browser_linked.py").display().to_string(),
        node.http_url(),
        ADA_TOKEN.into(),
        artefacts().display().to_string(),
        axe_script().display().to_string(),
    ])
    .await;
    assert_eq!(texts(&seen["shared"]), ["Also on API, Telegram"], "{seen}");
    assert_eq!(seen["sidebar"].as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(texts(&seen["asked_on_telegram"]), [corpus.trim()], "{seen}");
    let answer = seen["answer_text"].as_str().unwrap();
    for visible in [
        "an anchor",
        "a fine link with handlers",
        "stays text in code",
    ] {
        assert!(answer.contains(visible), "{visible} missing from {answer}");
    }
    assert_eq!(seen["xss_problems"], json!([]), "{seen}");
    assert_eq!(seen["xss_problems_after_reload"], json!([]), "{seen}");
    assert_eq!(seen["pwned"], Value::Null);
    assert_eq!(seen["dialogs"], json!([]));
    assert_eq!(seen["axe"], json!([]), "{seen}");
    assert_eq!(seen["web_answer"], "and from the web");
    assert_eq!(
        texts(&seen["after_reload"]),
        [corpus.trim(), "and from the web"]
    );

    // REST, with the person's token, continues the same conversation.
    let rest = json!({"id": "r1", "payload": "and over REST"});
    let (status, reply) = post_message_as(&node, Some(ADA_TOKEN), &rest).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (
            reply["reply"]["conversation_id"].as_str(),
            reply["reply"]["platform"].as_str()
        ),
        (Some("ada"), Some("person")),
        "{reply}"
    );
    let (_, session) = get_as(&node, OWNER_TOKEN, "/api/v1/sessions/person:ada").await;
    assert_eq!(
        said(&session),
        [
            corpus.as_str(),
            corpus.as_str(),
            "and from the web",
            "and from the web",
            "and over REST",
            "and over REST"
        ]
    );
    // One answer on Telegram, to its own question: the page's and REST's stay off it.
    let on_telegram = telegram.texts_to(42);
    assert_eq!(on_telegram.len(), 1, "{on_telegram:?}");

    // The listing names the shared conversation as the page does, with who shares it.
    let (_, listed) = get_as(&node, ADA_TOKEN, "/api/v1/conversations").await;
    let only = &listed["conversations"][0];
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(
        (&only["key"], &only["conversation_id"], &only["shared_with"]),
        (
            &json!("person:ada"),
            &json!("ada"),
            &json!(["api:ada", "telegram:42"])
        )
    );
}
