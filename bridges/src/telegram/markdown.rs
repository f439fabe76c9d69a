//! Telegram's `MarkdownV2` from the Markdown a model writes, and splitting long replies.
//!
//! Rules (Bot API, "MarkdownV2 style"): outside entities every one of
//! `_ * [ ] ( ) ~ ` > # + - = | { } . !` and `\` must be escaped with `\`; inside `code`
//! and ```pre``` only `` ` `` and `\`; inside a link's `(...)` only `)` and `\`. The model's
//! `**bold**` becomes `*bold*`, `*italic*`/`_italic_` become `_italic_`, `~~strike~~`
//! becomes `~strike~`, `[text](url)` stays a link, code spans and fenced blocks stay code.
//! Anything else is escaped, so the result always parses; should Telegram still refuse it,
//! the bridge sends the plain text instead.

/// Characters that must be escaped outside entities.
const RESERVED: &[char] = &[
    '_', '*', '[', ']', '(', ')', '~', '`', '>', '#', '+', '-', '=', '|', '{', '}', '.', '!', '\\',
];

/// Escapes text for a place outside any entity.
pub(crate) fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for character in text.chars() {
        if RESERVED.contains(&character) {
            out.push('\\');
        }
        out.push(character);
    }
    out
}

fn escape_code(text: &str) -> String {
    text.replace('\\', "\\\\").replace('`', "\\`")
}

fn escape_url(url: &str) -> String {
    url.replace('\\', "\\\\").replace(')', "\\)")
}

/// Renders Markdown as Telegram `MarkdownV2`.
pub(crate) fn to_markdown_v2(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len() + 16);
    let mut lines = markdown.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            // A fenced block: everything up to the closing fence is code.
            let language: String = info
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '-')
                .collect();
            let mut code = String::new();
            for inner in lines.by_ref() {
                if inner.trim_start().starts_with("```") {
                    break;
                }
                code.push_str(inner);
            }
            out.push_str("```");
            out.push_str(&language);
            out.push('\n');
            out.push_str(&escape_code(code.trim_end_matches('\n')));
            out.push_str("\n```\n");
            continue;
        }
        out.push_str(&render_inline(line));
    }
    if !markdown.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    out
}

/// One line outside code blocks.
fn render_inline(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len() + 8);
    let mut index = 0;
    while index < chars.len() {
        let rest = &chars[index..];
        // `snake_case`: an underscore inside a word is a character, not emphasis.
        let intraword = rest[0] == '_' && index > 0 && chars[index - 1].is_alphanumeric();
        if !intraword && let Some((rendered, used)) = inline_entity(rest) {
            // `_a__b_` would read as underline: two entities must not touch.
            let touches = out.ends_with(['_', '*', '~']) && rendered.starts_with(['_', '*', '~']);
            if !touches {
                out.push_str(&rendered);
                index += used;
                continue;
            }
        }
        if rest[0] == '\\' && rest.len() > 1 && RESERVED.contains(&rest[1]) {
            // The model escaped it already: keep it literal.
            out.push('\\');
            out.push(rest[1]);
            index += 2;
            continue;
        }
        if RESERVED.contains(&rest[0]) {
            out.push('\\');
        }
        out.push(rest[0]);
        index += 1;
    }
    out
}

/// An entity starting at `chars[0]`: its rendering and how many characters it used.
fn inline_entity(chars: &[char]) -> Option<(String, usize)> {
    match chars[0] {
        '`' => {
            let end = find(chars, 1, &['`'])?;
            let code: String = chars[1..end].iter().collect();
            (!code.is_empty()).then(|| (format!("`{}`", escape_code(&code)), end + 1))
        }
        '*' if chars.get(1) == Some(&'*') => wrapped(chars, &['*', '*'], '*'),
        '_' if chars.get(1) == Some(&'_') => wrapped(chars, &['_', '_'], '*'),
        '~' if chars.get(1) == Some(&'~') => wrapped(chars, &['~', '~'], '~'),
        '*' => wrapped(chars, &['*'], '_'),
        '_' => wrapped(chars, &['_'], '_'),
        '[' => link(chars),
        _ => None,
    }
}

