//! openWakeWord's speed: `cargo run --release -p troupe-inference --example wake_word`.
//! Scores a minute of 16 kHz audio (a tone under noise: the models' cost does not depend on
//! what they hear) five times on one thread, and prints the real-time factor and the cost
//! of one 80 ms chunk (how late after a chunk ends its score is known).

use std::path::PathBuf;
use std::time::Instant;

use troupe_actors::local_model::ModelLoader;
use troupe_actors::voice::{WAKE_CHUNK, WakeState};
use troupe_inference::local::{OnnxRuntime, OpenWakeWord, WakeWordFiles};

fn main() {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models");
    let runtime = OnnxRuntime::locate(None, &models).expect("ONNX Runtime is fetched");
    let files = WakeWordFiles::in_folder(&models.join("openwakeword"), "hey_jarvis_v0.1");
    let mut wake = OpenWakeWord::new(runtime, files)
        .load()
        .expect("the models load");
    let mut seed = 1u32;
    let minute: Vec<f32> = (0..16_000 * 60)
        .map(|index| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed % 2001) as f32 / 1000.0 - 1.0;
            0.3 * (index as f32 * 0.05).sin() + 0.05 * noise
        })
        .collect();
    let chunks = minute.len() / WAKE_CHUNK;
    let mut factors = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let (scores, _) = wake
            .measure(WakeState::default(), &minute)
            .expect("it runs");
        let seconds = started.elapsed().as_secs_f64();
        factors.push(60.0 / seconds);
        println!(
            "60 s of audio ({} chunks) in {:.2} s: {:.0}x real time, {:.2} ms a chunk",
            scores.len(),
            seconds,
            60.0 / seconds,
            seconds * 1000.0 / chunks as f64
        );
    }
    factors.sort_by(f64::total_cmp);
    println!(
        "median: {:.0}x real time, {:.2} ms a chunk",
        factors[2],
        60_000.0 / factors[2] / chunks as f64
    );
}
