//! The workflows a node knows: the TOML files in its `workflows/` directory, read at start,
//! and those added or removed through the API (written back to that directory, so a
//! restart finds them). The one owner of the definitions.
//!
//! In a cluster the definitions are shared ([`SharedDefinitions`]): a change made on one
//! node is stored in the cluster first, and every node applies what the cluster holds
//! ([`Catalog::apply_shared`], [`Catalog::apply_removed`]).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::Notify;

use crate::definition::{DefinitionError, WorkflowDefinition};
use crate::plan::{InvalidWorkflow, Workflow};

/// Why a definition was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Unreadable(#[from] DefinitionError),
    #[error(transparent)]
    Invalid(#[from] InvalidWorkflow),
    #[error("step `{step}` runs workflow `{missing}`, which does not exist")]
    MissingSubWorkflow { step: String, missing: String },
    #[error("workflow `{0}` runs itself through its sub-workflows")]
    Cycle(String),
    #[error("the file is named `{file}` but the workflow is `{name}`")]
    FileName { file: String, name: String },
    #[error("workflow `{name}` is run by `{by}`; change or delete that one first")]
    InUse { name: String, by: String },
    #[error("the workflows directory could not be written: {0}")]
    Io(#[from] std::io::Error),
    #[error("the workflow cannot be kept as TOML (TOML has no null): {0}")]
    NotToml(#[source] toml::ser::Error),
    #[error("the cluster could not store the workflow: {0}")]
    Shared(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where a cluster keeps the definitions every node shares.
#[async_trait::async_trait]
pub trait SharedDefinitions: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `name`'s definition (TOML) for every node.
    async fn put(&self, name: &str, toml: &str) -> Result<(), CatalogError>;
    /// Removes `name` for every node.
    async fn remove(&self, name: &str) -> Result<(), CatalogError>;
}

/// A file that was not loaded, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Unloaded {
    pub file: String,
    pub error: String,
}

/// The definitions. Shared by the API, the runs and the scheduler.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    workflows: RwLock<BTreeMap<String, Workflow>>,
    unloaded: RwLock<Vec<Unloaded>>,
    /// Whether any workflow has a message trigger (so messages are looked at at all).
    watches_messages: AtomicBool,
    /// Whether any workflow has a `wait_reply` step.
    awaits_replies: AtomicBool,
    changed: Notify,
    shared: OnceLock<Arc<dyn SharedDefinitions>>,
}

/// Whether some step, at any depth, is a `wait_reply`.
fn waits_for_replies(steps: &[crate::plan::Step]) -> bool {
    use crate::plan::StepKind;
    steps.iter().any(|step| match &step.kind {
        StepKind::WaitReply { .. } => true,
        StepKind::Condition {
            then, otherwise, ..
        } => waits_for_replies(then) || waits_for_replies(otherwise),
        StepKind::Parallel { branches, .. } => {
            branches.iter().any(|branch| waits_for_replies(branch))
        }
        _ => false,
    })
}

fn any_message_trigger(workflows: &BTreeMap<String, Workflow>) -> bool {
    workflows.values().any(|workflow| {
        workflow
            .triggers()
            .iter()
            .any(|trigger| matches!(trigger.when, crate::plan::When::Message { .. }))
    })
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Catalog {
    /// Reads every `*.toml` in `dir` (created if missing). A file that does not validate is
    /// left out, logged with its key, and listed by [`Catalog::unloaded`]; it never stops the
    /// node. Blocking: call at start-up.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "toml")
            })
            .collect();
        files.sort();
        let mut compiled = BTreeMap::new();
        let mut unloaded = Vec::new();
        for file in files {
            match load_file(&file) {
                Ok(workflow) => {
                    compiled.insert(workflow.name().to_owned(), workflow);
                }
                Err(error) => unloaded.push(Unloaded {
                    file: file.display().to_string(),
                    error: error.to_string(),
                }),
            }
        }
        // Sub-workflows are checked once all are read.
        let names: Vec<String> = compiled.keys().cloned().collect();
        for name in names {
            if let Err(error) = check_references(&compiled, &name) {
                compiled.remove(&name);
                unloaded.push(Unloaded {
                    file: dir.join(format!("{name}.toml")).display().to_string(),
                    error: error.to_string(),
                });
            }
        }
        for problem in &unloaded {
            tracing::error!(file = %problem.file, error = %problem.error, "a workflow was not loaded");
        }
        Ok(Self {
            dir: dir.to_owned(),
            watches_messages: AtomicBool::new(any_message_trigger(&compiled)),
            awaits_replies: AtomicBool::new(
                compiled
                    .values()
                    .any(|workflow| waits_for_replies(workflow.steps())),
            ),
            workflows: RwLock::new(compiled),
            unloaded: RwLock::new(unloaded),
            changed: Notify::new(),
            shared: OnceLock::new(),
        })
    }

    pub fn get(&self, name: &str) -> Option<Workflow> {
        read(&self.workflows).get(name).cloned()
    }

    pub fn list(&self) -> Vec<Workflow> {
        read(&self.workflows).values().cloned().collect()
    }

    /// Whether a message could start a run (any workflow has a message trigger).
    pub fn watches_messages(&self) -> bool {
        self.watches_messages.load(Ordering::Relaxed)
    }

    /// Whether a run could wait for a reply (any workflow has a `wait_reply` step). Runs
    /// begun under an older definition keep waiting whatever this says.
    pub fn awaits_replies(&self) -> bool {
        self.awaits_replies.load(Ordering::Relaxed)
    }

    fn changed_now(&self) {
        let workflows = read(&self.workflows);
        let watching = any_message_trigger(&workflows);
        self.watches_messages.store(watching, Ordering::Relaxed);
        let awaiting = workflows
            .values()
            .any(|workflow| waits_for_replies(workflow.steps()));
        drop(workflows);
        // Once a reply may be awaited it stays so: a run begun earlier may still wait.
        if awaiting {
            self.awaits_replies.store(true, Ordering::Relaxed);
        }
        self.changed.notify_waiters();
    }

    pub fn unloaded(&self) -> Vec<Unloaded> {
        read(&self.unloaded).clone()
    }

    /// Resolves when a definition was added, changed or removed.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// From now on, changes are stored in the cluster before they are made here.
    pub fn share(&self, shared: Arc<dyn SharedDefinitions>) {
        if self.shared.set(shared).is_err() {
            tracing::warn!("the workflow definitions were already shared");
        }
    }

    /// Validates `definition`, writes it to `<dir>/<name>.toml` and uses it from now on
    /// (runs already going on keep the definition they started with). Answers whether it
    /// replaced one.
    pub async fn put(&self, definition: WorkflowDefinition) -> Result<bool, CatalogError> {
        self.put_as(definition, true).await
    }

    /// Applies a definition the cluster holds (TOML), without storing it there again.
    pub async fn apply_shared(&self, toml: &str) -> Result<bool, CatalogError> {
        self.put_as(WorkflowDefinition::from_toml(toml)?, false)
            .await
    }

    async fn put_as(
        &self,
        definition: WorkflowDefinition,
        share: bool,
    ) -> Result<bool, CatalogError> {
        let workflow = Workflow::compile(definition)?;
        let name = workflow.name().to_owned();
        {
            let mut candidate = read(&self.workflows).clone();
            candidate.insert(name.clone(), workflow.clone());
            check_references(&candidate, &name)?;
        }
        let text = workflow
            .definition()
            .to_toml()
            .map_err(CatalogError::NotToml)?;
        // Asked before the cluster stores it: this node may apply its own change from
        // the cluster before this call goes on.
        let existed = read(&self.workflows).contains_key(&name);
        if share && let Some(shared) = self.shared.get() {
            shared.put(&name, &text).await?;
        }
        let (path, temporary) = (
            self.dir.join(format!("{name}.toml")),
            self.dir.join(format!(
                ".{name}.toml.{}.new",
                uuid::Uuid::new_v4().simple()
            )),
        );
        tokio::task::spawn_blocking(move || {
            std::fs::write(&temporary, text)?;
            std::fs::rename(&temporary, &path)
        })
        .await
        .map_err(std::io::Error::other)??;
        write(&self.workflows).insert(name, workflow);
        self.changed_now();
        Ok(existed)
    }

    /// Removes a workflow and its file; answers whether it existed.
    pub async fn remove(&self, name: &str) -> Result<bool, CatalogError> {
        self.remove_as(name, true).await
    }

    /// Applies a removal the cluster holds, without storing it there again.
    pub async fn apply_removed(&self, name: &str) -> Result<bool, CatalogError> {
        self.remove_as(name, false).await
    }

    async fn remove_as(&self, name: &str, share: bool) -> Result<bool, CatalogError> {
        if let Some(by) = read(&self.workflows)
            .values()
            .find(|workflow| workflow.sub_workflows().contains(&name))
        {
            return Err(CatalogError::InUse {
                name: name.to_owned(),
                by: by.name().to_owned(),
            });
        }
        if !read(&self.workflows).contains_key(name) {
            return Ok(false);
        }
        if share && let Some(shared) = self.shared.get() {
            shared.remove(name).await?;
        }
        write(&self.workflows).remove(name);
        let path = self.dir.join(format!("{name}.toml"));
        tokio::task::spawn_blocking(move || match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        })
        .await
        .map_err(std::io::Error::other)??;
        self.changed_now();
        Ok(true)
    }

    /// `name`'s definition and those of every sub-workflow it reaches (its own first): what
    /// a run fixes when it starts.
    pub fn closure(&self, name: &str) -> Option<Vec<WorkflowDefinition>> {
        let workflows = read(&self.workflows);
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut queue = vec![name.to_owned()];
        while let Some(next) = queue.pop() {
            if !seen.insert(next.clone()) {
                continue;
            }
            let workflow = workflows.get(&next)?;
            order.push(workflow.definition().clone());
            queue.extend(workflow.sub_workflows().into_iter().map(str::to_owned));
        }
        Some(order)
    }
}

