//! Telegram's `MarkdownV2` parser as the Bot API documents it ("Formatting options"), so
//! the test double refuses what Telegram refuses, with Telegram's error texts:
//! - outside entities, `_ * [ ] ( ) ~ ` > # + - = | { } . !` must be escaped with `\`;
//! - entities: `*bold*`, `_italic_`, `__underline__`, `~strike~`, `||spoiler||`,
//!   `` `code` ``, ```` ```pre``` ````, `[text](url)`, `>` quotes at the start of a line;
//! - inside code and pre only `` ` `` and `\` are escaped; inside a link's URL `)` and `\`.
//!
//! Answers the visible text (what Telegram counts against the 4096 limit).

/// Characters that must be escaped outside entities.
const RESERVED: &[char] = &[
    '_', '*', '[', ']', '(', ')', '~', '`', '>', '#', '+', '-', '=', '|', '{', '}', '.', '!',
];

/// Parses `text`; `Err` holds Telegram's description.
pub fn parse(text: &str) -> Result<String, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut visible = String::new();
    let mut open: Vec<&'static str> = Vec::new();
    let mut index = 0;
    let mut line_start = true;
    while index < chars.len() {
        let character = chars[index];
        let next = chars.get(index + 1).copied();
        if character == '\\' {
            let Some(escaped) = next else {
                return Err(reserved_error('\\'));
            };
            if !(1..=126).contains(&u32::from(escaped)) {
                return Err(reserved_error('\\'));
            }
            visible.push(escaped);
            index += 2;
            line_start = false;
            continue;
        }
        if character == '>' && line_start {
            index += 1;
            continue;
        }
        if character == '`' {
            let fence = chars[index..].starts_with(&['`', '`', '`']);
            let (used, code) =
                code_entity(&chars[index..], fence).ok_or_else(|| entity_end_error(text, index))?;
            visible.push_str(&code);
            index += used;
            line_start = false;
            continue;
        }
        if character == '[' {
            let (used, label) =
                link_entity(&chars[index..]).ok_or_else(|| entity_end_error(text, index))?;
            visible.push_str(&label?);
            index += used;
            line_start = false;
            continue;
        }
        let delimiter = match (character, next) {
            ('_', Some('_')) => Some("__"),
            ('|', Some('|')) => Some("||"),
            ('*', _) => Some("*"),
            ('_', _) => Some("_"),
            ('~', _) => Some("~"),
            _ => None,
        };
        if let Some(delimiter) = delimiter {
            if open.last() == Some(&delimiter) {
                open.pop();
            } else if open.contains(&delimiter) {
                return Err(entity_end_error(text, index));
            } else {
                open.push(delimiter);
            }
            index += delimiter.chars().count();
            line_start = false;
            continue;
        }
        if RESERVED.contains(&character) {
            return Err(reserved_error(character));
        }
        visible.push(character);
        line_start = character == '\n';
        index += 1;
    }
    if !open.is_empty() {
        return Err("Bad Request: can't parse entities: Can't find end of the entity".into());
    }
    Ok(visible)
}

fn reserved_error(character: char) -> String {
    format!(
        "Bad Request: can't parse entities: Character '{character}' is reserved and must be escaped with the preceding '\\'"
    )
}

fn entity_end_error(text: &str, char_index: usize) -> String {
    let byte_offset: usize = text.chars().take(char_index).map(char::len_utf8).sum();
    format!(
        "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset {byte_offset}"
    )
}

/// `` `code` `` or ```` ```pre``` ````: (characters used, visible text).
fn code_entity(chars: &[char], fence: bool) -> Option<(usize, String)> {
    let delimiter = if fence { 3 } else { 1 };
    let mut index = delimiter;
    let mut code = String::new();
    while index < chars.len() {
        match chars[index] {
            '\\' => {
                let escaped = *chars.get(index + 1)?;
                if escaped != '`' && escaped != '\\' {
                    // Telegram keeps other backslashes literally inside code.
                    code.push('\\');
                }
                code.push(escaped);
                index += 2;
            }
            '`' if !fence => return Some((index + 1, code)),
            '`' if chars[index..].starts_with(&['`', '`', '`']) => {
                // The first line of a pre block may name its language.
                let code = match code.split_once('\n') {
                    Some((language, rest)) if !language.contains(' ') => rest.to_owned(),
                    _ => code,
                };
                return Some((index + 3, code));
            }
            '`' => return None,
            other => {
                code.push(other);
                index += 1;
            }
        }
    }
    None
}

/// `[label](url)`: (characters used, the label's visible text or its error).
fn link_entity(chars: &[char]) -> Option<(usize, Result<String, String>)> {
    let close = (1..chars.len()).find(|&index| chars[index] == ']' && chars[index - 1] != '\\')?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let mut index = close + 2;
    loop {
        match chars.get(index)? {
            '\\' => index += 2,
            ')' => break,
            _ => index += 1,
        }
    }
    let label: String = chars[1..close].iter().collect();
    Some((index + 1, parse(&label)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_telegram_accepts() {
        assert_eq!(parse("plain").unwrap(), "plain");
        assert_eq!(
            parse("*bold* _it_ __u__ ~s~ ||sp||").unwrap(),
            "bold it u s sp"
        );
        assert_eq!(parse("a\\.b\\!").unwrap(), "a.b!");
        assert_eq!(parse("`x.y()`").unwrap(), "x.y()");
        assert_eq!(parse("```rust\nlet a = 1;\n```").unwrap(), "let a = 1;\n");
        assert_eq!(parse("[a\\.b](https://x.io/\\))").unwrap(), "a.b");
        assert_eq!(parse(">quoted").unwrap(), "quoted");
    }

    #[test]
    fn what_telegram_refuses() {
        assert!(
            parse("Done.")
                .unwrap_err()
                .contains("Character '.' is reserved")
        );
        assert!(
            parse("1-2")
                .unwrap_err()
                .contains("Character '-' is reserved")
        );
        assert!(
            parse("*open")
                .unwrap_err()
                .contains("Can't find end of the entity")
        );
        assert!(
            parse("`open")
                .unwrap_err()
                .contains("Can't find end of the entity")
        );
        assert!(parse("end\\").is_err());
    }
}
