//! Voice notes on a messaging platform, end to end: a Telegram user (the testkit's Bot API
//! double) sends a voice note (Piper's speech, encoded to Ogg Opus by Debian's `opusenc`);
//! the node downloads it (`getFile`, then the file), decodes it, has it transcribed by the
//! pocketsphinx Wyoming server, and the echo model answers what was said. A recording
//! that is cut off, or one over the size limit, is answered with why, and nothing reaches
//! the model. A WhatsApp voice note (the Cloud API double: media URL, then the download,
//! checked against its sha256; the answer uploaded and sent as audio too) and a Discord
//! voice message (from the CDN double) are heard
//! the same way. With `[voice] tts`, a voice note is answered with a voice note too
//! (Piper in the node, encoded to Ogg Opus), which reads back as the answer; a typed
//! message is answered in text only.

use std::time::Duration;

use troupe_testkit::discord::FakeDiscord;
use troupe_testkit::process::TroupeProcess;
use troupe_testkit::slack::FakeSlack;
use troupe_testkit::telegram::FakeTelegram;
use troupe_testkit::voice::{WyomingServer, ogg_opus, piper_to_wav, pocketsphinx};
use troupe_testkit::whatsapp::{FakeWhatsApp, PHONE_NUMBER_ID};

use crate::support::binary;

const TOKEN: &str = "123456:TEST-token";
const WAIT: Duration = Duration::from_secs(30);

