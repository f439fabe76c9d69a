//! Text helpers shared by the bridges.

/// Splits at `limit` characters, preferring paragraph, line and word boundaries.
pub(crate) fn split_chars(text: &str, limit: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.chars().count() <= limit {
            pieces.push(rest.to_owned());
            break;
        }
        let hard = rest
            .char_indices()
            .nth(limit)
            .map_or(rest.len(), |(index, _)| index);
        let head = &rest[..hard];
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|separator| {
                head.rfind(separator)
                    .filter(|position| *position > hard / 2)
            })
            .unwrap_or(hard);
        pieces.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_boundaries_and_loses_nothing() {
        let text = "word ".repeat(2000);
        let pieces = split_chars(&text, 4000);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|piece| piece.chars().count() <= 4000));
        let words: usize = pieces
            .iter()
            .map(|piece| piece.split_whitespace().count())
            .sum();
        assert_eq!(words, 2000);
        assert_eq!(split_chars("short", 10), vec!["short"]);
        assert!(split_chars("   ", 10).is_empty());
        let unbroken = "x".repeat(25);
        assert_eq!(split_chars(&unbroken, 10).concat(), unbroken);
    }
}
