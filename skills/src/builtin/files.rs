//! `files`: searches the directories the user granted, by file name and by content, and
//! reads a found file. Every file is opened *beneath* its granted directory's handle
//! (`cap-std`: `openat2` with `RESOLVE_BENEATH` where the kernel has it), never by a path
//! checked first and opened after, so a link swapped in between cannot lead outside. A
//! symbolic link as the file itself is refused, a directory link may not leave the granted
//! directory, and a file with other hard links is refused (one of them may be outside).
//! The walking runs on blocking threads, never on the async runtime.

use crate::setup::SkillSetupError;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};

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

/// One granted directory: its resolved path and an open handle that files are opened
/// beneath.
#[derive(Clone, Debug)]
struct Root {
    path: PathBuf,
    dir: Arc<cap_std::fs::Dir>,
}

/// The skill (also served by the example HTTP skill in `skills/examples/file-search`).
#[derive(Clone, Debug)]
pub struct FileSearch {
    roots: Vec<Root>,
}

/// Why a file may not be read.
fn forbidden(path: &Path, reason: &str) -> SkillError {
    SkillError::new(
        SkillErrorCode::Forbidden,
        format!(
            "`{}` is not a file inside the directories this skill may read ({reason})",
            path.display()
        ),
    )
}

impl FileSearch {
    /// Over these directories (each must exist).
    pub fn new(roots: &[PathBuf]) -> Result<Self, SkillSetupError> {
        if roots.is_empty() {
            return Err(SkillSetupError::NoDirectories);
        }
        let roots = roots
            .iter()
            .map(|root| {
                let unreadable = |source| SkillSetupError::Directory {
                    path: root.clone(),
                    source,
                };
                let resolved = root.canonicalize().map_err(unreadable)?;
                if !resolved.is_dir() {
                    return Err(SkillSetupError::NotADirectory(root.clone()));
                }
                let dir =
                    cap_std::fs::Dir::open_ambient_dir(&resolved, cap_std::ambient_authority())
                        .map_err(unreadable)?;
                Ok(Root {
                    path: resolved,
                    dir: Arc::new(dir),
                })
            })
            .collect::<Result<_, SkillSetupError>>()?;
        Ok(Self { roots })
    }

    /// Opens `path` (absolute, inside a granted directory) beneath that directory's
    /// handle: no `..`, no link as the file, no escape through a directory link, no file
    /// with other hard links.
    fn open_beneath(&self, path: &Path) -> Result<(std::fs::File, std::fs::Metadata), SkillError> {
        if !path.is_absolute()
            || path
                .components()
                .any(|part| matches!(part, Component::ParentDir | Component::CurDir))
        {
            return Err(forbidden(path, "give the absolute path a search returned"));
        }
        let (root, relative) = self
            .roots
            .iter()
            .find_map(|root| Some((root, path.strip_prefix(&root.path).ok()?)))
            .ok_or_else(|| forbidden(path, "outside every granted directory"))?;
        let mut options = cap_std::fs::OpenOptions::new();
        options.read(true).follow(FollowSymlinks::No);
        let file = root
            .dir
            .open_with(relative, &options)
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => {
                    SkillError::invalid(format!("`{}` does not exist", path.display()))
                }
                _ => forbidden(path, &format!("it is a link or leads outside: {error}")),
            })?
            .into_std();
        let meta = file
            .metadata()
            .map_err(|error| SkillError::failed(error.to_string()))?;
        if !meta.is_file() {
            return Err(SkillError::invalid(format!(
                "`{}` is not a file",
                path.display()
            )));
        }
        if meta.nlink() > 1 {
            return Err(forbidden(path, "it has other hard links"));
        }
        Ok((file, meta))
    }

    /// Files whose name contains `name` (case-insensitive; `*` matches anything) and whose
    /// content contains `text`, up to `limit` of them.
    pub fn search(&self, name: Option<&str>, text: Option<&str>, limit: usize) -> Vec<SearchHit> {
        let name = name.map(str::to_lowercase);
        let text = text.map(str::to_lowercase);
        let mut hits = Vec::new();
        let mut scanned = 0;
        for root in &self.roots {
            for entry in walkdir::WalkDir::new(&root.path)
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
                let Ok((file, meta)) = self.open_beneath(entry.path()) else {
                    continue;
                };
                let size_bytes = meta.len();
                let mut hit = SearchHit {
                    path: entry.path().display().to_string(),
                    size_bytes,
                    line: None,
                    snippet: None,
                };
                if let Some(text) = &text {
                    let Some((line, snippet)) = find_in_file(file, size_bytes, text) else {
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
        let resolved = Path::new(path);
        let (file, meta) = self.open_beneath(resolved)?;
        let mut bytes = Vec::new();
        file.take(MAX_READ_BYTES as u64)
            .read_to_end(&mut bytes)
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
fn find_in_file(file: std::fs::File, size: u64, text: &str) -> Option<(usize, String)> {
    if size > MAX_CONTENT_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONTENT_BYTES).read_to_end(&mut bytes).ok()?;
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
    fn a_hard_link_to_a_file_outside_is_refused() {
        let (granted, outside) = tree();
        let linked = granted.path().join("docs/hard-eggs.txt");
        std::fs::hard_link(outside.path().join("secret-eggs.txt"), &linked).unwrap();
        let search = FileSearch::new(&[granted.path().to_path_buf()]).unwrap();
        let error = search.read(&linked.display().to_string()).unwrap_err();
        assert_eq!(error.code, SkillErrorCode::Forbidden, "{error:?}");
        let found = search.run("search", &json!({"text": "outside"})).unwrap();
        assert_eq!(found["count"], 0, "{found}");
    }

    #[test]
    fn a_link_swapped_in_while_reading_never_leaks_the_file_outside() {
        let (granted, outside) = tree();
        let docs = granted.path().join("docs");
        let target = docs.join("swap.txt");
        std::fs::write(&target, "inside\n").unwrap();
        let search = FileSearch::new(&[granted.path().to_path_buf()]).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (secret, stop) = (outside.path().join("secret-eggs.txt"), Arc::clone(&stop));
            std::thread::spawn(move || {
                let (file, link) = (docs.join("swap-file.tmp"), docs.join("swap-link.tmp"));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::write(&file, "inside\n").unwrap();
                    std::fs::rename(&file, docs.join("swap.txt")).unwrap();
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(&secret, &link).unwrap();
                    std::fs::rename(&link, docs.join("swap.txt")).unwrap();
                }
            })
        };
        let path = target.display().to_string();
        let mut read_inside = 0;
        for _ in 0..20_000 {
            if let Ok(read) = search.read(&path) {
                let text = read["text"].as_str().unwrap_or_default().to_owned();
                assert!(!text.contains("outside"), "the file outside leaked");
                read_inside += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(read_inside > 0, "some reads found the regular file");
    }

    #[test]
    fn wildcards_match_whole_names() {
        assert!(name_matches("taxes-2026.txt", "*.txt"));
        assert!(name_matches("taxes-2026.txt", "tax*2026*"));
        assert!(!name_matches("taxes-2026.txt", "*.md"));
        assert!(name_matches("taxes-2026.txt", "2026"));
    }
}
