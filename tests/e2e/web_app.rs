//! The web app in a real browser (Chromium through Playwright, `python/browser_app.py`),
//! in English and Simplified Chinese: streamed markdown rendered with a highlighted code
//! block and its copy button, a tool card, a confirmation allowed and one refused, the XSS corpus (`python/xss_corpus.md`) inert
//! as the model's answer and in a tool card (and again after a reload, restored from the
//! node's history), the canvas rooms section, axe-core on every
//! section in both themes, screenshots at 1280x800 and 360x740 in both themes, kept in
//! `target/test-artifacts/web-app` (or `$TROUPE_SCREENSHOTS/web-app`), and the offline
//! queue: two messages typed while the connection is cut are each answered once.

use std::path::PathBuf;

use serde_json::{Value, json};
use troupe_testkit::fake_llm::FakeLlm;
use troupe_testkit::process::TroupeProcess;

use crate::python::{run_python, script};
use crate::support::{binary, http, openai_provider};

pub(crate) fn artefacts() -> PathBuf {
    std::env::var_os("TROUPE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts"))
        .join("web-app")
}

pub(crate) fn axe_script() -> PathBuf {
    let axe = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/axe-core/axe.min.js");
    assert!(
        axe.exists(),
        "{} is missing: run ./scripts/test-deps (./scripts/test does)",
        axe.display()
    );
    axe
}