/// `delimiter text delimiter` → `entity text entity`, the text escaped.
fn wrapped(chars: &[char], delimiter: &[char], entity: char) -> Option<(String, usize)> {
    let start = delimiter.len();
    let inner_first = *chars.get(start)?;
    if inner_first.is_whitespace() {
        return None;
    }
    let mut end = start;
    while end + delimiter.len() <= chars.len() {
        let closes_word = delimiter[0] != '_'
            || chars
                .get(end + delimiter.len())
                .is_none_or(|next| !next.is_alphanumeric());
        if chars[end..end + delimiter.len()] == *delimiter && end > start && closes_word {
            let inner: String = chars[start..end].iter().collect();
            if inner.ends_with(char::is_whitespace) {
                return None;
            }
            let rendered = format!("{entity}{}{entity}", render_plain(&inner));
            return Some((rendered, end + delimiter.len()));
        }
        end += 1;
    }
    None
}

/// Text inside an entity: escaped, without nested entities.
fn render_plain(text: &str) -> String {
    escape_text(text)
}

/// `[text](url)`.
fn link(chars: &[char]) -> Option<(String, usize)> {
    let close = find(chars, 1, &[']'])?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = find(chars, close + 2, &[')'])?;
    let text: String = chars[1..close].iter().collect();
    let url: String = chars[close + 2..end].iter().collect();
    let plausible = url.starts_with("http://")
        || url.starts_with("https://")
        || url.starts_with("tg://")
        || url.starts_with("mailto:");
    if text.is_empty() || !plausible || url.contains(char::is_whitespace) {
        return None;
    }
    Some((
        format!("[{}]({})", render_plain(&text), escape_url(&url)),
        end + 1,
    ))
}

fn find(chars: &[char], from: usize, targets: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&index| targets.contains(&chars[index]))
}

/// Length as Telegram counts it: UTF-16 code units.
pub(crate) fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Splits `text` into pieces of at most `limit` UTF-16 units, preferring paragraph, then
/// line, then word boundaries. A fenced code block cut in two is closed at the end of one
/// piece and opened again at the start of the next.
pub(crate) fn split(text: &str, limit: usize) -> Vec<String> {
    // Room for a fence closed and reopened around a cut.
    let budget = limit.saturating_sub(8).max(1);
    let mut pieces = Vec::new();
    let mut rest = text.trim_end();
    let mut open_fence: Option<String> = None;
    while !rest.is_empty() {
        let prefix = open_fence
            .as_ref()
            .map(|fence| format!("{fence}\n"))
            .unwrap_or_default();
        let room = budget.saturating_sub(utf16_len(&prefix)).max(1);
        let cut = cut_point(rest, room);
        let (head, tail) = rest.split_at(cut);
        let mut piece = format!("{prefix}{head}");
        let fence = fence_open_after(&piece);
        if fence.is_some() && !tail.trim().is_empty() {
            piece = format!("{}\n```", piece.trim_end());
        }
        pieces.push(piece.trim_end().to_owned());
        open_fence = fence;
        rest = tail.trim_start_matches('\n');
    }
    if pieces.is_empty() {
        pieces.push(String::new());
    }
    pieces
}

/// The byte index at which to cut `text` so the head holds at most `room` UTF-16 units.
fn cut_point(text: &str, room: usize) -> usize {
    if utf16_len(text) <= room {
        return text.len();
    }
    let mut units = 0;
    let mut hard_limit = 0;
    for (index, character) in text.char_indices() {
        units += character.len_utf16();
        if units > room {
            break;
        }
        hard_limit = index + character.len_utf8();
    }
    let head = &text[..hard_limit];
    let at_least = hard_limit / 2;
    for separator in ["\n\n", "\n", " "] {
        if let Some(position) = head.rfind(separator)
            && position > at_least
        {
            return position + separator.len();
        }
    }
    hard_limit.max(text.chars().next().map_or(1, char::len_utf8))
}

