//! The local chat model's speed: `cargo run --release -p troupe-inference --example
//! local_chat [model.gguf]` (default: SmolLM2-135M-Instruct from
//! `./scripts/fetch-test-models`). Prints the load time, then for a short prompt and a
//! long one (a conversation of about 1,000 tokens) the time to first token (the prompt's
//! prefill and one step) and the reply's tokens per second after it, five runs each; then
//! the time to first token of the long conversation's next turn (its attention cached).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use troupe_actors::provider::{DeltaSink, Role};
use troupe_inference::local::{ChatTurn, Generation, GgufChatModel};

const RUNS: usize = 5;
const REPLY_TOKENS: usize = 128;

fn generation(turns: Vec<ChatTurn>, first: Arc<Mutex<Option<Instant>>>) -> Generation {
    Generation {
        system: Some("You are a helpful assistant.".into()),
        turns,
        max_tokens: REPLY_TOKENS,
        temperature: 0.2,
        seed: 7,
        deltas: DeltaSink::new(move |_| {
            first.lock().unwrap().get_or_insert_with(Instant::now);
        }),
        cancel: CancellationToken::new(),
    }
}

/// This process's resident memory, as the kernel counts it.
fn resident() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.0} MiB", kib / 1024.0),
        )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let file = std::env::args().nth(1).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.cache/models/smollm2-135m-instruct/model.gguf")
        },
        PathBuf::from,
    );
    let started = Instant::now();
    let mut model = GgufChatModel::load(&file).expect("the model loads");
    println!(
        "loaded {} in {:?}; RSS {}",
        file.display(),
        started.elapsed(),
        resident()
    );
    let short = vec![ChatTurn {
        role: Role::User,
        text: "Give me three tips for sleeping better.".into(),
    }];
    let paragraph = "We talked about the garden, the tomatoes that did not ripen, the neighbour's cat that sleeps in the greenhouse, and the plan to build a second compost bin before winter. ";
    let mut long: Vec<ChatTurn> = (0..12)
        .map(|index| ChatTurn {
            role: if index % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            },
            text: paragraph.repeat(2).into(),
        })
        .collect();
    long.push(short[0].clone());
    for (name, turns) in [("short prompt", short), ("long prompt", long.clone())] {
        let (mut first_token, mut rates, mut prompt_tokens) = (Vec::new(), Vec::new(), 0);
        for _ in 0..RUNS {
            let first = Arc::new(Mutex::new(None));
            let asked = generation(turns.clone(), Arc::clone(&first));
            let started = Instant::now();
            let reply = model.generate(&asked).expect("the model answers");
            let finished = Instant::now();
            let first = first.lock().unwrap().unwrap_or(finished);
            prompt_tokens = reply.usage.input_tokens;
            first_token.push((first - started).as_secs_f64() * 1000.0);
            let after = (finished - first)
                .max(Duration::from_micros(1))
                .as_secs_f64();
            rates.push(reply.usage.output_tokens.saturating_sub(1) as f64 / after);
        }
        println!(
            "{name} ({prompt_tokens} tokens): time to first token p50 {:.0} ms (min {:.0}), {:.1} tokens/s after it (p50 of {RUNS})",
            median(first_token.clone()),
            first_token.iter().copied().fold(f64::MAX, f64::min),
            median(rates),
        );
        println!("RSS after them: {}", resident());
    }
    // The long conversation going on: its next turn reads only the new exchange.
    let mut follow_ups = Vec::new();
    for _ in 0..RUNS {
        let answered = model
            .generate(&generation(long.clone(), Arc::default()))
            .expect("the model answers");
        let mut next = long.clone();
        next.push(ChatTurn {
            role: Role::Assistant,
            text: answered.text.into(),
        });
        next.push(ChatTurn {
            role: Role::User,
            text: "Which of them is the easiest?".into(),
        });
        let first = Arc::new(Mutex::new(None));
        let started = Instant::now();
        let reply = model
            .generate(&generation(next, Arc::clone(&first)))
            .expect("the model answers");
        let first = first.lock().unwrap().unwrap_or_else(Instant::now);
        follow_ups.push(((first - started).as_secs_f64() * 1000.0, reply));
    }
    let (_, sample) = &follow_ups[0];
    println!(
        "the long conversation's next turn ({} tokens, {} of them cached): time to first token p50 {:.0} ms",
        sample.usage.input_tokens,
        sample.usage.cache_read_tokens,
        median(follow_ups.iter().map(|(ms, _)| *ms).collect()),
    );
}
