//! A validated workflow: what the engine runs. [`Workflow::compile`] is the one way to get
//! one; it checks every key of a [`WorkflowDefinition`] and parses its templates, cron
//! patterns, durations and times once. Errors name the key (`steps[2].branches[0].steps[1].tool`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use crate::cron::{CronSchedule, CronScheduleError};
use crate::definition::{StepDefinition, TriggerDefinition, WorkflowDefinition};
use crate::template::{Template, TemplateError, TemplatedValue};

/// Most steps one definition may hold (counting nested ones).
pub const MAX_DEFINED_STEPS: usize = 200;
/// Deepest nesting of conditions and branches.
pub const MAX_NESTING: usize = 8;
/// Longest a name or step id may be.
const MAX_NAME_CHARS: usize = 64;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// How long a `wait_reply` step waits when its `timeout` is not given.
const DEFAULT_REPLY_WAIT: Duration = Duration::from_secs(24 * 3600);
/// The default catch-up window of a schedule.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(3600);

/// A workflow ready to run. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Workflow {
    inner: Arc<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    definition: WorkflowDefinition,
    deadline: Option<Duration>,
    output: Option<Template>,
    triggers: Vec<Trigger>,
    steps: Vec<Step>,
}

/// When a workflow starts by itself.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub when: When,
    pub catch_up: Duration,
    pub input: Map<String, Value>,
}

/// What starts a run.
#[derive(Clone, Debug)]
pub enum When {
    Cron(Box<CronSchedule>),
    Every(Duration),
    At(Timestamp),
    /// `POST /hooks/workflows/<name>`, signed with the secret in this environment variable.
    Webhook {
        secret_env: String,
    },
    /// A message matching the pattern (from `platform` only, when given).
    Message {
        pattern: regex::Regex,
        platform: Option<String>,
    },
}

impl When {
    /// Whether it fires at times (a schedule) rather than on an event.
    pub fn is_timed(&self) -> bool {
        matches!(self, Self::Cron(_) | Self::Every(_) | Self::At(_))
    }
}

/// One step.
#[derive(Clone, Debug)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    pub policy: StepPolicy,
}

/// Retries and time limits of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepPolicy {
    pub retries: u32,
    pub backoff: Duration,
    pub timeout: Option<Duration>,
}

/// What a step does.
#[derive(Clone, Debug)]
pub enum StepKind {
    Model {
        prompt: Template,
    },
    Tool {
        tool: String,
        arguments: TemplatedValue,
    },
    Send {
        text: Template,
        to: Template,
    },
    Wait(Duration),
    Until(Template),
    /// Wait for a message from `from`, for at most `within`.
    WaitReply {
        from: Template,
        within: Duration,
    },
    Condition {
        value: Template,
        test: Test,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
    Parallel {
        branches: Vec<Vec<Step>>,
        first: usize,
    },
    Workflow {
        name: String,
        input: TemplatedValue,
    },
}

/// How a condition tests its value.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    Truthy,
    Equals(Value),
    NotEquals(Value),
    Contains(String),
    GreaterThan(f64),
    LessThan(f64),
}

/// A definition that does not validate: the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct InvalidWorkflow {
    pub key: String,
    #[source]
    pub problem: Problem,
}

