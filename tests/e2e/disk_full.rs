//! A full disk: turns fail with `storage_error` and the node reports not-ready while the
//! store cannot write, then recovers by itself once space comes back (no restart). Runs on
//! a small tmpfs of its own (the tests run as root, as CI does).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use troupe_testkit::process::TroupeProcess;

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
    let (status, body) = ready(&node).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("storage_failing")),
        "{body}"
    );
    let (_, info) = get(&node, "/api/v1/info").await;
    assert_eq!(info["storage"]["state"], "failing", "{info}");
    let metrics = crate::support::metrics_page(&node.http_url()).await;
    assert!(
        metrics.contains("troupe_storage_writable 0"),
        "the metric says so"
    );

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