fn load_file(file: &Path) -> Result<Workflow, CatalogError> {
    let text = std::fs::read_to_string(file)?;
    let workflow = Workflow::compile(WorkflowDefinition::from_toml(&text)?)?;
    let stem = file
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem != workflow.name() {
        return Err(CatalogError::FileName {
            file: stem,
            name: workflow.name().to_owned(),
        });
    }
    Ok(workflow)
}

/// Every sub-workflow `name` runs exists, and none leads back to it.
fn check_references(all: &BTreeMap<String, Workflow>, name: &str) -> Result<(), CatalogError> {
    let mut stack: Vec<(String, usize)> = vec![(name.to_owned(), 0)];
    while let Some((current, depth)) = stack.pop() {
        let Some(workflow) = all.get(&current) else {
            continue;
        };
        for sub in workflow.sub_workflows() {
            if sub == name || depth > all.len() {
                return Err(CatalogError::Cycle(name.to_owned()));
            }
            if !all.contains_key(sub) {
                return Err(CatalogError::MissingSubWorkflow {
                    step: current.clone(),
                    missing: sub.to_owned(),
                });
            }
            stack.push((sub.to_owned(), depth + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(text: &str) -> WorkflowDefinition {
        WorkflowDefinition::from_toml(text).unwrap()
    }

    const CHILD: &str =
        "name = \"child\"\nowner = \"person:ada\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n";
    const PARENT: &str =
        "name = \"parent\"\nowner = \"person:ada\"\n[[steps]]\nid = \"c\"\nworkflow = \"child\"\n";

    #[tokio::test]
    async fn definitions_are_kept_as_files_and_a_bad_file_is_listed_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::load(dir.path()).unwrap();
        assert!(matches!(
            catalog.put(definition(PARENT)).await,
            Err(CatalogError::MissingSubWorkflow { .. })
        ));
        assert!(!catalog.put(definition(CHILD)).await.unwrap(), "new");
        assert!(!catalog.put(definition(PARENT)).await.unwrap());
        assert!(matches!(
            catalog.remove("child").await,
            Err(CatalogError::InUse { .. })
        ));
        std::fs::write(dir.path().join("broken.toml"), "name = \"broken\"\n").unwrap();
        std::fs::write(
            dir.path().join("elsewhere.toml"),
            CHILD.replace("\"child\"", "\"other\""),
        )
        .unwrap();

        let catalog = Catalog::load(dir.path()).unwrap();
        let names: Vec<String> = catalog
            .list()
            .iter()
            .map(|workflow| workflow.name().to_owned())
            .collect();
        assert_eq!(names, ["child", "parent"]);
        let unloaded = catalog.unloaded();
        assert_eq!(catalog.unloaded().len(), 2, "{unloaded:?}");
        assert_eq!(catalog.closure("parent").unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_definition_toml_cannot_hold_is_refused_as_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::load(dir.path()).unwrap();
        let mut child = definition(CHILD);
        child
            .input
            .insert("nothing".into(), serde_json::Value::Null);
        assert!(matches!(
            catalog.put(child).await,
            Err(CatalogError::NotToml(_))
        ));
        assert!(catalog.list().is_empty());
    }
}
