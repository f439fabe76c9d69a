//! The sentence embedder on the real all-MiniLM-L6-v2 int8 model and ONNX Runtime (from
//! `./scripts/fetch-test-models`), against reference vectors computed with the Python
//! `onnxruntime` and `tokenizers` packages (`scripts/fixtures/minilm_reference.py`).

use std::path::PathBuf;

use serde_json::Value;
use troupe_actors::local_model::{LocalModelPool, ModelLoader, PoolConfig};
use troupe_inference::local::{Device, OnnxRuntime, SentenceEmbedder, SentenceFiles};

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("TROUPE_TEST_MODELS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models"),
        PathBuf::from,
    );
    assert!(
        dir.join("all-minilm-l6-v2/model.onnx").is_file(),
        "{} has no models: run ./scripts/fetch-test-models (./scripts/test does)",
        dir.display()
    );
    dir
}

fn embedder() -> SentenceEmbedder {
    let models = models_dir();
    let runtime = OnnxRuntime::locate(None, &models).expect("ONNX Runtime is fetched");
    let files = SentenceFiles::in_folder(&models.join("all-minilm-l6-v2"));
    SentenceEmbedder::new(runtime, files, Device::Cpu, 1)
}

struct Case {
    text: String,
    ids: Vec<u32>,
    vector: Vec<f32>,
}

