//! A full disk: turns fail with `storage_error` and the node reports not-ready while the
//! store cannot write, then recovers by itself once space comes back (no restart). Runs on
//! a small tmpfs of its own (the tests run as root, as CI does).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use troupe_testkit::process::TroupeProcess;

use crate::signed_webhook::{post_signed, start_receiver};
use crate::support::{binary, get, post_message};

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _scratch: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount runs");
        assert!(mounted.success(), "mounting a tmpfs needs root, as CI has");
        Self {
            path,
            _scratch: scratch,
        }
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.write_all(&[0u8; 512]);
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn ask(node: &TroupeProcess, id: &str) -> (u16, serde_json::Value) {
    post_message(node, &json!({"id": id, "sender_id": "dana", "payload": id})).await
}

async fn ready(node: &TroupeProcess) -> (u16, serde_json::Value) {
    get(node, "/readyz").await
}

/// The node says `store` is failing: not ready, in `/api/v1/info`, and in the metric.
async fn assert_reported_failing(node: &TroupeProcess, store: &str) {
    let (status, body) = ready(node).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("storage_failing")),
        "{body}"
    );
    let (_, info) = get(node, "/api/v1/info").await;
    assert_eq!(info["storage"]["state"], "failing", "{info}");
    assert_eq!(info["stores"][store]["state"], "failing", "{info}");
    let metrics = crate::support::metrics_page(&node.http_url()).await;
    assert!(
        metrics.contains(&format!("troupe_storage_writable{{store=\"{store}\"}} 0")),
        "the metric names the failing store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_turns_and_readiness_until_space_comes_back_without_a_restart() {
    let disk = SmallDisk::mount("8m");
    let data_dir = disk.path.join("data");
    let config = "[[providers]]\nname = \"main\"\nkind = \"echo\"\n";
    let data_dir_env = data_dir.display().to_string();
    let mut node =
        TroupeProcess::start_with_env(binary(), config, &[("TROUPE_DATA_DIR", &data_dir_env)])
            .await
            .expect("troupe starts");
    assert_eq!(ask(&node, "before").await.0, 200);
    let filler = disk.fill();

    let mut failed = None;
    for index in 0..200 {
        let (status, body) = ask(&node, &format!("full-{index}")).await;
        if status != 200 {
            failed = Some((status, body));
            break;
        }
    }
    let (status, body) = failed.expect("a turn fails once the disk is full");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("storage_error")),
        "{body}"
    );
    assert_reported_failing(&node, "sessions").await;

    std::fs::remove_file(&filler).unwrap();
    let mut answered = false;
    for attempt in 0..150 {
        if ask(&node, &format!("after-{attempt}")).await.0 == 200 {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answered,
        "turns succeed again once space is back, without a restart"
    );
    assert_eq!(ready(&node).await.0, 200);
    let (_, info) = get(&node, "/api/v1/info").await;
    assert_eq!(info["storage"]["state"], "writable", "{info}");
    let (status, session) = get(&node, "/api/v1/sessions/api:dana").await;
    assert_eq!(status, 200);
    let history = session["history"].as_array().unwrap();
    assert!(
        history.iter().any(|entry| entry["content"] == "before"),
        "what was stored before the disk filled is still there"
    );
    // Nothing was left corrupt: the store opens again after a restart, with the history.
    assert_eq!(
        node.terminate(Duration::from_secs(20)).await.unwrap(),
        Some(0)
    );
    node.restart().await.unwrap();
    let (status, session) = get(&node, "/api/v1/sessions/api:dana").await;
    assert_eq!(status, 200);
    let again = session["history"].as_array().unwrap();
    assert_eq!(again.len(), history.len(), "{session}");
}

const HOOK_SECRET: &str = "a-long-shared-secret-0123456789";

async fn hook(node: &TroupeProcess, id: &str) -> (u16, serde_json::Value) {
    let message = json!({"id": id, "sender_id": "lamp", "payload": id});
    post_signed(
        node,
        &message,
        troupe_actors::message::unix_now(),
        HOOK_SECRET,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_webhooks_until_the_bridges_journal_recovers_by_itself() {
    let disk = SmallDisk::mount("8m");
    let data_dir = disk.path.join("data").display().to_string();
    let (url, receiver) = start_receiver(0).await;
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[[bridges]]\nname = \"hooks\"\n\
         kind = \"webhook\"\nsecret_env = \"HOOK_SECRET\"\ndeliver_url = \"{url}\"\n"
    );
    let env = [
        ("TROUPE_DATA_DIR", data_dir.as_str()),
        ("HOOK_SECRET", HOOK_SECRET),
    ];
    let mut node = TroupeProcess::start_with_env(binary(), &config, &env)
        .await
        .expect("troupe starts");
    assert_eq!(hook(&node, "before").await.0, 202);
    let filler = disk.fill();

    let mut accepted = vec!["before".to_owned()];
    let mut refused = None;
    for index in 0..200 {
        let id = format!("full-{index}");
        let (status, body) = hook(&node, &id).await;
        if status != 202 {
            refused = Some((status, body));
            break;
        }
        accepted.push(id);
    }
    let (status, body) = refused.expect("a webhook is refused once the disk is full");
    assert_eq!(status, 503, "the platform is told to retry: {body}");
    assert!(body["error"]["code"].is_string(), "a JSON error: {body}");
    assert_reported_failing(&node, "bridges").await;

    std::fs::remove_file(&filler).unwrap();
    let mut recovered = false;
    for attempt in 0..150 {
        let id = format!("after-{attempt}");
        if hook(&node, &id).await.0 == 202 {
            accepted.push(id);
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "webhooks are taken again once space is back, without a restart"
    );
    let mut writable = false;
    for _ in 0..150 {
        let (_, info) = get(&node, "/api/v1/info").await;
        if info["storage"]["state"] == "writable" {
            writable = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(writable, "every store is writable again");
    assert_eq!(ready(&node).await.0, 200);

    // Every webhook that was acknowledged is answered, once, restart included.
    let answered = |receiver: &crate::signed_webhook::Receiver| -> Vec<String> {
        let mut ids: Vec<String> = receiver
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, body)| {
                let reply: serde_json::Value = serde_json::from_str(body).ok()?;
                reply["in_reply_to"].as_str().map(str::to_owned)
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    accepted.sort();
    for _ in 0..200 {
        if answered(&receiver) == accepted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        node.terminate(Duration::from_secs(20)).await.unwrap(),
        Some(0)
    );
    node.restart().await.unwrap();
    for _ in 0..200 {
        if answered(&receiver) == accepted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered(&receiver), accepted);
}
