//! `workflows`: the assistant creates, lists, runs, cancels and deletes a person's
//! workflows when they ask in a chat. A person sees and changes only the workflows they own
//! (a new one is theirs whatever its `owner` says, and a name someone else owns is refused).
//! Creating, cancelling and deleting need the person's confirmation, as every tool that
//! declares `confirm` does.

use serde_json::{Map, Value, json};
use troupe_actors::skill::{
    Skill, SkillCall, SkillError, SkillErrorCode, SkillManifest, SkillTool,
};

use crate::definition::WorkflowDefinition;
use crate::engine::Control;
use crate::journal::Cause;
use crate::runs::{StartRun, WorkflowError, WorkflowErrorCode, Workflows};
use crate::schedule::report;

/// The skill over this node's workflows.
pub struct WorkflowsSkill {
    workflows: Workflows,
}

fn tool(name: &str, description: &str, parameters: Value, confirm: bool) -> SkillTool {
    SkillTool {
        confirm,
        ..SkillTool::new(name, description, parameters)
    }
}

fn refused(error: &WorkflowError) -> SkillError {
    let code = match error.code() {
        WorkflowErrorCode::NotFound => SkillErrorCode::NotFound,
        WorkflowErrorCode::Invalid | WorkflowErrorCode::Conflict => {
            SkillErrorCode::InvalidArguments
        }
        WorkflowErrorCode::Unavailable | WorkflowErrorCode::Storage => SkillErrorCode::Unavailable,
    };
    SkillError::new(code, error.to_string())
}

fn text<'a>(arguments: &'a Value, name: &str) -> Result<&'a str, SkillError> {
    arguments[name]
        .as_str()
        .ok_or_else(|| SkillError::invalid(format!("`{name}` must be a string")))
}

impl WorkflowsSkill {
    pub const fn new(workflows: Workflows) -> Self {
        Self { workflows }
    }

    /// The workflow `name` if `person` owns it.
    fn owned(&self, person: &str, name: &str) -> Result<crate::plan::Workflow, SkillError> {
        self.workflows
            .catalog()
            .get(name)
            .filter(|workflow| workflow.owner() == person)
            .ok_or_else(|| {
                SkillError::new(
                    SkillErrorCode::NotFound,
                    format!("you have no workflow `{name}`"),
                )
            })
    }

    async fn list(&self, person: &str) -> Result<Value, SkillError> {
        let runs = self
            .workflows
            .runs(None)
            .await
            .map_err(|error| refused(&error))?;
        let mut listed = Vec::new();
        for workflow in self.workflows.catalog().list() {
            if workflow.owner() != person {
                continue;
            }
            let next = report(&self.workflows, &workflow)
                .await
                .into_iter()
                .filter_map(|trigger| trigger.next_due_ms)
                .min()
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map(|at| at.to_string());
            let latest = runs.iter().find(|run| run.workflow == workflow.name());
            listed.push(json!({
                "name": workflow.name(),
                "description": workflow.definition().description,
                "triggers": workflow.definition().triggers,
                "next_run": next,
                "latest_run": latest.map(|run| json!({"run": run.run, "status": run.status})),
            }));
        }
        Ok(json!({"workflows": listed}))
    }

    async fn create(&self, person: &str, arguments: &Value) -> Result<Value, SkillError> {
        let mut definition = WorkflowDefinition::from_toml(text(arguments, "definition")?)
            .map_err(|error| SkillError::invalid(error.to_string()))?;
        definition.owner = person.to_owned();
        if let Some(existing) = self.workflows.catalog().get(&definition.name)
            && existing.owner() != person
        {
            return Err(SkillError::invalid(format!(
                "the name `{}` is taken; choose another",
                definition.name
            )));
        }
        let name = definition.name.clone();
        let replaced = self
            .workflows
            .catalog()
            .put(definition)
            .await
            .map_err(|error| refused(&WorkflowError::from(error)))?;
        Ok(json!({"name": name, "replaced": replaced}))
    }

    async fn start(&self, person: &str, arguments: &Value) -> Result<Value, SkillError> {
        let workflow = self.owned(person, text(arguments, "name")?)?;
        let input: Map<String, Value> = arguments["input"].as_object().cloned().unwrap_or_default();
        let summary = self
            .workflows
            .start(StartRun {
                workflow: workflow.name().to_owned(),
                input,
                cause: Cause::Manual {
                    by: person.to_owned(),
                },
                run: None,
            })
            .await
            .map_err(|error| refused(&error))?;
        Ok(json!({"run": summary.run, "status": summary.status}))
    }

    async fn cancel(&self, person: &str, arguments: &Value) -> Result<Value, SkillError> {
        let run = text(arguments, "run")?;
        let (summary, _) = self
            .workflows
            .run(run)
            .await
            .map_err(|error| refused(&error))?;
        self.owned(person, &summary.workflow)?;
        let summary = self
            .workflows
            .control(run, Control::Cancel)
            .await
            .map_err(|error| refused(&error))?;
        Ok(json!({"run": summary.run, "status": summary.status}))
    }

    async fn delete(&self, person: &str, arguments: &Value) -> Result<Value, SkillError> {
        let workflow = self.owned(person, text(arguments, "name")?)?;
        self.workflows
            .catalog()
            .remove(workflow.name())
            .await
            .map_err(|error| refused(&WorkflowError::from(error)))?;
        Ok(json!({"deleted": workflow.name()}))
    }
}

#[async_trait::async_trait]
impl Skill for WorkflowsSkill {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        let name = json!({"type": "string", "description": "the workflow's name"});
        Ok(SkillManifest {
            name: "workflows".into(),
            description: "The person's automations: scheduled and triggered workflows.".into(),
            tools: vec![
                tool(
                    "list",
                    "Lists the person's workflows, their next run and latest run.",
                    json!({"type": "object", "properties": {}}),
                    false,
                ),
                tool(
                    "create",
                    "Creates or replaces one of the person's workflows from its TOML definition (name, description, [[triggers]] with cron+timezone, every, or at, and [[steps]] with model, tool, send+to, wait, if, branches, workflow).",
                    json!({"type": "object", "properties": {"definition": {"type": "string", "description": "the workflow as TOML"}}, "required": ["definition"]}),
                    true,
                ),
                tool(
                    "run",
                    "Starts a run of one of the person's workflows now.",
                    json!({"type": "object", "properties": {"name": name, "input": {"type": "object"}}, "required": ["name"]}),
                    false,
                ),
                tool(
                    "cancel",
                    "Cancels a run of one of the person's workflows.",
                    json!({"type": "object", "properties": {"run": {"type": "string", "description": "the run's id"}}, "required": ["run"]}),
                    true,
                ),
                tool(
                    "delete",
                    "Deletes one of the person's workflows.",
                    json!({"type": "object", "properties": {"name": name}, "required": ["name"]}),
                    true,
                ),
            ],
            version: String::new(),
            permissions: troupe_actors::skill::Requirements::default(),
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        let person = call.session.person.as_str();
        match call.action.as_str() {
            "list" => self.list(person).await,
            "create" => self.create(person, &call.arguments).await,
            "run" => self.start(person, &call.arguments).await,
            "cancel" => self.cancel(person, &call.arguments).await,
            "delete" => self.delete(person, &call.arguments).await,
            other => Err(SkillError::new(
                SkillErrorCode::UnknownTool,
                format!("no tool `{other}`"),
            )),
        }
    }
}

#[cfg(test)]
#[path = "skill_tests.rs"]
mod tests;
