//! Piper's speed: `cargo run --release -p troupe-inference --example piper [THREADS]`.
//! Speaks a short reply of four sentences with the packaged voice (en_US-joe-medium),
//! five times, a sentence at a time as `PooledPiper` does, and prints for each run the
//! time to the first sentence's audio (phonemes and synthesis) and the real-time factor
//! over the whole reply (seconds of speech per second of compute).

use std::path::PathBuf;
use std::time::Instant;

use troupe_actors::local_model::ModelLoader;
use troupe_inference::local::{Espeak, EspeakPaths, OnnxRuntime, Piper, PiperFiles, PiperVoice};

const REPLY: &str = "Two plus two is four. If you add two more, you get six. \
    Would you like me to keep counting for you? I can also set a timer, read the weather, or add it to your shopping list.";

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map_or(1, |threads| threads.parse().expect("a number of threads"));
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models");
    let runtime = OnnxRuntime::locate(None, &models).expect("ONNX Runtime is fetched");
    let files = PiperFiles::in_folder(&models.join("voices"), "en_US-joe-medium");
    let voice = std::sync::Arc::new(PiperVoice::read(&files).expect("the voice's settings"));
    let espeak = Espeak::open(&EspeakPaths::default()).expect("eSpeak NG opens");
    let mut model = Piper::new(runtime, &files, std::sync::Arc::clone(&voice), threads)
        .load()
        .expect("the voice loads");
    let rate = f64::from(voice.format().rate);
    let _warm_up = model.synthesize(voice.ids(&espeak.phonemize("en-us", "Hello.").unwrap()[0]));
    let mut factors = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let sentences = espeak
            .phonemize(voice.espeak_voice(), REPLY)
            .expect("phonemes");
        let mut samples = 0usize;
        let mut first = None;
        for phonemes in &sentences {
            let audio = model.synthesize(voice.ids(phonemes)).expect("it speaks");
            samples += audio.len();
            first.get_or_insert_with(|| started.elapsed().as_secs_f64());
        }
        let seconds = started.elapsed().as_secs_f64();
        let spoken = samples as f64 / rate;
        let first = first.unwrap_or(seconds);
        println!(
            "{} sentences, {spoken:.2} s of speech in {seconds:.2} s: {:.1}x real time; first sentence's audio after {:.0} ms",
            sentences.len(),
            spoken / seconds,
            first * 1000.0
        );
        factors.push(spoken / seconds);
        firsts.push(first);
    }
    factors.sort_by(f64::total_cmp);
    firsts.sort_by(f64::total_cmp);
    println!(
        "median ({threads} thread(s)): {:.1}x real time, first audio after {:.0} ms",
        factors[2],
        firsts[2] * 1000.0
    );
}
