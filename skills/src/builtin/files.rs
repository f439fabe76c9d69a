//! `files`: searches the directories the user granted, by file name and by content, and
//! reads a found file. Every path is resolved (symbolic links included) and must stay inside
//! a granted directory; nothing outside them is ever listed or read. The walking runs on
//! blocking threads, never on the async runtime.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};
use troupe_actors::skill::{
    Requirements, Skill, SkillCall, SkillError, SkillErrorCode, SkillManifest,
};

use super::{text_argument, tool};

/// Files looked at per search, at most.
const MAX_FILES_SCANNED: usize = 50_000;
/// Largest file whose content is searched or read.
const MAX_CONTENT_BYTES: u64 = 1024 * 1024;
/// Largest text handed back by `read`.
const MAX_READ_BYTES: usize = 256 * 1024;
const DEFAULT_RESULTS: usize = 20;
const MAX_RESULTS: usize = 100;

/// One match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SearchHit {
    pub path: String,
    pub size_bytes: u64,
    /// For a content match: the first matching line and its number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

/// The skill (also served by the example HTTP skill in `skills/examples/file-search`).
#[derive(Clone, Debug)]
pub struct FileSearch {
    roots: Vec<PathBuf>,
}

impl FileSearch {
    /// Over these directories (each must exist).
    pub fn new(roots: &[PathBuf]) -> Result<Self, String> {
        if roots.is_empty() {
            return Err(
                "the files skill needs at least one directory in `permissions.files`".into(),
            );
        }
        let roots = roots
            .iter()
            .map(|root| {
                let resolved = root
                    .canonicalize()
                    .map_err(|error| format!("{}: {error}", root.display()))?;
                if resolved.is_dir() {
                    Ok(resolved)
                } else {
                    Err(format!("{} is not a directory", root.display()))
                }
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { roots })
    }

    /// The resolved path, if it lies inside a granted directory.
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let resolved = path.canonicalize().ok()?;
        self.roots
            .iter()
            .any(|root| resolved.starts_with(root))
            .then_some(resolved)
    }

    /// Files whose name contains `name` (case-insensitive; `*` matches anything) and whose
    /// content contains `text`, up to `limit` of them.
    pub fn search(&self, name: Option<&str>, text: Option<&str>, limit: usize) -> Vec<SearchHit> {
        let name = name.map(str::to_lowercase);
        let text = text.map(str::to_lowercase);
        let mut hits = Vec::new();
        let mut scanned = 0;
        for root in &self.roots {
            for entry in walkdir::WalkDir::new(root)
                .follow_links(false)
                .into_iter()
                .flatten()
            {
                if hits.len() >= limit || scanned >= MAX_FILES_SCANNED {
                    return hits;
                }
                if !entry.file_type().is_file() {
                    continue;
                }
                scanned += 1;
                let file_name = entry.file_name().to_string_lossy().to_lowercase();
                if name
                    .as_deref()
                    .is_some_and(|pattern| !name_matches(&file_name, pattern))
                {
                    continue;
                }
                let Some(path) = self.inside(entry.path()) else {
                    continue;
                };
                let size_bytes = entry.metadata().map_or(0, |meta| meta.len());
                let mut hit = SearchHit {
                    path: path.display().to_string(),
                    size_bytes,
                    line: None,
                    snippet: None,
                };
                if let Some(text) = &text {
                    let Some((line, snippet)) = find_in_file(&path, size_bytes, text) else {
                        continue;
                    };
                    hit.line = Some(line);
                    hit.snippet = Some(snippet);
                }
                hits.push(hit);
            }
        }
        hits
    }

    /// The text of a file inside the granted directories.
    pub fn read(&self, path: &str) -> Result<Value, SkillError> {
        let resolved = self.inside(Path::new(path)).ok_or_else(|| {
            SkillError::new(
                SkillErrorCode::Forbidden,
                format!("`{path}` is not a file inside the directories this skill may read"),
            )
        })?;
        let meta =
            std::fs::metadata(&resolved).map_err(|error| SkillError::failed(error.to_string()))?;
        if !meta.is_file() {
            return Err(SkillError::invalid(format!("`{path}` is not a file")));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&resolved)
            .and_then(|file| file.take(MAX_READ_BYTES as u64).read_to_end(&mut bytes))
            .map_err(|error| SkillError::failed(error.to_string()))?;
        if bytes.contains(&0) {
            return Err(SkillError::invalid(format!("`{path}` is not a text file")));
        }
        Ok(json!({
            "path": resolved.display().to_string(),
            "size_bytes": meta.len(),
            "truncated": meta.len() > MAX_READ_BYTES as u64,
            "text": String::from_utf8_lossy(&bytes),
        }))
    }

    /// Runs a call (blocking: the caller puts it on a blocking thread).
    pub fn run(&self, action: &str, arguments: &Value) -> Result<Value, SkillError> {
        match action {
            "search" => {
                let name = arguments["name"].as_str().filter(|name| !name.is_empty());
                let text = arguments["text"].as_str().filter(|text| !text.is_empty());
                if name.is_none() && text.is_none() {
                    return Err(SkillError::invalid(
                        "give a `name` or a `text` to search for",
                    ));
                }
                let limit = arguments["max_results"]
                    .as_u64()
                    .map_or(DEFAULT_RESULTS, |n| {
                        usize::try_from(n).unwrap_or(MAX_RESULTS)
                    })
                    .clamp(1, MAX_RESULTS);
                let hits = self.search(name, text, limit);
                Ok(json!({"count": hits.len(), "files": hits}))
            }
            "read" => self.read(text_argument(arguments, "path")?),
            other => Err(SkillError::invalid(format!("no tool `{other}`"))),
        }
    }

