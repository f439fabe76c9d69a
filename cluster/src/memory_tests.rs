//! The cluster's memory store on a real `nats-server`, with several stores on their own
//! connections standing for several nodes.

use std::future::Future;
use std::time::Duration;

use troupe_actors::memory::MemoryKind;
use troupe_actors::testing::words_vector;

use super::*;

async fn node(url: &str) -> JetStreamMemoryStore {
    let client = async_nats::connect(url).await.unwrap();
    JetStreamMemoryStore::open(
        &async_nats::jetstream::new(client),
        stream::StorageType::File,
        1,
    )
    .await
    .unwrap()
}

fn fact(text: &str) -> NewMemory {
    NewMemory {
        text: text.to_owned(),
        kind: MemoryKind::Fact,
        vector: words_vector(text),
        tokens: text.split_whitespace().count(),
    }
}

async fn texts(store: &JetStreamMemoryStore, person: &str) -> Vec<String> {
    store
        .all(person)
        .await
        .unwrap()
        .iter()
        .map(|memory| memory.text.clone())
        .collect()
}

/// Waits (ten seconds at most) until `store` holds exactly `expected` for `person`.
async fn holds<F, Fut>(what: F, expected: &[&str])
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let mut seen = Vec::new();
    for _ in 0..1_000 {
        seen = what().await;
        if seen == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("held {seen:?}, expected {expected:?}");
}

#[tokio::test]
async fn memories_kept_on_one_node_are_followed_by_the_others_and_forgotten_everywhere() {
    let server = troupe_testkit::nats::NatsServer::start().await;
    let (first, second) = (node(&server.url()).await, node(&server.url()).await);
    let person = "telegram:42 ü.*>";
    assert!(second.all(person).await.unwrap().is_empty());

    let cat = first
        .add(person, fact("My cat is called Mimi"))
        .await
        .unwrap();
    first
        .add(person, fact("The train leaves at 7:45"))
        .await
        .unwrap();
    first.add("ws:bob", fact("Bob's secret")).await.unwrap();
    let both = ["My cat is called Mimi", "The train leaves at 7:45"];
    assert_eq!(
        texts(&first, person).await,
        both,
        "a node reads its own writes"
    );
    holds(|| texts(&second, person), &both).await;
    let later = node(&server.url()).await;
    assert_eq!(texts(&later, person).await, both, "a new node loads them");
    assert_eq!(texts(&later, "ws:bob").await, ["Bob's secret"]);

    let unknown = MemoryId::parse("m-0000000000000001").unwrap();
    assert_eq!(
        second
            .forget(person, &[cat.id.clone(), unknown])
            .await
            .unwrap(),
        1
    );
    let left = ["The train leaves at 7:45"];
    assert_eq!(texts(&second, person).await, left);
    holds(|| texts(&first, person), &left).await;
    holds(|| texts(&later, person), &left).await;
    assert_eq!(texts(&node(&server.url()).await, person).await, left);

    // Forgotten for good: no message in the stream holds the words any more.
    let mut stream = first.stream.clone();
    let last = stream.info().await.unwrap().state.last_sequence;
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            assert!(
                !String::from_utf8_lossy(&message.payload).contains("Mimi"),
                "message {sequence} still holds the memory"
            );
        }
    }
}

#[tokio::test]
async fn a_node_loading_a_person_while_another_keeps_memories_ends_with_all_of_them() {
    let server = troupe_testkit::nats::NatsServer::start().await;
    let (writer, reader) = (node(&server.url()).await, node(&server.url()).await);
    let facts: Vec<String> = (0..60)
        .map(|index| format!("fact number {index}"))
        .collect();
    for text in &facts[..30] {
        writer.add("ada", fact(text)).await.unwrap();
    }
    let writing = {
        let (writer, rest) = (writer.clone(), facts[30..].to_vec());
        tokio::spawn(async move {
            for text in &rest {
                writer.add("ada", fact(text)).await.unwrap();
            }
        })
    };
    let loaded = reader.all("ada").await.unwrap();
    assert!(loaded.len() >= 30, "everything kept before the load");
    writing.await.unwrap();
    let expected: Vec<&str> = facts.iter().map(String::as_str).collect();
    holds(|| texts(&reader, "ada"), &expected).await;
}

#[test]
fn any_person_id_makes_a_subject_and_is_read_back_from_it() {
    let id = MemoryId::new();
    for person in ["person:ada", "telegram:42", "ws:a.b*c> d", "ü"] {
        let subject = memory_subject(person, &id);
        assert_eq!(subject.split('.').count(), 5, "{subject}");
        assert_eq!(
            parse_subject(&subject),
            Some((person.to_owned(), id.clone()))
        );
    }
    assert_eq!(
        parse_subject("troupe.v1.memory.zz.m-0000000000000001"),
        None
    );
    assert_eq!(
        parse_subject("troupe.v1.memory.616.m-0000000000000001"),
        None
    );
    assert_eq!(parse_subject("troupe.v1.memory.61.not-an-id"), None);
    assert_eq!(parse_subject("other.61.m-0000000000000001"), None);
}
