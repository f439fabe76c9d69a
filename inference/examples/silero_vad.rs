//! Silero VAD's speed: `cargo run --release -p troupe-inference --example silero_vad`.
//! Measures a minute of 16 kHz audio (a tone under noise: the model's cost does not
//! depend on what it hears) five times on one thread, and prints the real-time factor.

use std::path::PathBuf;
use std::time::Instant;

use troupe_actors::local_model::ModelLoader;
use troupe_actors::voice::VadState;
use troupe_inference::local::{OnnxRuntime, SileroVad};

fn main() {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models");
    let runtime = OnnxRuntime::locate(None, &models).expect("ONNX Runtime is fetched");
    let mut vad = SileroVad::new(runtime, &models.join("silero-vad/silero_vad.onnx"))
        .load()
        .expect("the model loads");
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
    let mut factors = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let (probabilities, _) = vad.measure(VadState::default(), &minute).expect("it runs");
        let seconds = started.elapsed().as_secs_f64();
        factors.push(60.0 / seconds);
        println!(
            "60 s of audio ({} frames) in {:.2} s: {:.0}x real time",
            probabilities.len(),
            seconds,
            60.0 / seconds
        );
    }
    factors.sort_by(f64::total_cmp);
    println!("median: {:.0}x real time", factors[2]);
}