/// The fence (e.g. "```rust") left open at the end of `piece`, if any.
fn fence_open_after(piece: &str) -> Option<String> {
    let mut open: Option<String> = None;
    for line in piece.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            open = match open {
                Some(_) => None,
                None => Some(trimmed.trim_end().to_owned()),
            };
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_characters_are_escaped() {
        assert_eq!(
            to_markdown_v2("Done. It costs 5-10 EUR (approx.)!"),
            "Done\\. It costs 5\\-10 EUR \\(approx\\.\\)\\!"
        );
        assert_eq!(to_markdown_v2("a\\b"), "a\\\\b");
    }

    #[test]
    fn markdown_entities_become_telegram_entities() {
        assert_eq!(to_markdown_v2("**bold** and *it*"), "*bold* and _it_");
        assert_eq!(to_markdown_v2("~~gone~~"), "~gone~");
        assert_eq!(to_markdown_v2("run `a.b()`"), "run `a.b()`");
        assert_eq!(
            to_markdown_v2("[docs](https://x.io/a_(b))"),
            "[docs](https://x.io/a_(b)\\)"
        );
        assert_eq!(
            to_markdown_v2("[docs](https://x.io/path)."),
            "[docs](https://x.io/path)\\."
        );
        assert_eq!(to_markdown_v2("2 * 3 = 6"), "2 \\* 3 \\= 6");
        assert_eq!(to_markdown_v2("snake_case_name"), "snake\\_case\\_name");
    }

    #[test]
    fn code_blocks_escape_only_backticks_and_backslashes() {
        let markdown = "Look:\n```rust\nlet x = a.b(\"\\n\");\n```\nok.";
        assert_eq!(
            to_markdown_v2(markdown),
            "Look:\n```rust\nlet x = a.b(\"\\\\n\");\n```\nok\\."
        );
    }

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(split("hello", 4096), vec!["hello"]);
    }

    #[test]
    fn long_text_splits_at_paragraphs_within_the_limit() {
        let paragraph = "word ".repeat(150);
        let text = format!("{paragraph}\n\n{paragraph}\n\n{paragraph}");
        let pieces = split(&text, 1000);
        assert!(pieces.len() >= 3, "{}", pieces.len());
        for piece in &pieces {
            assert!(utf16_len(piece) <= 1000);
            assert!(!piece.is_empty());
        }
        let words: usize = pieces
            .iter()
            .map(|piece| piece.split_whitespace().count())
            .sum();
        assert_eq!(words, 450, "nothing lost");
    }

    #[test]
    fn limits_count_utf16_units() {
        let text = "😀".repeat(3000); // 6000 UTF-16 units
        let pieces = split(&text, 4096);
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|piece| utf16_len(piece) <= 4096));
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn a_code_block_cut_in_two_is_closed_and_reopened() {
        let code = "let x = 1;\n".repeat(200);
        let text = format!("Here:\n```rust\n{code}```");
        let pieces = split(&text, 1000);
        assert!(pieces.len() > 1);
        for piece in &pieces {
            assert_eq!(piece.matches("```").count() % 2, 0, "balanced: {piece}");
            assert!(utf16_len(piece) <= 1000);
        }
        assert!(pieces[1].starts_with("```rust\n"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use troupe_testkit::telegram::markdown_v2;

    use super::*;

    proptest! {
        /// Whatever the model writes, Telegram's parser accepts the rendering.
        #[test]
        fn every_rendering_parses(text in "[a-z0-9 _*\\[\\]()~`>#+=|{}.!\\\\\n-]{0,80}") {
            let rendered = to_markdown_v2(&text);
            prop_assert!(markdown_v2::parse(&rendered).is_ok(), "{text:?} -> {rendered:?}");
        }

        /// Splitting loses nothing and respects the limit.
        #[test]
        fn splitting_respects_the_limit(text in "[a-z \n`]{0,400}", limit in 20usize..120) {
            for piece in split(&text, limit) {
                prop_assert!(utf16_len(&piece) <= limit, "{piece:?}");
            }
        }
    }
}