/// A node answering with `echo` on Telegram (open to anyone), hearing voice notes with
/// `stt`.
async fn node(fake: &FakeTelegram, stt: &WyomingServer) -> TroupeProcess {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[voice]\nstt = {{ kind = \"wyoming\", uri = \"{}\" }}\n\n[[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\ndm_policy = \"open\"\n",
        stt.uri,
        fake.api_base()
    );
    TroupeProcess::start_with_env(binary(), &config, &[("TG_TOKEN", TOKEN)])
        .await
        .expect("troupe starts")
}

/// Piper saying `text`, as a voice note.
fn voice_note(text: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("note.wav");
    piper_to_wav(text, &wav);
    ogg_opus(&wav)
}

async fn replies_to(fake: &FakeTelegram, chat: i64, count: usize) -> Vec<String> {
    fake.wait_for_sent(WAIT, |_| fake.texts_to(chat).len() >= count)
        .await;
    fake.texts_to(chat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_is_transcribed_and_answered() {
    let (fake, stt) = (FakeTelegram::start(TOKEN).await, pocketsphinx().await);
    let node = node(&fake, &stt).await;
    fake.user_sends_voice(42, voice_note("What is two plus two?"));

    let replies = replies_to(&fake, 42, 1).await;
    assert_eq!(
        replies,
        ["what is two plus two"],
        "the echo of what was said"
    );
    assert!(fake.calls().contains(&"getFile".to_owned()));
    let (_, session) = crate::support::get(&node, "/api/v1/sessions/telegram:42").await;
    let question = &session["history"][0];
    assert_eq!(question["content"], "what is two plus two", "{session}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_or_oversized_voice_note_is_answered_with_why() {
    let (fake, stt) = (FakeTelegram::start(TOKEN).await, pocketsphinx().await);
    let node = node(&fake, &stt).await;
    let whole = voice_note("What is two plus two?");
    fake.user_sends_voice(7, whole[..whole.len() / 2].to_vec());
    let replies = replies_to(&fake, 7, 1).await;
    assert_eq!(
        replies,
        ["I could not hear your voice note: it is cut off before its end"]
    );

    // 50 MB: refused from the size Telegram states, never downloaded.
    let downloads = fake
        .calls()
        .iter()
        .filter(|call| *call == "getFile")
        .count();
    fake.user_sends_voice(8, vec![0; 50 * 1024 * 1024]);
    let replies = replies_to(&fake, 8, 1).await;
    assert!(
        replies[0].starts_with("I could not get your voice note: the file is 52428800 bytes"),
        "{replies:?}"
    );
    let after = fake
        .calls()
        .iter()
        .filter(|call| *call == "getFile")
        .count();
    assert_eq!(after, downloads, "the oversized note was not fetched");

    // Nothing of either reached the model.
    for chat in [7, 8] {
        let (status, _) =
            crate::support::get(&node, &format!("/api/v1/sessions/telegram:{chat}")).await;
        assert_eq!(status, 404, "telegram:{chat} has no session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_voice_note_is_downloaded_checked_and_answered() {
    let (fake, stt) = (
        FakeWhatsApp::start("EAAG-token", "app-secret-0123456789abcdef").await,
        pocketsphinx().await,
    );
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[models]\ndir = \"{}\"\n\n[voice]\nstt = {{ kind = \"wyoming\", uri = \"{}\" }}\ntts = {{ kind = \"piper\", voice = \"en_US-joe-medium\", noise_scale = 0.0, noise_w = 0.0 }}\n\n[[bridges]]\nname = \"wa\"\nkind = \"whatsapp\"\nphone_number_id = \"{PHONE_NUMBER_ID}\"\naccess_token_env = \"WA_TOKEN\"\napp_secret_env = \"WA_SECRET\"\nverify_token_env = \"WA_VERIFY\"\napi_base = \"{}\"\ndm_policy = \"open\"\n",
        crate::support::test_models_dir().display(),
        stt.uri,
        fake.api_base()
    );
    let env = [
        ("WA_TOKEN", "EAAG-token"),
        ("WA_SECRET", "app-secret-0123456789abcdef"),
        ("WA_VERIFY", "verify"),
    ];
    let node = TroupeProcess::start_with_env(binary(), &config, &env)
        .await
        .expect("troupe starts");
    let url = format!("{}/bridges/wa/webhook", node.http_url());
    let note = fake.voice_notification("16505551234", "Ada", voice_note("What is two plus two?"));
    assert_eq!(fake.notify(&url, &note).await, 200);
    for _ in 0..400 {
        if !fake.texts_to("16505551234").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fake.texts_to("16505551234"), ["what is two plus two"]);
    let spoken = fake.audio_to("16505551234");
    assert_eq!(
        spoken.len(),
        1,
        "the answer was uploaded and sent as audio too"
    );
    let samples = troupe_inference::voice::decode_ogg_opus(&spoken[0]).expect("Ogg Opus");
    assert!(
        samples.len() > 16_000 / 2,
        "{} samples of speech",
        samples.len()
    );

    // A download that does not match its sha256 is not heard, and the sender is told.
    fake.damage_downloads();
    let note = fake.voice_notification("16505551234", "Ada", voice_note("Hello there."));
    assert_eq!(fake.notify(&url, &note).await, 200);
    for _ in 0..400 {
        if fake.texts_to("16505551234").len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fake.texts_to("16505551234")[1],
        "I could not get your voice note: whatsapp media download: the file does not match its sha256"
    );
}

const DISCORD_TOKEN: &str = "MTIzNDU2Nzg5.discord-test-token";

/// A node that hears voice with `stt` (and `voice`, more of `[voice]`), with a Discord
/// bridge to `fake` that user 42 may use.
async fn discord_node(fake: &FakeDiscord, stt: &WyomingServer, voice: &str) -> TroupeProcess {
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[models]\ndir = \"{}\"\n\n[voice]\nstt = {{ kind = \"wyoming\", uri = \"{}\" }}\n{voice}\n\n[[bridges]]\nname = \"discord\"\nkind = \"discord\"\nbot_token_env = \"DISCORD_TOKEN\"\napi_base = \"{}\"\ncdn_base = \"{}\"\nallow_from = [\"42\"]\n",
        crate::support::test_models_dir().display(),
        stt.uri,
        fake.api_base(),
        fake.cdn_base()
    );
    TroupeProcess::start_with_env(binary(), &config, &[("DISCORD_TOKEN", DISCORD_TOKEN)])
        .await
        .expect("troupe starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_voice_message_is_fetched_from_the_cdn_and_answered() {
    let (fake, stt) = (
        FakeDiscord::start(DISCORD_TOKEN).await,
        pocketsphinx().await,
    );
    let _node = discord_node(&fake, &stt, "").await;
    fake.user_sends_voice("500", "42", voice_note("What is two plus two?"));
    fake.wait_for(WAIT, |fake| !fake.posted().is_empty()).await;
    let posted = fake.posted();
    assert_eq!(posted[0]["content"], "what is two plus two", "{posted:?}");
}

/// What pocketsphinx hears in `recording` (Ogg Opus).
async fn heard_in(recording: &[u8], stt: &WyomingServer) -> String {
    use troupe_actors::voice::SpeechToText;
    let samples = troupe_inference::voice::decode_ogg_opus(recording).expect("Ogg Opus");
    let recogniser =
        troupe_inference::voice::WyomingStt::new("pocketsphinx", &stt.uri, Some("en"), WAIT)
            .unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let pcm = samples
        .iter()
        .flat_map(|sample| sample.to_le_bytes())
        .collect();
    sender.send(pcm).await.unwrap();
    drop(sender);
    recogniser
        .transcribe(troupe_actors::voice::LISTENING_FORMAT, receiver)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_voice_message_is_answered_with_a_voice_message_then_text() {
    use base64::Engine as _;
    let (fake, stt) = (
        FakeDiscord::start(DISCORD_TOKEN).await,
        pocketsphinx().await,
    );
    let piper = "tts = { kind = \"piper\", voice = \"en_US-joe-medium\", noise_scale = 0.0, noise_w = 0.0 }";
    let _node = discord_node(&fake, &stt, piper).await;
    fake.user_sends_voice("500", "42", voice_note("What is two plus two?"));
    fake.wait_for(WAIT, |fake| fake.posted().len() >= 2).await;
    let posted = fake.posted();
    // The voice message first (the flag, no content), then the text.
    assert_eq!(posted[0]["flags"], 8192, "{posted:?}");
    assert!(posted[0]["content"].is_null(), "{posted:?}");
    assert_eq!(posted[1]["content"], "what is two plus two", "{posted:?}");
    let voices = fake.voice_messages();
    assert_eq!(voices.len(), 1);
    let (message, recording) = &voices[0];
    let attachment = &message["attachments"][0];
    let seconds = attachment["duration_secs"].as_f64().unwrap();
    assert!(seconds > 0.8 && seconds < 5.0, "{attachment}");
    let waveform = base64::engine::general_purpose::STANDARD
        .decode(attachment["waveform"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        waveform.len(),
        (seconds * 10.0).ceil() as usize,
        "a point per 100 ms"
    );
    assert_eq!(
        waveform.iter().max(),
        Some(&255),
        "the loudest point is full scale"
    );
    // What it says is the answer.
    let samples = troupe_inference::voice::decode_ogg_opus(recording).expect("Ogg Opus");
    assert!((samples.len() as f64 / 16_000.0 - seconds).abs() < 0.1);
    let heard = heard_in(recording, &stt).await;
    assert!(
        heard.contains("two plus two"),
        "the voice message says {heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_audio_clip_is_fetched_with_the_bot_token_and_answered_aloud() {
    let (bot, app) = ("xoxb-voice-bot", "xapp-voice-app");
    let (fake, stt) = (
        FakeSlack::start(bot, app, "signing").await,
        pocketsphinx().await,
    );
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[models]\ndir = \"{}\"\n\n[voice]\nstt = {{ kind = \"wyoming\", uri = \"{}\" }}\ntts = {{ kind = \"piper\", voice = \"en_US-joe-medium\", noise_scale = 0.0, noise_w = 0.0 }}\n\n[[bridges]]\nname = \"slack\"\nkind = \"slack\"\nmode = \"socket\"\nbot_token_env = \"SLACK_BOT\"\napp_token_env = \"SLACK_APP\"\napi_base = \"{}\"\nfiles_base = \"{}\"\nallow_from = [\"U1\"]\n",
        crate::support::test_models_dir().display(),
        stt.uri,
        fake.api_base(),
        fake.files_base()
    );
    let _node =
        TroupeProcess::start_with_env(binary(), &config, &[("SLACK_BOT", bot), ("SLACK_APP", app)])
            .await
            .expect("troupe starts");
    // A clip as Slack's apps record them: Opus in WebM (made from Piper's speech by
    // scripts/fixtures/voice_recordings.py).
    let clip = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("inference/tests/data/two_plus_two.webm"),
    )
    .unwrap();
    fake.push_envelope(&fake.audio_clip_event("D1", "U1", clip, "audio/webm"));
    let posted = fake.wait_for_posts(WAIT, |posted| !posted.is_empty()).await;
    assert_eq!(posted[0]["text"], "what is two plus two", "{posted:?}");
    assert_eq!(fake.downloads(), [true], "fetched once, with the bot token");
    // Before the text, the answer spoken: an audio file shared in the conversation.
    let shared = fake.shared_files();
    assert_eq!(shared.len(), 1, "one voice reply");
    let (form, recording) = &shared[0];
    assert_eq!(form["channel_id"], "D1", "{form}");
    let heard = heard_in(recording, &stt).await;
    assert!(
        heard.contains("two plus two"),
        "the voice reply says {heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_is_answered_with_a_voice_note_and_a_typed_message_in_text() {
    let (fake, stt) = (FakeTelegram::start(TOKEN).await, pocketsphinx().await);
    let config = format!(
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n\n[models]\ndir = \"{}\"\n\n[voice]\nstt = {{ kind = \"wyoming\", uri = \"{}\" }}\ntts = {{ kind = \"piper\", voice = \"en_US-joe-medium\", noise_scale = 0.0, noise_w = 0.0 }}\n\n[[bridges]]\nname = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TG_TOKEN\"\napi_base = \"{}\"\npoll_timeout_secs = 1\ndm_policy = \"open\"\n",
        crate::support::test_models_dir().display(),
        stt.uri,
        fake.api_base()
    );
    let node = TroupeProcess::start_with_env(binary(), &config, &[("TG_TOKEN", TOKEN)])
        .await
        .expect("troupe starts");
    fake.user_sends_voice(42, voice_note("What is two plus two?"));
    assert_eq!(replies_to(&fake, 42, 1).await, ["what is two plus two"]);
    let voices = fake.voices_to(42);
    assert_eq!(voices.len(), 1, "one voice note before the text");

    // The voice note says the answer.
    let heard = heard_in(&voices[0], &stt).await;
    assert!(
        heard.contains("two plus two"),
        "the voice note says {heard:?}"
    );

    fake.user_says(42, "typed, not spoken");
    assert_eq!(replies_to(&fake, 42, 2).await[1], "typed, not spoken");
    assert_eq!(
        fake.voices_to(42).len(),
        1,
        "a typed message is answered in text only"
    );

    let metrics = crate::support::metrics_page(&node.http_url()).await;
    for counted in [
        "troupe_voice_notes_total{outcome=\"heard\"} 1",
        "troupe_voice_replies_total{outcome=\"sent\"} 1",
    ] {
        assert!(metrics.contains(counted), "{counted} in {metrics}");
    }
    let (_, voice) = crate::support::get(&node, "/api/v1/voice").await;
    assert_eq!(voice["engines"]["voice_notes"], true, "{voice}");
    assert_eq!(voice["engines"]["voice_replies"], true, "{voice}");
}
