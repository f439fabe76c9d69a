//! What a voice says of a reply. The model writes Markdown for screens; a speaker reads
//! sentences. [`speakable_sentences`] drops what a voice would read out as symbols
//! (emphasis, headings, bullets, code, link targets) and cuts the text into sentences, so
//! that the first one can play while the next is synthesised.

/// The longest piece handed to a voice at once; a longer sentence is cut at a space.
pub const MAX_SPOKEN_CHARS: usize = 300;

/// The sentences of `markdown` as a voice should say them, in order. Code blocks are not
/// read out; nor is anything that leaves no words.
pub fn speakable_sentences(markdown: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut in_code_block = false;
    for line in markdown.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        let words = plain_words(without_line_marker(trimmed));
        for sentence in split_sentences(&words) {
            cut_long(sentence, &mut sentences);
        }
    }
    sentences
}

/// A reply's sentences as its text streams in: each piece of text given to [`Self::push`]
/// answers the sentences it completed (outside code blocks), so that speech can start at
/// the first sentence instead of the last; [`Self::finish`] answers the rest of the reply.
#[derive(Debug, Default)]
pub struct SentenceFeed {
    text: String,
    /// The bytes of `text` already answered as sentences.
    spoken: usize,
}

impl SentenceFeed {
    /// Takes the next piece of the reply; answers the sentences it completed.
    pub fn push(&mut self, piece: &str) -> Vec<String> {
        self.text.push_str(piece);
        let Some(end) = self.last_boundary() else {
            return Vec::new();
        };
        let sentences = speakable_sentences(&self.text[self.spoken..end]);
        self.spoken = end;
        sentences
    }

    /// The whole reply, as it ended: answers what was not said yet. A reply that is not
    /// the text streamed (the model started over) is said whole, unless some was said.
    pub fn finish(&mut self, reply: &str) -> Vec<String> {
        let said = &self.text[..self.spoken];
        let rest = if let Some(rest) = reply.strip_prefix(said) {
            rest
        } else if self.spoken == 0 {
            reply
        } else {
            ""
        };
        let sentences = speakable_sentences(rest);
        self.text.clear();
        self.spoken = 0;
        sentences
    }

    /// The end of the last whole sentence or line not yet answered, outside code blocks.
    fn last_boundary(&self) -> Option<usize> {
        let pending = &self.text[self.spoken..];
        let mut boundary = None;
        let mut chars = pending.char_indices().peekable();
        let mut fences = count_fences(&self.text[..self.spoken]);
        let mut line_begins = 0;
        while let Some((index, character)) = chars.next() {
            let fence = &pending[index..];
            if index == line_begins && (fence.starts_with("```") || fence.starts_with("~~~")) {
                fences += 1;
            }
            let next = chars.peek().map(|&(_, next)| next);
            let ends = match character {
                '\n' => {
                    line_begins = index + 1;
                    true
                }
                // `1. ` opens a list item; it ends no sentence.
                '.' if is_number(&pending[line_begins..index]) => false,
                '.' | '!' | '?' | '…' => next.is_some_and(char::is_whitespace),
                _ => false,
            };
            if ends && fences.is_multiple_of(2) {
                boundary = Some(self.spoken + index + character.len_utf8());
            }
        }
        boundary
    }
}

/// `text` is digits alone (after any indent).
fn is_number(text: &str) -> bool {
    let text = text.trim_start();
    !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
}

/// Code fences that open a line in `text`.
fn count_fences(text: &str) -> usize {
    text.lines()
        .filter(|line| {
            let line = line.trim_start();
            line.starts_with("```") || line.starts_with("~~~")
        })
        .count()
}

