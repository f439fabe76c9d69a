//! Entry points for the fuzzers in `fuzz/` (and their regression tests): a provider's
//! answer, as bytes off the network, read by the same code a turn reads it with. Any input
//! must end in a completion or a typed error; a panic or a broken invariant is a bug.
//! Nothing but the fuzzers calls these.

use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use troupe_actors::{Completion, DeltaSink, ProviderError};

use crate::http::sse_events;

const PROVIDER: &str = "fuzz";

/// The streaming dialects a provider may speak.
#[derive(Clone, Copy, Debug)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

/// A streamed answer: `data` cut into network reads of the sizes its first byte picks.
pub fn stream(dialect: Dialect, data: &[u8]) -> Option<Result<Completion, ProviderError>> {
    let (&seed, body) = data.split_first()?;
    let pieces = cut(body, usize::from(seed % 17) + 1);
    let events = sse_events(
        PROVIDER,
        futures_util::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>)),
    );
    let streamed = Arc::new(Mutex::new(String::new()));
    let deltas = {
        let streamed = Arc::clone(&streamed);
        DeltaSink::new(move |text| {
            if let Ok(mut streamed) = streamed.lock() {
                streamed.push_str(text);
            }
        })
    };
    // The bytes are in memory: reading them never waits.
    let read = match dialect {
        Dialect::OpenAi => crate::openai::read_stream(PROVIDER, events, &deltas).now_or_never()?,
        Dialect::Anthropic => {
            crate::anthropic::read_stream(PROVIDER, events, &deltas).now_or_never()?
        }
    };
    if let Ok(completion) = &read {
        let streamed = streamed.lock().map(|text| text.clone()).unwrap_or_default();
        assert_eq!(
            completion.text, streamed,
            "the answer's text is what was streamed to the user"
        );
    }
    Some(read)
}

/// A whole (non-streamed) answer, as its JSON body.
pub fn answer(dialect: Dialect, data: &[u8]) -> Option<Completion> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    match dialect {
        Dialect::OpenAi => crate::openai::parse_completion(&value),
        Dialect::Anthropic => crate::anthropic::parse_message(&value),
    }
}

/// `data` in pieces of `size` bytes, then of one byte, in turn: lines, events and UTF-8
/// characters all get cut somewhere.
fn cut(data: &[u8], size: usize) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut rest = data;
    let mut long = true;
    while !rest.is_empty() {
        let take = if long { size } else { 1 }.min(rest.len());
        let (piece, after) = rest.split_at(take);
        pieces.push(piece.to_vec());
        rest = after;
        long = !long;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_openai_stream_cut_anywhere_reads_whole() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"h\xc3\xa9llo\"}}]}\n\n\
                     data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        for seed in 0..17u8 {
            let mut data = vec![seed];
            data.extend_from_slice(body);
            let completion = stream(Dialect::OpenAi, &data).unwrap().unwrap();
            assert_eq!(completion.text, "héllo");
        }
    }

    #[test]
    fn a_truncated_anthropic_stream_is_a_typed_error() {
        let data = b"\x03event: message_start\ndata: {\"type\":\"message_start\"}\n\n";
        assert!(stream(Dialect::Anthropic, data).unwrap().is_err());
        assert!(answer(Dialect::Anthropic, b"{\"content\":7}").is_none());
    }
}
