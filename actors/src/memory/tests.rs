//! Memories with a word-counting embedder (words hashed into a unit vector: texts that
//! share words are near), over the real local store.

use std::sync::Arc;

use super::*;
use crate::testing::{WordsEmbedder as Words, words_vector};

fn memories(dir: &std::path::Path, config: MemoryConfig) -> Arc<Memories> {
    let store = Arc::new(LocalMemoryStore::new(dir));
    Arc::new(Memories::new(Arc::new(Words), store, config))
}

#[tokio::test]
async fn facts_are_kept_once_listed_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let kept = memories(dir.path(), MemoryConfig::default());
    let cat = kept
        .remember("person:ada", "My cat is called Mimi")
        .await
        .unwrap();
    let again = kept
        .remember("person:ada", "  My cat is called Mimi ")
        .await
        .unwrap();
    assert_eq!(cat.id, again.id, "the same fact is kept once");
    kept.remember("person:ada", "The train leaves at 7:45")
        .await
        .unwrap();
    kept.remember("telegram:9", "Someone else's secret")
        .await
        .unwrap();
    assert!(kept.remember("person:ada", "   ").await.is_err());
    drop(kept);
    let reopened = memories(dir.path(), MemoryConfig::default());
    let listed: Vec<String> = reopened
        .list("person:ada")
        .await
        .unwrap()
        .iter()
        .map(|memory| memory.text.clone())
        .collect();
    assert_eq!(
        listed,
        ["My cat is called Mimi", "The train leaves at 7:45"]
    );
    assert_eq!(reopened.list("telegram:9").await.unwrap().len(), 1);
    assert!(reopened.list("nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn recall_takes_the_nearest_above_the_floor_without_duplicates_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = MemoryConfig {
        top_k: 2,
        min_similarity: 0.2,
        max_prompt_tokens: 30,
        keep_turns: true,
    };
    let kept = memories(dir.path(), config);
    for fact in [
        "My cat Mimi likes tuna",
        "My cat Mimi likes tuna!",
        "Mimi the cat sleeps on the sofa",
        "Quarterly revenue grew by twelve percent",
    ] {
        kept.remember("ada", fact).await.unwrap();
    }
    let recalled = kept
        .recall("ada", "what does my cat Mimi like?")
        .await
        .unwrap();
    let mut texts: Vec<&str> = recalled.iter().map(|memory| memory.text.as_str()).collect();
    texts.sort_unstable();
    // The two about the cat, once each (the near-duplicate is left out), best first.
    assert_eq!(
        texts,
        ["Mimi the cat sleeps on the sofa", "My cat Mimi likes tuna"]
    );
    assert!(recalled[0].similarity >= recalled[1].similarity);
    let prompt = prompt_of(&recalled).unwrap();
    assert!(prompt.contains("- ("), "{prompt}");
    assert!(prompt.contains("My cat Mimi likes tuna"), "{prompt}");
    assert!(kept.recall("ada", "revenue").await.unwrap().len() == 1);
    assert!(
        kept.recall("ada", "zebra crossing")
            .await
            .unwrap()
            .is_empty(),
        "nothing near enough"
    );
    // The budget: 30 tokens hold one 7-token memory and not a long one.
    let tight_dir = tempfile::tempdir().unwrap();
    let tight = memories(
        tight_dir.path(),
        MemoryConfig {
            max_prompt_tokens: 8,
            ..config
        },
    );
    tight.remember("ada", "cat Mimi tuna").await.unwrap();
    tight
        .remember("ada", &format!("cat Mimi {}", "tuna ".repeat(20)))
        .await
        .unwrap();
    assert_eq!(tight.recall("ada", "cat Mimi tuna").await.unwrap().len(), 1);
}

#[tokio::test]
async fn forgetting_about_something_deletes_it_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let kept = memories(dir.path(), MemoryConfig::default());
    kept.remember("ada", "My cat is called Mimi").await.unwrap();
    kept.remember("ada", "Mimi was born in 2019").await.unwrap();
    kept.remember("ada", "The train leaves at 7:45")
        .await
        .unwrap();
    let forgotten = kept.forget_about("ada", "mimi").await.unwrap();
    assert_eq!(forgotten.len(), 2);
    assert!(
        kept.recall("ada", "what is my cat called? Mimi")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(kept.forget_about("ada", " ").await.is_err());
    drop(kept);
    let reopened = memories(dir.path(), MemoryConfig::default());
    let left: Vec<String> = reopened
        .list("ada")
        .await
        .unwrap()
        .iter()
        .map(|memory| memory.text.clone())
        .collect();
    assert_eq!(left, ["The train leaves at 7:45"], "gone from the file too");
}

#[tokio::test]
async fn finished_exchanges_are_kept_in_the_background_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let kept = memories(dir.path(), MemoryConfig::default());
    kept.keep_turn(
        "ada",
        "Remember that my locker number is 42",
        "Noted: locker 42.",
    );
    kept.settled().await;
    let listed = kept.list("ada").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, MemoryKind::Turn);
    assert!(listed[0].text.contains("locker number is 42"));
    let off_dir = tempfile::tempdir().unwrap();
    let off = memories(
        off_dir.path(),
        MemoryConfig {
            keep_turns: false,
            ..MemoryConfig::default()
        },
    );
    off.keep_turn("ada", "anything", "anything");
    off.settled().await;
    assert!(off.list("ada").await.unwrap().is_empty());
}

#[test]
fn quantised_similarity_is_the_cosine_to_within_a_percent() {
    let a = words_vector("my cat is called mimi");
    let b = words_vector("what is my cat called");
    let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let quantised = Memory::similarity_of(&quantize(&a), &quantize(&b));
    assert!((exact - quantised).abs() < 0.01, "{exact} vs {quantised}");
    assert_eq!(
        MemoryId::parse("m-00000000000000ff").unwrap().as_str(),
        "m-00000000000000ff"
    );
    assert!(MemoryId::parse("m-XYZ").is_none());
    assert!(MemoryId::parse("m-00000000000000FF").is_none());
}