fn texts(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|text| text.as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn the_web_app_renders_answers_tools_and_hostile_markdown_safely_in_two_languages() {
    // No script: the double echoes ("echo: …", streamed word by word) and calls tools.
    let fake = FakeLlm::start(None).await;
    let config = format!(
        // The offline test reaches the node through a proxy on another loopback port.
        "[server]\ntoken = \"page-token\"\nallowed_hosts = [\"127.0.0.1\"]\n\n{}\n{}",
        openai_provider(&fake.openai_base_url(), ""),
        "[[skills]]\nkind = \"builtin\"\nname = \"notes\"\npermissions.confirm = [\"remember\"]\n\
         [[skills]]\nkind = \"builtin\"\nname = \"calculator\"\n"
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let room = http()
        .patch(format!(
            "{}/api/v1/canvas/team-board/items",
            node.http_url()
        ))
        .bearer_auth("page-token")
        .json(&json!({"add": [{"type": "note", "text": "ship it", "x": 10, "y": 20}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(room.status(), 200);

    let seen = run_python(vec![
        script("browser_app.py").display().to_string(),
        node.http_url(),
        "page-token".into(),
        artefacts().display().to_string(),
        axe_script().display().to_string(),
        script("xss_corpus.md").display().to_string(),
    ])
    .await;

    for (locale, words) in [
        ("en-US", ["Connected", "Send", "Canvas rooms", "Canvas"]),
        ("zh-CN", ["已连接", "发送", "画布房间", "画布"]),
    ] {
        let seen = &seen[locale];
        assert!(
            seen["status"].as_str().unwrap().starts_with(words[0]),
            "{seen}"
        );
        assert_eq!(seen["send_label"], words[1]);
        assert_eq!(seen["rooms_heading"], words[2]);
        assert_eq!(seen["current_nav"], words[3]);
        assert_eq!(
            seen["html_lang"],
            if locale == "en-US" { "en" } else { "zh-CN" }
        );
        assert_eq!(
            texts(&seen["table"]),
            ["Planet\tMoons", "Earth\t1", "Mars\t2"],
            "{locale}"
        );
        assert_eq!(seen["code_language"], "rust");
        assert!(seen["highlighted_tokens"].as_u64().unwrap() >= 4, "{seen}");
        assert_eq!(
            seen["copied"].as_str().unwrap().trim_end(),
            "fn main() {\n    let greeting = \"hello\";\n    println!(\"{greeting}\");\n}"
        );
        assert_eq!(texts(&seen["list_bold"]), ["two"]);
        let answer = seen["copied_answer"].as_str().unwrap();
        assert!(
            answer.starts_with("echo: Here is what you asked for:\n\n| Planet | Moons |"),
            "the whole answer as markdown: {answer}"
        );
        assert_eq!(seen["input_grows"], true);

        assert_eq!(seen["tool_name"], "calculator__evaluate");
        assert!(
            seen["tool_classes"].as_str().unwrap().contains("succeeded"),
            "{seen}"
        );
        let sections = texts(&seen["tool_sections"]);
        assert!(sections[0].contains(r#""expression": "6 * 7""#), "{seen}");
        assert!(sections[1].contains(r#""result": 42"#), "{seen}");
        assert!(
            seen["tool_answer"].as_str().unwrap().contains("42"),
            "{seen}"
        );

        // The keyboard reaches the navigation, the answer's code and copy button, the tool
        // card and the composer.
        let stops = texts(&seen["tab_stops"]);
        for stop in [
            "a.brand",
            "div#log.log",
            "pre",
            "button.copy",
            "summary",
            "textarea#input",
            "button#send",
        ] {
            assert!(
                stops.contains(&stop),
                "{stop} is not in the tab order: {stops:?}"
            );
        }

        // A confirmation: the buttons send yes or no, and the waiting card follows.
        let [allowed, refused] = [&seen["confirmations"][0], &seen["confirmations"][1]];
        let (allow, refuse, waiting) = if locale == "en-US" {
            ("Allow", "Refuse", "waiting for your answer")
        } else {
            ("允许", "拒绝", "等待你的答复")
        };
        for asked in [allowed, refused] {
            assert!(
                asked["question"]
                    .as_str()
                    .unwrap()
                    .contains("notes__remember"),
                "{asked}"
            );
            assert_eq!(asked["waiting"], waiting, "{asked}");
            assert_eq!(texts(&asked["buttons"]), [allow, refuse], "{asked}");
            assert_eq!(asked["disabled"], 2, "{asked}");
        }
        assert_eq!(allowed["sent"], "yes");
        assert!(
            allowed["card"].as_str().unwrap().contains("succeeded"),
            "{allowed}"
        );
        assert!(
            allowed["answer"].as_str().unwrap().contains("milk"),
            "{allowed}"
        );
        assert_eq!(refused["sent"], "no");
        assert!(
            refused["card"].as_str().unwrap().contains("failed"),
            "{refused}"
        );
        assert!(
            refused["answer"].as_str().unwrap().contains("refused"),
            "{refused}"
        );

        // The corpus came back whole, as text where it was markup, and ran nothing.
        assert_eq!(seen["xss_problems"], json!([]), "{locale}");
        assert_eq!(seen["pwned"], Value::Null, "{locale}");
        assert_eq!(seen["dialogs"], json!([]), "{locale}");
        let answer = seen["xss_answer_text"].as_str().unwrap();
        for visible in [
            "an anchor",
            "a fine link with handlers",
            "stays text in code",
        ] {
            assert!(answer.contains(visible), "{visible} missing from {answer}");
        }
        let hostile = texts(&seen["hostile_tool_sections"]);
        assert!(
            hostile[0].contains("<img src=x onerror=window.__pwned=99>"),
            "{seen}"
        );
        assert!(
            seen["tool_card_elements"]
                .as_array()
                .unwrap()
                .iter()
                .all(|tag| tag == "h4" || tag == "pre"),
            "{seen}"
        );

        // After a reload: the conversation as the node keeps it, still inert.
        let restored = &seen["restored"];
        assert_eq!(restored["user_messages"], 9, "{restored}");
        assert_eq!(restored["answers"], 9, "{restored}");
        assert_eq!(texts(&restored["waiting_buttons"]), [allow, refuse]);
        assert!(
            restored["allowed_after_reload"]
                .as_str()
                .unwrap()
                .contains("bread"),
            "{restored}"
        );
        assert_eq!(
            texts(&restored["table"]),
            ["Planet\tMoons", "Earth\t1", "Mars\t2"]
        );
        let done = if locale == "en-US" {
            "done"
        } else {
            "已完成"
        };
        assert_eq!(texts(&restored["tool_statuses"])[0], done, "{restored}");
        // The calculator, the note allowed, the note refused, the hostile expression.
        assert_eq!(
            texts(&restored["tool_classes"]),
            [
                "tool-card succeeded",
                "tool-card succeeded",
                "tool-card failed",
                "tool-card failed"
            ],
            "{restored}"
        );
        assert_eq!(restored["xss_problems"], json!([]), "{locale}");
        assert_eq!(restored["pwned"], Value::Null, "{locale}");
        assert_eq!(restored["dialogs"], json!([]), "{locale}");
        assert!(
            restored["tool_card_elements"]
                .as_array()
                .unwrap()
                .iter()
                .all(|tag| tag == "h4" || tag == "pre"),
            "{restored}"
        );

        assert_eq!(texts(&seen["rooms"]), ["team-board"]);
        let canvas = &seen["canvas"];
        let (lang, synced, one_item, nav, send) = if locale == "en-US" {
            ("en", "synced", "1 item", ["Chat", "Canvas"], "Send")
        } else {
            ("zh-CN", "已同步", "1 个元素", ["聊天", "画布"], "发送")
        };
        assert_eq!(canvas["lang"], lang, "{canvas}");
        assert_eq!(canvas["status"], synced, "{canvas}");
        assert_eq!(canvas["count"], one_item, "{canvas}");
        assert_eq!(texts(&canvas["nav"]), nav, "{canvas}");
        assert_eq!(canvas["send"], send, "{canvas}");
        assert_eq!(seen["axe_violations"], json!([]), "{locale}");
    }
    // Typed while offline, sent on reconnect, each answered once and asked of the model once.
    let offline = &seen["offline"];
    assert!(
        offline["while_offline"]
            .as_str()
            .unwrap()
            .contains("2 waiting to send"),
        "{offline}"
    );
    assert_eq!(
        texts(&offline["answers"]),
        ["echo: first while offline", "echo: second while offline"]
    );
    assert!(offline["after"].as_str().unwrap().starts_with("Connected"));
    // Typed offline and the tab closed: sent when the page was opened again, answered once.
    let reopened = texts(&offline["after_reopening"]);
    assert_eq!(
        reopened
            .iter()
            .filter(|text| **text == "echo: third before closing")
            .count(),
        1,
        "{reopened:?}"
    );
    assert_eq!(offline["left_to_send"], 0, "{offline}");
    for text in [
        "first while offline",
        "second while offline",
        "third before closing",
    ] {
        let asked = fake
            .requests()
            .iter()
            // The page also asks for the conversation's title: not a turn.
            .filter(|request| {
                !request.body["messages"][0]["content"]
                    .as_str()
                    .is_some_and(|system| system.starts_with("Write a title"))
            })
            .filter(|request| {
                request.body["messages"]
                    .as_array()
                    .and_then(|messages| messages.last())
                    .is_some_and(|last| last["content"] == text)
            })
            .count();
        assert_eq!(asked, 1, "{text}");
    }
    for name in ["chat-en-US", "chat-zh-CN", "rooms-en-US", "rooms-zh-CN"] {
        for shot in [
            "light-1280x800",
            "dark-1280x800",
            "light-360x740",
            "dark-360x740",
        ] {
            let file = artefacts().join(format!("{name}-{shot}.png"));
            assert!(file.exists(), "{} was not taken", file.display());
        }
    }
}
