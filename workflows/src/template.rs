//! The template syntax that feeds step outputs into later steps. Deliberately small: a
//! template is text with `{{ path }}` references, nothing more (no expressions, loops or
//! filters).
//!
//! - `{{ input.city }}`: the run's input;
//! - `{{ steps.fetch.output }}`, `{{ steps.fetch.output.items.0.title }}`: an earlier step's
//!   output, then object keys and array indexes;
//! - `{{ run.id }}`, `{{ run.started_at }}` (RFC 3339), `{{ workflow.name }}`.
//!
//! A template that is exactly one reference gives the value itself (an object stays an
//! object); otherwise references are written into the text (strings as they are, other
//! values as JSON). `\{{` writes a literal `{{`. A template is parsed once, when its
//! workflow is compiled; a reference to something that is not there fails the step with
//! an error naming it.

use std::fmt;

use serde_json::{Map, Value};

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Reference(Reference),
}

/// A `{{ path }}` reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    root: Root,
    keys: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Root {
    Input,
    Step(String),
    Run,
    Workflow,
}

/// Why a template could not be parsed or rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` at byte {0} is never closed with `}}}}`")]
    Unclosed(usize),
    #[error(
        "`{0}` is not a reference: use input.<key>, steps.<id>.output, run.id, run.started_at or workflow.name"
    )]
    BadReference(String),
    #[error("`{0}` is not there")]
    Missing(String),
}

/// What references resolve against.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub input: Map<String, Value>,
    pub steps: Map<String, Value>,
    pub run: Map<String, Value>,
    pub workflow: Map<String, Value>,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if rest[..open].ends_with('\\') {
                literal.push_str(&rest[..open - 1]);
                literal.push_str("{{");
                rest = &rest[open + 2..];
                offset += open + 2;
                continue;
            }
            literal.push_str(&rest[..open]);
            let inner_start = open + 2;
            let close = rest[inner_start..]
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + open))?;
            let path = rest[inner_start..inner_start + close].trim();
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Reference(Reference::parse(path)?));
            rest = &rest[inner_start + close + 2..];
            offset += inner_start + close + 2;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// The step ids this template reads.
    pub fn steps_read(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Reference(Reference {
                root: Root::Step(id),
                ..
            }) => Some(id.as_str()),
            _ => None,
        })
    }

    /// The value: the referenced value itself for a lone reference, else text.
    pub fn render(&self, scope: &Scope) -> Result<Value, TemplateError> {
        if let [Part::Reference(reference)] = self.parts.as_slice() {
            return reference.resolve(scope).cloned();
        }
        Ok(Value::String(self.render_text(scope)?))
    }

    /// The value as text.
    pub fn render_text(&self, scope: &Scope) -> Result<String, TemplateError> {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(literal) => text.push_str(literal),
                Part::Reference(reference) => match reference.resolve(scope)? {
                    Value::String(string) => text.push_str(string),
                    other => text.push_str(&other.to_string()),
                },
            }
        }
        Ok(text)
    }
}

impl Reference {
    fn parse(path: &str) -> Result<Self, TemplateError> {
        let bad = || TemplateError::BadReference(path.to_owned());
        let mut segments = path.split('.').map(str::trim);
        if path.split('.').any(|segment| segment.trim().is_empty()) {
            return Err(bad());
        }
        let root = match segments.next().ok_or_else(bad)? {
            "input" => Root::Input,
            "run" => Root::Run,
            "workflow" => Root::Workflow,
            "steps" => {
                let id = segments.next().ok_or_else(bad)?;
                if segments.next() != Some("output") {
                    return Err(bad());
                }
                Root::Step(id.to_owned())
            }
            _ => return Err(bad()),
        };
        let keys: Vec<String> = segments.map(str::to_owned).collect();
        if matches!(root, Root::Run | Root::Workflow) && keys.len() != 1 {
            return Err(bad());
        }
        Ok(Self { root, keys })
    }

    fn resolve<'a>(&self, scope: &'a Scope) -> Result<&'a Value, TemplateError> {
        let missing = || TemplateError::Missing(self.to_string());
        let (table, first) = match &self.root {
            Root::Input => (&scope.input, self.keys.first()),
            Root::Run => (&scope.run, self.keys.first()),
            Root::Workflow => (&scope.workflow, self.keys.first()),
            Root::Step(id) => {
                let output = scope.steps.get(id).ok_or_else(missing)?;
                return descend(output, &self.keys).ok_or_else(missing);
            }
        };
        let Some(first) = first else {
            return Err(missing());
        };
        let value = table.get(first).ok_or_else(missing)?;
        descend(value, &self.keys[1..]).ok_or_else(missing)
    }
}