/// What is wrong with a key.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("must be 1 to {MAX_NAME_CHARS} characters of a-z, 0-9, '-' and '_'")]
    Name,
    #[error("`{0}` is used by another step")]
    DuplicateId(String),
    #[error(
        "a step needs exactly one of model, tool, send, wait, until, wait_reply, if, branches, workflow (found {0})"
    )]
    Kind(String),
    #[error("is not allowed on a {0} step")]
    NotForKind(&'static str),
    #[error("is required")]
    Required,
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("reads step `{0}`, which has not run before this step")]
    UnknownStep(String),
    #[error("not a duration (like \"90s\", \"15m\", \"2h\"): {0}")]
    Duration(#[source] jiff::Error),
    #[error("must be longer than zero")]
    Zero,
    #[error("takes one of equals, not_equals, contains, greater_than, less_than")]
    Tests,
    #[error("not an RFC 3339 time: {0}")]
    Time(#[source] jiff::Error),
    #[error(transparent)]
    Cron(#[from] CronScheduleError),
    #[error("a trigger needs exactly one of cron, every, at, webhook_secret_env, message")]
    TriggerKind,
    #[error("not a regular expression: {0}")]
    Pattern(#[source] Box<regex::Error>),
    #[error("must name an environment variable (A-Z, 0-9, _)")]
    EnvName,
    #[error("must be `web:<sender>` or `<bridge>:<chat id>`")]
    Recipient,
    #[error("must be between 1 and the number of branches")]
    First,
    #[error("holds more than {MAX_DEFINED_STEPS} steps")]
    TooManySteps,
    #[error("nests deeper than {MAX_NESTING} levels")]
    TooDeep,
    #[error("needs at least one step")]
    Empty,
    #[error("not a person (`person:ada` or `<platform>:<sender>`)")]
    Owner,
}

fn invalid(key: impl Into<String>, problem: impl Into<Problem>) -> InvalidWorkflow {
    InvalidWorkflow {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Whether `name` is a valid workflow name or step id.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Parses a duration key.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, InvalidWorkflow> {
    let signed: SignedDuration = text
        .parse()
        .map_err(|error| invalid(key, Problem::Duration(error)))?;
    let duration = Duration::try_from(signed).map_err(|_| invalid(key, Problem::Zero))?;
    if duration.is_zero() {
        return Err(invalid(key, Problem::Zero));
    }
    Ok(duration)
}

impl Workflow {
    /// Validates `definition`. Sub-workflows are named, not checked here: the catalog
    /// checks that they exist.
    pub fn compile(definition: WorkflowDefinition) -> Result<Self, InvalidWorkflow> {
        if !is_valid_name(&definition.name) {
            return Err(invalid("name", Problem::Name));
        }
        if !definition.owner.contains(':') || definition.owner.chars().any(char::is_whitespace) {
            return Err(invalid("owner", Problem::Owner));
        }
        let deadline = definition
            .deadline
            .as_deref()
            .map(|text| parse_duration("deadline", text))
            .transpose()?;
        let triggers = definition
            .triggers
            .iter()
            .enumerate()
            .map(|(index, trigger)| compile_trigger(&format!("triggers[{index}]"), trigger))
            .collect::<Result<_, _>>()?;
        let mut checker = Checker::default();
        if definition.steps.is_empty() {
            return Err(invalid("steps", Problem::Empty));
        }
        let steps = checker.steps("steps", &definition.steps, 0)?;
        let output = definition
            .output
            .as_deref()
            .map(|text| checker.template("output", text))
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Compiled {
                definition,
                deadline,
                output,
                triggers,
                steps,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.definition.name
    }

    pub fn owner(&self) -> &str {
        &self.inner.definition.owner
    }

    pub fn definition(&self) -> &WorkflowDefinition {
        &self.inner.definition
    }

    pub fn deadline(&self) -> Option<Duration> {
        self.inner.deadline
    }

    pub fn output(&self) -> Option<&Template> {
        self.inner.output.as_ref()
    }

    pub fn triggers(&self) -> &[Trigger] {
        &self.inner.triggers
    }

    pub fn steps(&self) -> &[Step] {
        &self.inner.steps
    }

    /// The sub-workflows its steps name.
    pub fn sub_workflows(&self) -> Vec<&str> {
        fn walk<'a>(steps: &'a [Step], names: &mut Vec<&'a str>) {
            for step in steps {
                match &step.kind {
                    StepKind::Workflow { name, .. } => names.push(name),
                    StepKind::Condition {
                        then, otherwise, ..
                    } => {
                        walk(then, names);
                        walk(otherwise, names);
                    }
                    StepKind::Parallel { branches, .. } => {
                        branches.iter().for_each(|branch| walk(branch, names));
                    }
                    _ => {}
                }
            }
        }
        let mut names = Vec::new();
        walk(&self.inner.steps, &mut names);
        names
    }
}

/// A trigger that fires on an event: no zone, no catch-up.
fn event_trigger(
    key: &str,
    trigger: &TriggerDefinition,
    when: When,
) -> Result<Trigger, InvalidWorkflow> {
    for (name, present) in [
        ("timezone", trigger.timezone.is_some()),
        ("catch_up", trigger.catch_up.is_some()),
        (
            "platform",
            trigger.platform.is_some() && trigger.message.is_none(),
        ),
    ] {
        if present {
            return Err(invalid(
                format!("{key}.{name}"),
                Problem::NotForKind("event"),
            ));
        }
    }
    Ok(Trigger {
        when,
        catch_up: Duration::ZERO,
        input: trigger.input.clone(),
    })
}

fn compile_trigger(key: &str, trigger: &TriggerDefinition) -> Result<Trigger, InvalidWorkflow> {
    let catch_up = trigger
        .catch_up
        .as_deref()
        .map(|text| parse_duration(&format!("{key}.catch_up"), text))
        .transpose()?
        .unwrap_or(DEFAULT_CATCH_UP);
    let kinds = [
        trigger.cron.is_some(),
        trigger.every.is_some(),
        trigger.at.is_some(),
        trigger.webhook_secret_env.is_some(),
        trigger.message.is_some(),
    ];
    if kinds.iter().filter(|present| **present).count() != 1 {
        return Err(invalid(key, Problem::TriggerKind));
    }
    if let Some(env) = &trigger.webhook_secret_env {
        if env.is_empty()
            || !env
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(invalid(
                format!("{key}.webhook_secret_env"),
                Problem::EnvName,
            ));
        }
        return event_trigger(
            key,
            trigger,
            When::Webhook {
                secret_env: env.clone(),
            },
        );
    }
    if let Some(pattern) = &trigger.message {
        let pattern = regex::Regex::new(pattern).map_err(|error| {
            invalid(format!("{key}.message"), Problem::Pattern(Box::new(error)))
        })?;
        let when = When::Message {
            pattern,
            platform: trigger.platform.clone(),
        };
        return event_trigger(key, trigger, when);
    }
    if trigger.platform.is_some() {
        return Err(invalid(
            format!("{key}.platform"),
            Problem::NotForKind("timed"),
        ));
    }
    let when = match (&trigger.cron, &trigger.every, &trigger.at) {
        (Some(pattern), None, None) => {
            let zone = trigger.timezone.as_deref().unwrap_or("UTC");
            When::Cron(Box::new(
                CronSchedule::new(pattern, zone)
                    .map_err(|error| invalid(format!("{key}.cron"), error))?,
            ))
        }
        (None, Some(every), None) => When::Every(parse_duration(&format!("{key}.every"), every)?),
        (None, None, Some(at)) => When::At(
            at.parse()
                .map_err(|error| invalid(format!("{key}.at"), Problem::Time(error)))?,
        ),
        _ => return Err(invalid(key, Problem::TriggerKind)),
    };
    if trigger.timezone.is_some() && trigger.cron.is_none() {
        return Err(invalid(
            format!("{key}.timezone"),
            Problem::NotForKind("non-cron"),
        ));
    }
    Ok(Trigger {
        when,
        catch_up,
        input: trigger.input.clone(),
    })
}

/// Walks the steps in order, knowing which ids ran before each one.
#[derive(Default)]
struct Checker {
    all: HashSet<String>,
    /// The ids whose outputs exist when the step being checked runs.
    visible: Vec<String>,
    count: usize,
}

impl Checker {
    fn steps(
        &mut self,
        key: &str,
        steps: &[StepDefinition],
        depth: usize,
    ) -> Result<Vec<Step>, InvalidWorkflow> {
        if depth > MAX_NESTING {
            return Err(invalid(key, Problem::TooDeep));
        }
        let visible_before = self.visible.len();
        let compiled = steps
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let compiled = self.step(&format!("{key}[{index}]"), step, depth)?;
                self.visible.push(step.id.clone());
                Ok(compiled)
            })
            .collect::<Result<Vec<_>, InvalidWorkflow>>()?;
        // A nested list's own steps are not visible after it (only its step's output); the
        // top level's stay visible to the workflow's `output`.
        if depth > 0 {
            self.visible.truncate(visible_before);
        }
        Ok(compiled)
    }

    fn template(&self, key: &str, text: &str) -> Result<Template, InvalidWorkflow> {
        let template = Template::parse(text).map_err(|error| invalid(key, error))?;
        self.check_reads(key, template.steps_read())?;
        Ok(template)
    }

    fn check_reads<'a>(
        &self,
        key: &str,
        mut reads: impl Iterator<Item = &'a str>,
    ) -> Result<(), InvalidWorkflow> {
        match reads.find(|id| !self.visible.iter().any(|seen| seen == id)) {
            Some(unknown) => Err(invalid(key, Problem::UnknownStep(unknown.to_owned()))),
            None => Ok(()),
        }
    }

    fn step(
        &mut self,
        key: &str,
        step: &StepDefinition,
        depth: usize,
    ) -> Result<Step, InvalidWorkflow> {
        if !is_valid_name(&step.id) {
            return Err(invalid(format!("{key}.id"), Problem::Name));
        }
        if !self.all.insert(step.id.clone()) {
            return Err(invalid(
                format!("{key}.id"),
                Problem::DuplicateId(step.id.clone()),
            ));
        }
        self.count += 1;
        if self.count > MAX_DEFINED_STEPS {
            return Err(invalid(key, Problem::TooManySteps));
        }
        let kind = self.kind(key, step, depth)?;
        let policy = policy(key, step, &kind)?;
        Ok(Step {
            id: step.id.clone(),
            kind,
            policy,
        })
    }

    fn kind(
        &mut self,
        key: &str,
        step: &StepDefinition,
        depth: usize,
    ) -> Result<StepKind, InvalidWorkflow> {
        let kinds = kinds_present(step);
        if kinds.len() != 1 {
            return Err(invalid(key, Problem::Kind(kinds.join(", "))));
        }
        let at = |name: &str| format!("{key}.{name}");
        refuse_strays(key, step, kinds[0])?;
        Ok(match kinds[0] {
            "model" => StepKind::Model {
                prompt: self.template(&at("model"), step.model.as_deref().unwrap_or_default())?,
            },
            "tool" => {
                let arguments = step.arguments.clone().unwrap_or(Value::Object(Map::new()));
                let arguments = TemplatedValue::parse(&arguments)
                    .map_err(|error| invalid(at("arguments"), error))?;
                self.check_reads(&at("arguments"), arguments.steps_read().into_iter())?;
                StepKind::Tool {
                    tool: step.tool.clone().unwrap_or_default(),
                    arguments,
                }
            }
            "send" => {
                let to = step
                    .to
                    .as_deref()
                    .ok_or_else(|| invalid(at("to"), Problem::Required))?;
                let to_template = self.template(&at("to"), to)?;
                if !to.contains("{{") && crate::effects::Recipient::parse(to).is_none() {
                    return Err(invalid(at("to"), Problem::Recipient));
                }
                StepKind::Send {
                    text: self.template(&at("send"), step.send.as_deref().unwrap_or_default())?,
                    to: to_template,
                }
            }
            "wait" => StepKind::Wait(parse_duration(
                &at("wait"),
                step.wait.as_deref().unwrap_or_default(),
            )?),
            "until" => StepKind::Until(
                self.template(&at("until"), step.until.as_deref().unwrap_or_default())?,
            ),
            "wait_reply" => StepKind::WaitReply {
                from: self.template(
                    &at("wait_reply"),
                    step.wait_reply.as_deref().unwrap_or_default(),
                )?,
                within: step
                    .timeout
                    .as_deref()
                    .map(|text| parse_duration(&at("timeout"), text))
                    .transpose()?
                    .unwrap_or(DEFAULT_REPLY_WAIT),
            },
            "if" => StepKind::Condition {
                value: self.template(&at("if"), step.condition.as_deref().unwrap_or_default())?,
                test: test(key, step)?,
                then: self.steps(&at("then"), &step.then, depth + 1)?,
                otherwise: self.steps(&at("else"), &step.otherwise, depth + 1)?,
            },
            "branches" => {
                let branches = step
                    .branches
                    .iter()
                    .enumerate()
                    .map(|(index, branch)| {
                        let branch_key = format!("{key}.branches[{index}].steps");
                        if branch.steps.is_empty() {
                            return Err(invalid(branch_key, Problem::Empty));
                        }
                        self.steps(&branch_key, &branch.steps, depth + 1)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let first = step.first.unwrap_or(branches.len());
                if first == 0 || first > branches.len() {
                    return Err(invalid(at("first"), Problem::First));
                }
                StepKind::Parallel { branches, first }
            }
            _ => {
                let name = step.workflow.clone().unwrap_or_default();
                if !is_valid_name(&name) {
                    return Err(invalid(at("workflow"), Problem::Name));
                }
                let input = Value::Object(step.input.clone().unwrap_or_default());
                let input =
                    TemplatedValue::parse(&input).map_err(|error| invalid(at("input"), error))?;
                self.check_reads(&at("input"), input.steps_read().into_iter())?;
                StepKind::Workflow { name, input }
            }
        })
    }
}

fn kinds_present(step: &StepDefinition) -> Vec<&'static str> {
    [
        ("model", step.model.is_some()),
        ("tool", step.tool.is_some()),
        ("send", step.send.is_some()),
        ("wait", step.wait.is_some()),
        ("until", step.until.is_some()),
        ("wait_reply", step.wait_reply.is_some()),
        ("if", step.condition.is_some()),
        ("branches", !step.branches.is_empty()),
        ("workflow", step.workflow.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect()
}

/// Refuses keys that belong to another kind of step.
fn refuse_strays(
    key: &str,
    step: &StepDefinition,
    kind: &'static str,
) -> Result<(), InvalidWorkflow> {
    let strays = [
        ("arguments", step.arguments.is_some(), "tool"),
        ("to", step.to.is_some(), "send"),
        ("equals", step.equals.is_some(), "if"),
        ("not_equals", step.not_equals.is_some(), "if"),
        ("contains", step.contains.is_some(), "if"),
        ("greater_than", step.greater_than.is_some(), "if"),
        ("less_than", step.less_than.is_some(), "if"),
        ("then", !step.then.is_empty(), "if"),
        ("else", !step.otherwise.is_empty(), "if"),
        ("first", step.first.is_some(), "branches"),
        ("input", step.input.is_some(), "workflow"),
    ];
    match strays
        .into_iter()
        .find(|(_, present, owner)| *present && *owner != kind)
    {
        Some((name, _, _)) => Err(invalid(format!("{key}.{name}"), Problem::NotForKind(kind))),
        None => Ok(()),
    }
}

fn test(key: &str, step: &StepDefinition) -> Result<Test, InvalidWorkflow> {
    let mut tests: Vec<Test> = [
        step.equals.clone().map(Test::Equals),
        step.not_equals.clone().map(Test::NotEquals),
        step.contains.clone().map(Test::Contains),
        step.greater_than.map(Test::GreaterThan),
        step.less_than.map(Test::LessThan),
    ]
    .into_iter()
    .flatten()
    .collect();
    if tests.len() > 1 {
        return Err(invalid(format!("{key}.if"), Problem::Tests));
    }
    Ok(tests.pop().unwrap_or(Test::Truthy))
}

fn policy(
    key: &str,
    step: &StepDefinition,
    kind: &StepKind,
) -> Result<StepPolicy, InvalidWorkflow> {
    let default_retries = match kind {
        StepKind::Model { .. } | StepKind::Tool { .. } => 2,
        StepKind::Send { .. } => 5,
        _ => 0,
    };
    // A reply's wait is the step's own `timeout` (its output says no reply came), never
    // an attempt's limit.
    if matches!(kind, StepKind::WaitReply { .. }) {
        return Ok(StepPolicy {
            retries: 0,
            backoff: DEFAULT_BACKOFF,
            timeout: None,
        });
    }
    let waits = matches!(
        kind,
        StepKind::Wait(_)
            | StepKind::Until(_)
            | StepKind::Condition { .. }
            | StepKind::Parallel { .. }
            | StepKind::Workflow { .. }
    );
    let timeout = match &step.timeout {
        Some(text) => Some(parse_duration(&format!("{key}.timeout"), text)?),
        None if waits => None,
        None => Some(DEFAULT_TIMEOUT),
    };
    Ok(StepPolicy {
        retries: step.retries.unwrap_or(default_retries),
        backoff: step
            .backoff
            .as_deref()
            .map(|text| parse_duration(&format!("{key}.backoff"), text))
            .transpose()?
            .unwrap_or(DEFAULT_BACKOFF),
        timeout,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