fn reference() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json");
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    data["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| Case {
            text: case["text"].as_str().unwrap().to_owned(),
            ids: serde_json::from_value(case["ids"].clone()).unwrap(),
            vector: serde_json::from_value(case["vector"].clone()).unwrap(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn tokens_match_the_reference_tokenizer() {
    let model = embedder().load().expect("the model loads");
    for case in reference() {
        let ids = model.token_ids(&case.text).unwrap();
        assert!(ids.len() <= troupe_inference::local::MAX_TOKENS);
        assert_eq!(ids, case.ids, "{:?}", case.text);
    }
}

#[tokio::test]
async fn vectors_match_the_reference_batched_or_alone_and_are_unit_length() {
    let cases = reference();
    let (pool, _) = LocalModelPool::start("minilm", embedder(), PoolConfig::default(), None)
        .await
        .unwrap();
    let texts: Vec<String> = cases.iter().map(|case| case.text.clone()).collect();
    let together = pool.run(texts.clone()).await.unwrap();
    assert_eq!(together.len(), cases.len());
    for (case, embedded) in cases.iter().zip(&together) {
        assert_eq!(embedded.tokens, case.ids.len(), "{:?}", case.text);
        let vector = &embedded.vector;
        assert_eq!(vector.len(), 384);
        let length = cosine(vector, vector).sqrt();
        assert!((length - 1.0).abs() < 1e-4, "{length}");
        let worst = case
            .vector
            .iter()
            .zip(vector)
            .map(|(want, got)| (want - got).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{:?}: off by {worst}", case.text);
        assert!(cosine(&case.vector, vector) > 0.9999, "{:?}", case.text);
    }
    // Padding a sentence to a longer neighbour's length changes nothing that matters.
    for (text, batched) in texts.iter().zip(&together).take(3) {
        let alone = pool.run(vec![text.clone()]).await.unwrap();
        assert!(
            cosine(&alone[0].vector, &batched.vector) > 0.9999,
            "{text:?}"
        );
    }
}

#[tokio::test]
async fn a_question_is_nearest_to_the_fact_that_answers_it() {
    let (pool, _) = LocalModelPool::start("minilm", embedder(), PoolConfig::default(), None)
        .await
        .unwrap();
    let facts = [
        "My cat is called Mimi.",
        "The train to Lyon leaves at 7:45 tomorrow morning.",
        "I am allergic to peanuts.",
        "Quarterly revenue grew by 12 percent.",
    ];
    let questions = [
        ("What is the name of my cat?", 0),
        ("When does my train go?", 1),
        ("Which food should I avoid?", 2),
        ("How did sales do this quarter?", 3),
    ];
    let mut texts: Vec<String> = facts.iter().map(|fact| (*fact).to_owned()).collect();
    texts.extend(questions.iter().map(|(question, _)| (*question).to_owned()));
    let vectors: Vec<Vec<f32>> = pool
        .run(texts)
        .await
        .unwrap()
        .into_iter()
        .map(|embedded| embedded.vector)
        .collect();
    for (index, (question, answer)) in questions.iter().enumerate() {
        let asked = &vectors[facts.len() + index];
        let nearest = (0..facts.len())
            .max_by(|a, b| cosine(asked, &vectors[*a]).total_cmp(&cosine(asked, &vectors[*b])))
            .unwrap();
        assert_eq!(nearest, *answer, "{question}");
    }
}

#[tokio::test]
async fn without_the_library_the_pool_says_what_is_missing() {
    let empty = tempfile::tempdir().unwrap();
    let missing = OnnxRuntime::locate(Some(&empty.path().join("libonnxruntime.so")), empty.path());
    if std::env::var_os(troupe_inference::local::ORT_DYLIB_PATH).is_none() {
        let error = missing.unwrap_err().to_string();
        assert!(error.contains("ONNX Runtime is not installed"), "{error}");
        assert!(
            error.contains("troupe models install onnxruntime"),
            "{error}"
        );
    }
    // A model file that is not there fails its callers with the path, and the node goes on.
    let models = models_dir();
    let runtime = OnnxRuntime::locate(None, &models).unwrap();
    let files = SentenceFiles::in_folder(empty.path());
    let loader = SentenceEmbedder::new(runtime, files, Device::Cpu, 1);
    let (pool, _) = LocalModelPool::start("missing", loader, PoolConfig::default(), None)
        .await
        .unwrap();
    let error = pool
        .run(vec!["hello".into()])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("tokenizer.json"), "{error}");
}

/// recall@5 of long-term memory on the repository's retrieval set (60 facts a person told
/// their assistant, 60 questions about them in other words), through the same path a
/// node uses: the real model in its pool, int8 vectors in the memory store, exact search.
#[tokio::test]
async fn memory_recall_at_5_on_the_retrieval_set_is_at_least_0_9() {
    use std::sync::Arc;
    use troupe_actors::embedding::PooledEmbedder;
    use troupe_actors::memory::{LocalMemoryStore, Memories, MemoryConfig};

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/recall_set.json");
    let set: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let facts = set["facts"].as_array().unwrap();
    let questions = set["questions"].as_array().unwrap();
    assert!(facts.len() >= 50 && questions.len() >= 50);
    let (pool, _) = LocalModelPool::start("minilm", embedder(), PoolConfig::default(), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let memories = Memories::new(
        PooledEmbedder::new(pool).shared(),
        Arc::new(LocalMemoryStore::new(dir.path())),
        MemoryConfig::default(),
    );
    let mut ids = std::collections::HashMap::new();
    for fact in facts {
        let kept = memories
            .remember("ada", fact["text"].as_str().unwrap())
            .await
            .unwrap();
        ids.insert(kept.id, fact["id"].as_str().unwrap().to_owned());
    }
    let (mut at_1, mut at_5) = (0, 0);
    for question in questions {
        let found = memories
            .search("ada", question["text"].as_str().unwrap(), 5)
            .await
            .unwrap();
        let answer = question["answer"].as_str().unwrap();
        let ranks: Vec<&str> = found
            .iter()
            .map(|memory| ids[&memory.id].as_str())
            .collect();
        at_1 += usize::from(ranks.first() == Some(&answer));
        at_5 += usize::from(ranks.contains(&answer));
    }
    let (recall_1, recall_5) = (
        at_1 as f64 / questions.len() as f64,
        at_5 as f64 / questions.len() as f64,
    );
    eprintln!(
        "recall@1 {recall_1:.3}, recall@5 {recall_5:.3} over {} questions",
        questions.len()
    );
    assert!(recall_5 >= 0.9, "recall@5 {recall_5}");
}