fn descend<'a>(mut value: &'a Value, keys: &[String]) -> Option<&'a Value> {
    for key in keys {
        value = match value {
            Value::Object(map) => map.get(key)?,
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

impl fmt::Display for Reference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.root {
            Root::Input => formatter.write_str("input")?,
            Root::Run => formatter.write_str("run")?,
            Root::Workflow => formatter.write_str("workflow")?,
            Root::Step(id) => write!(formatter, "steps.{id}.output")?,
        }
        for key in &self.keys {
            write!(formatter, ".{key}")?;
        }
        Ok(())
    }
}

/// Renders every string inside `value` as a template (arguments, sub-workflow inputs).
pub fn render_value(value: &TemplatedValue, scope: &Scope) -> Result<Value, TemplateError> {
    Ok(match value {
        TemplatedValue::Template(template) => template.render(scope)?,
        TemplatedValue::Plain(plain) => plain.clone(),
        TemplatedValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render_value(item, scope))
                .collect::<Result<_, _>>()?,
        ),
        TemplatedValue::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(key, item)| Ok((key.clone(), render_value(item, scope)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
    })
}

/// A JSON value whose strings were parsed as templates.
#[derive(Clone, Debug, PartialEq)]
pub enum TemplatedValue {
    Template(Template),
    Plain(Value),
    Array(Vec<TemplatedValue>),
    Object(Vec<(String, TemplatedValue)>),
}

impl TemplatedValue {
    /// Parses every string in `value`.
    pub fn parse(value: &Value) -> Result<Self, TemplateError> {
        Ok(match value {
            Value::String(text) => Self::Template(Template::parse(text)?),
            Value::Array(items) => {
                Self::Array(items.iter().map(Self::parse).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => Self::Object(
                map.iter()
                    .map(|(key, item)| Ok((key.clone(), Self::parse(item)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            plain => Self::Plain(plain.clone()),
        })
    }

    /// The step ids read anywhere inside.
    pub fn steps_read(&self) -> Vec<&str> {
        match self {
            Self::Template(template) => template.steps_read().collect(),
            Self::Plain(_) => Vec::new(),
            Self::Array(items) => items.iter().flat_map(Self::steps_read).collect(),
            Self::Object(entries) => entries
                .iter()
                .flat_map(|(_, item)| item.steps_read())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Scope {
        let mut scope = Scope::default();
        scope.input.insert("city".into(), json!("Lyon"));
        scope.steps.insert(
            "fetch".into(),
            json!({"items": [{"title": "rain"}], "count": 3}),
        );
        scope.run.insert("id".into(), json!("r-1"));
        scope
    }

    #[test]
    fn a_lone_reference_gives_the_value_itself() {
        let template = Template::parse("{{ steps.fetch.output }}").unwrap();
        assert_eq!(
            template.render(&scope()).unwrap(),
            json!({"items": [{"title": "rain"}], "count": 3})
        );
    }

    #[test]
    fn references_in_text_are_written_in_with_keys_and_indexes() {
        let template =
            Template::parse("{{input.city}}: {{ steps.fetch.output.items.0.title }} x{{ steps.fetch.output.count }} ({{ run.id }})")
                .unwrap();
        assert_eq!(
            template.render(&scope()).unwrap(),
            json!("Lyon: rain x3 (r-1)")
        );
    }

    #[test]
    fn an_escaped_brace_pair_stays_literal() {
        let template = Template::parse(r"\{{ not a reference }}").unwrap();
        assert_eq!(
            template.render(&scope()).unwrap(),
            json!("{{ not a reference }}")
        );
    }

    #[test]
    fn a_missing_value_is_named() {
        let template = Template::parse("{{ steps.fetch.output.nope }}").unwrap();
        assert_eq!(
            template.render(&scope()),
            Err(TemplateError::Missing("steps.fetch.output.nope".into()))
        );
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert_eq!(
            Template::parse("a {{ input.x"),
            Err(TemplateError::Unclosed(2))
        );
        for bad in [
            "{{ }}",
            "{{ steps.a }}",
            "{{ steps.a.result }}",
            "{{ env.HOME }}",
            "{{ run }}",
            "{{ input..x }}",
        ] {
            assert!(
                matches!(Template::parse(bad), Err(TemplateError::BadReference(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn nested_values_render_every_string() {
        let value = TemplatedValue::parse(
            &json!({"q": "{{ input.city }}", "n": [1, "{{ steps.fetch.output.count }}"]}),
        )
        .unwrap();
        assert_eq!(value.steps_read(), vec!["fetch"]);
        assert_eq!(
            render_value(&value, &scope()).unwrap(),
            json!({"q": "Lyon", "n": [1, 3]})
        );
    }
}