/// `line` without its heading hashes, quote mark or list bullet.
fn without_line_marker(line: &str) -> &str {
    let line = line
        .trim_start_matches('#')
        .trim_start_matches('>')
        .trim_start();
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = line.strip_prefix(bullet) {
            return rest;
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0
        && let Some(rest) = line[digits..]
            .strip_prefix(". ")
            .or_else(|| line[digits..].strip_prefix(") "))
    {
        return rest;
    }
    line
}

/// `text` with links reduced to their words, and emphasis, code and table marks dropped.
fn plain_words(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(character) = rest.chars().next() {
        rest = &rest[character.len_utf8()..];
        match character {
            '*' | '`' | '|' | '~' | '[' => {}
            '!' if rest.starts_with('[') => {}
            // A link's target is not read out.
            ']' if rest.starts_with('(') => {
                rest = rest.find(')').map_or("", |close| &rest[close + 1..]);
            }
            ']' => {}
            _ => plain.push(character),
        }
    }
    plain.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` cut after each `.`, `!`, `?` or `…` that a space or the end follows.
fn split_sentences(text: &str) -> Vec<&str> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((index, character)) = chars.next() {
        let ends = matches!(character, '.' | '!' | '?' | '…')
            && chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        if ends {
            let end = index + character.len_utf8();
            sentences.push(text[start..end].trim());
            start = end;
        }
    }
    sentences.push(text[start..].trim());
    sentences.retain(|sentence| sentence.chars().any(char::is_alphanumeric));
    sentences
}

/// Pushes `sentence` in pieces of at most [`MAX_SPOKEN_CHARS`], cut at spaces.
fn cut_long(sentence: &str, into: &mut Vec<String>) {
    let mut rest = sentence;
    while rest.chars().count() > MAX_SPOKEN_CHARS {
        let limit = rest
            .char_indices()
            .nth(MAX_SPOKEN_CHARS)
            .map_or(rest.len(), |(index, _)| index);
        let cut = rest[..limit]
            .rfind(' ')
            .filter(|&at| at > 0)
            .unwrap_or(limit);
        into.push(rest[..cut].trim().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        into.push(rest.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_spoken_sentence_by_sentence() {
        assert_eq!(
            speakable_sentences("Two plus two is four. Anything else? Happy to help!"),
            ["Two plus two is four.", "Anything else?", "Happy to help!"]
        );
    }

    #[test]
    fn numbers_and_abbreviated_decimals_stay_in_their_sentence() {
        assert_eq!(
            speakable_sentences("It costs 2.50 euros. That is all."),
            ["It costs 2.50 euros.", "That is all."]
        );
    }

    #[test]
    fn markdown_marks_are_not_read_out() {
        let reply = "## Plan\n\n- **Buy** milk\n- Call `Bob` at [the office](https://example.com/office)\n1. Sleep\n> Quoted *words*.";
        assert_eq!(
            speakable_sentences(reply),
            [
                "Plan",
                "Buy milk",
                "Call Bob at the office",
                "Sleep",
                "Quoted words."
            ]
        );
    }

    #[test]
    fn code_blocks_are_not_read_out() {
        let reply = "Run this:\n```sh\nrm -rf /tmp/x\n```\nThen it is done.";
        assert_eq!(
            speakable_sentences(reply),
            ["Run this:", "Then it is done."]
        );
    }

    #[test]
    fn a_streamed_reply_is_spoken_as_its_sentences_complete() {
        let mut feed = SentenceFeed::default();
        assert!(feed.push("Two plus").is_empty());
        assert!(
            feed.push(" two is four").is_empty(),
            "no sentence ended yet"
        );
        assert_eq!(feed.push(". Anything"), ["Two plus two is four."]);
        assert!(feed.push(" else").is_empty());
        assert_eq!(
            feed.finish("Two plus two is four. Anything else?"),
            ["Anything else?"]
        );
        // A finished feed starts over for the next reply.
        assert_eq!(feed.push("Yes. "), ["Yes."]);
    }

    #[test]
    fn a_streamed_code_block_is_not_cut_into_sentences() {
        let mut feed = SentenceFeed::default();
        assert_eq!(feed.push("Run this:\n```sh\necho a. b\n"), ["Run this:"]);
        assert!(feed.push("echo c. d\n").is_empty(), "inside the block");
        assert_eq!(feed.push("```\nDone. "), ["Done."]);
        assert_eq!(
            feed.push("Steps:\n1. "),
            ["Steps:"],
            "a list item's number is kept"
        );
        assert_eq!(
            feed.finish("Run this:\n```sh\necho a. b\necho c. d\n```\nDone. Steps:\n1. Sleep"),
            ["Sleep"]
        );
    }

    #[test]
    fn a_reply_that_is_not_what_streamed_is_said_whole_only_if_nothing_was() {
        let mut feed = SentenceFeed::default();
        assert_eq!(feed.finish("Hello there."), ["Hello there."]);
        feed.push("First try. ");
        assert!(feed.finish("Something else entirely.").is_empty());
    }

    #[test]
    fn what_leaves_no_words_is_not_spoken() {
        assert!(speakable_sentences("").is_empty());
        assert!(speakable_sentences("---\n\n| --- | --- |\n```\ncode\n```").is_empty());
    }

    #[test]
    fn a_sentence_too_long_for_one_breath_is_cut_at_spaces() {
        let long = "word ".repeat(200);
        let pieces = speakable_sentences(&long);
        assert!(pieces.len() >= 3, "{} pieces", pieces.len());
        assert!(
            pieces
                .iter()
                .all(|piece| piece.chars().count() <= MAX_SPOKEN_CHARS)
        );
        assert_eq!(pieces.join(" "), long.trim());
    }
}
