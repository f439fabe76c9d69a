//! Finding and loading ONNX Runtime (`libonnxruntime.so`), and the execution providers a
//! session asks for.
//!
//! The library is looked for, in order, at `[models] onnxruntime`, at `ORT_DYLIB_PATH`,
//! and at `<models dir>/onnxruntime/libonnxruntime.so` (where `troupe models` puts it). A
//! process loads it once: ONNX Runtime's API is global.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep::ExecutionProviderDispatch;
use ort::session::Session;

/// The environment variable `ort` itself reads.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// Where sessions run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// The CPU only.
    Cpu,
    /// CUDA when this ONNX Runtime has it and a GPU is present, else the CPU.
    #[default]
    Auto,
    /// CUDA on this GPU, or an error (a library without CUDA, no GPU).
    Cuda { device_id: i32 },
}

impl Device {
    /// The execution providers a session registers, in order of preference. The CPU's
    /// comes last, without its memory arena: the arena keeps the largest batch's memory
    /// for good, which for a small model is most of what the process holds.
    pub(crate) fn execution_providers(self) -> Vec<ExecutionProviderDispatch> {
        let gpu = match self {
            Self::Cpu => None,
            Self::Auto => Some(ort::ep::CUDA::default().build().fail_silently()),
            Self::Cuda { device_id } => Some(
                ort::ep::CUDA::default()
                    .with_device_id(device_id)
                    .build()
                    .error_on_failure(),
            ),
        };
        let cpu = ort::ep::CPU::default().with_arena_allocator(false).build();
        gpu.into_iter().chain(std::iter::once(cpu)).collect()
    }
}

/// Why ONNX Runtime is not available.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime is not installed: no libonnxruntime at {}; run `troupe models install onnxruntime`, set `[models] onnxruntime`, or set ORT_DYLIB_PATH",
        searched.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Missing { searched: Vec<PathBuf> },
    #[error("ONNX Runtime at {path} could not be opened: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: ort::LoadDynamicError,
    },
    #[error("ONNX Runtime at {path} could not be started: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("ONNX Runtime was loaded from {loaded} already; {asked} cannot be loaded too")]
    Other { loaded: PathBuf, asked: PathBuf },
}

/// The ONNX Runtime library this process uses: where it is, and (once loaded) its
/// environment.
#[derive(Clone, Debug)]
pub struct OnnxRuntime {
    path: PathBuf,
}

/// The library loaded into this process, if one is.
static LOADED: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

impl OnnxRuntime {
    /// Finds the library: `configured`, else `ORT_DYLIB_PATH`, else in `models_dir`.
    pub fn locate(configured: Option<&Path>, models_dir: &Path) -> Result<Self, RuntimeError> {
        let from_env = std::env::var_os(ORT_DYLIB_PATH).map(PathBuf::from);
        let in_models = models_dir.join("onnxruntime").join("libonnxruntime.so");
        let candidates: Vec<PathBuf> = configured
            .map(Path::to_path_buf)
            .into_iter()
            .chain(from_env)
            .chain(std::iter::once(in_models))
            .collect();
        match candidates.iter().find(|path| path.is_file()) {
            Some(path) => Ok(Self { path: path.clone() }),
            None => Err(RuntimeError::Missing {
                searched: candidates,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The environment sessions are built in, loading the library at the first call.
    /// Blocking (it opens a shared library): call it on a model's thread.
    pub fn environment(&self) -> Result<Environment, RuntimeError> {
        let mut loaded = LOADED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((path, environment)) = loaded.as_ref() {
            return if *path == self.path {
                Ok(environment.clone())
            } else {
                Err(RuntimeError::Other {
                    loaded: path.clone(),
                    asked: self.path.clone(),
                })
            };
        }
        let load = |source: ort::Error| RuntimeError::Load {
            path: self.path.clone(),
            source,
        };
        let environment = ort::init_from(&self.path)
            .map_err(|source| RuntimeError::Open {
                path: self.path.clone(),
                source,
            })?
            .with_name("troupe")
            .build()
            .map_err(load)?;
        *loaded = Some((self.path.clone(), environment.clone()));
        Ok(environment)
    }
}

/// A session for one of the small audio models (voice activity, wake word, a Piper voice)
/// on the CPU: `threads` within an operator (at least one), one between operators.
pub(super) fn cpu_session(
    environment: &Environment,
    model: &Path,
    threads: usize,
) -> Result<Session, ort::Error> {
    Session::builder(environment)?
        .with_intra_threads(threads.max(1))?
        .with_inter_threads(1)?
        .commit_from_file(model)
}
