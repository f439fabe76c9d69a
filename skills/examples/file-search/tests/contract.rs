//! The example skill as a real process, driven by Troupe's own HTTP skill client: the
//! manifest, a search, a read, a path outside the folder, and requests with a wrong secret.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use troupe_actors::skill::{Skill, SkillCall, SkillErrorCode};
use troupe_skills::http::HttpSkill;
use troupe_testkit::free_port;

const SECRET: &str = "example-skill-secret-0123456789";

struct Running {
    child: std::process::Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(root: &std::path::Path) -> Running {
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_troupe-skill-file-search"))
        .env("SKILL_SECRET", SECRET)
        .env("SKILL_ROOT", root)
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Running { child, url }
}

fn call(action: &str, arguments: serde_json::Value) -> SkillCall {
    SkillCall {
        call_id: "call-1".into(),
        action: action.into(),
        arguments,
        session: Default::default(),
    }
}

#[tokio::test]
async fn serves_the_contract_to_troupes_client() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("groceries.txt"), "apples\noat milk\n").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("diary.txt"), "private\n").unwrap();
    let skill = start(folder.path()).await;

    let client = HttpSkill::new(&skill.url, SECRET).unwrap();
    let manifest = client.manifest().await.unwrap();
    let tools: Vec<&str> = manifest
        .tools
        .iter()
        .map(|tool| tool.name.as_str())
        .collect();
    assert_eq!(tools, ["search", "read"]);
    assert!(manifest.permissions.files);

    let found = client
        .execute(call("search", json!({"text": "oat"})))
        .await
        .unwrap();
    assert_eq!(found["count"], 1);
    let path = found["files"][0]["path"].as_str().unwrap().to_owned();
    let read = client
        .execute(call("read", json!({"path": path})))
        .await
        .unwrap();
    assert!(read["text"].as_str().unwrap().contains("apples"));

    let escape = outside.path().join("diary.txt").display().to_string();
    let refused = client
        .execute(call("read", json!({"path": escape})))
        .await
        .unwrap_err();
    assert_eq!(refused.code, SkillErrorCode::Forbidden);

    let impostor = HttpSkill::new(&skill.url, "not-the-shared-secret-at-all").unwrap();
    let error = impostor.manifest().await.unwrap_err();
    assert!(error.message.contains("signature"), "{error:?}");
    let error = impostor
        .execute(call("search", json!({"text": "oat"})))
        .await
        .unwrap_err();
    assert!(
        error.message.contains("signature") || error.code == SkillErrorCode::Forbidden,
        "{error:?}"
    );
}