    /// The manifest (shared with the example HTTP skill).
    pub fn manifest_of(name: &str) -> SkillManifest {
        SkillManifest {
            name: name.into(),
            description:
                "Searches the person's files by name and content, in the directories they granted."
                    .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            tools: vec![
                tool(
                    "search",
                    "Finds files by name (substring, `*` wildcards) and/or by a text they contain.",
                    json!({"type": "object", "properties": {
                        "name": {"type": "string"}, "text": {"type": "string"},
                        "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS}},
                        "additionalProperties": false}),
                ),
                tool(
                    "read",
                    "Reads a text file found by search (first 256 KiB).",
                    json!({"type": "object", "properties": {"path": {"type": "string"}},
                        "required": ["path"], "additionalProperties": false}),
                ),
            ],
            permissions: Requirements {
                network: false,
                files: true,
            },
        }
    }
}

/// `pattern` (lowercase) matches `name` (lowercase): a substring, or a `*` wildcard pattern.
fn name_matches(name: &str, pattern: &str) -> bool {
    if !pattern.contains('*') {
        return name.contains(pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = name;
    for (index, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if index == 0 {
            let Some(after) = rest.strip_prefix(part) else {
                return false;
            };
            rest = after;
        } else if let Some(found) = rest.find(part) {
            rest = &rest[found + part.len()..];
        } else {
            return false;
        }
    }
    parts
        .last()
        .is_none_or(|last| last.is_empty() || name.ends_with(last))
}

/// The first line containing `text` (lowercase), for a text file small enough to search.
fn find_in_file(path: &Path, size: u64, text: &str) -> Option<(usize, String)> {
    if size > MAX_CONTENT_BYTES {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    if bytes.iter().take(8192).any(|&byte| byte == 0) {
        return None; // binary
    }
    let content = String::from_utf8_lossy(&bytes);
    content.lines().enumerate().find_map(|(index, line)| {
        line.to_lowercase().contains(text).then(|| {
            let snippet: String = line.trim().chars().take(200).collect();
            (index + 1, snippet)
        })
    })
}

#[async_trait::async_trait]
impl Skill for FileSearch {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        Ok(Self::manifest_of("files"))
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        let search = self.clone();
        tokio::task::spawn_blocking(move || search.run(&call.action, &call.arguments))
            .await
            .map_err(|error| SkillError::failed(error.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, tempfile::TempDir) {
        let granted = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let docs = granted.path().join("docs");
        std::fs::create_dir(&docs).unwrap();
        std::fs::write(docs.join("Recipe-Pancakes.md"), "flour\nmilk\nTwo EGGS\n").unwrap();
        std::fs::write(docs.join("taxes-2026.txt"), "deadline: May 31\n").unwrap();
        std::fs::write(docs.join("photo.bin"), [0u8, 1, 2, b'e', b'g', b'g', b's']).unwrap();
        std::fs::write(outside.path().join("secret-eggs.txt"), "eggs outside\n").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret-eggs.txt"),
            docs.join("link-eggs.txt"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), docs.join("escape")).unwrap();
        (granted, outside)
    }

    #[test]
    fn finds_by_name_and_content_never_outside() {
        let (granted, outside) = tree();
        let search = FileSearch::new(&[granted.path().to_path_buf()]).unwrap();
        let by_name = search
            .run("search", &json!({"name": "recipe*.md"}))
            .unwrap();
        assert_eq!(by_name["count"], 1);
        let by_text = search.run("search", &json!({"text": "eggs"})).unwrap();
        assert_eq!(by_text["count"], 1, "{by_text}");
        assert_eq!(by_text["files"][0]["line"], 3);
        assert_eq!(by_text["files"][0]["snippet"], "Two EGGS");
        let path = by_text["files"][0]["path"].as_str().unwrap();
        assert!(
            search.read(path).unwrap()["text"]
                .as_str()
                .unwrap()
                .contains("milk")
        );

        let secret = outside.path().join("secret-eggs.txt");
        for forbidden in [
            secret.display().to_string(),
            granted
                .path()
                .join("docs/link-eggs.txt")
                .display()
                .to_string(),
            granted
                .path()
                .join("docs/escape/secret-eggs.txt")
                .display()
                .to_string(),
            granted.path().join("docs/../../").display().to_string(),
        ] {
            let error = search.read(&forbidden).unwrap_err();
            assert!(
                matches!(
                    error.code,
                    SkillErrorCode::Forbidden | SkillErrorCode::InvalidArguments
                ),
                "{forbidden}: {error:?}"
            );
        }
        assert!(search.run("search", &json!({})).is_err());
    }

    #[test]
    fn wildcards_match_whole_names() {
        assert!(name_matches("taxes-2026.txt", "*.txt"));
        assert!(name_matches("taxes-2026.txt", "tax*2026*"));
        assert!(!name_matches("taxes-2026.txt", "*.md"));
        assert!(name_matches("taxes-2026.txt", "2026"));
    }
}
