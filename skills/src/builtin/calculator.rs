//! `calculator`: evaluates arithmetic exactly as written (`evalexpr`), so the model never
//! has to do sums in its head. Only expressions: no assignments, no variables kept.

use evalexpr::{DefaultNumericTypes, HashMapContext, Value as Number};
use serde_json::{Value, json};
use troupe_actors::skill::{Skill, SkillCall, SkillError, SkillManifest};

use super::{text_argument, tool};

/// Longest expression accepted.
const MAX_EXPRESSION_BYTES: usize = 2_000;

pub(super) struct Calculator;

fn evaluate(expression: &str) -> Result<Value, SkillError> {
    if expression.len() > MAX_EXPRESSION_BYTES {
        return Err(SkillError::invalid(format!(
            "the expression is longer than {MAX_EXPRESSION_BYTES} bytes"
        )));
    }
    if expression.contains('=')
        && !expression.contains("==")
        && !expression.contains("<=")
        && !expression.contains(">=")
        && !expression.contains("!=")
    {
        return Err(SkillError::invalid(
            "assignments are not allowed; give an expression",
        ));
    }
    // A fresh, empty context per call: nothing is kept between calls.
    let context = HashMapContext::<DefaultNumericTypes>::new();
    let value = evalexpr::eval_with_context(expression, &context)
        .map_err(|error| SkillError::invalid(format!("cannot evaluate `{expression}`: {error}")))?;
    match value {
        Number::Int(int) => Ok(json!({"expression": expression, "result": int})),
        Number::Float(float) if float.is_finite() => {
            Ok(json!({"expression": expression, "result": float}))
        }
        Number::Float(_) => Err(SkillError::invalid("the result is not a finite number")),
        Number::Boolean(boolean) => Ok(json!({"expression": expression, "result": boolean})),
        other => Err(SkillError::invalid(format!(
            "the result `{other}` is not a number"
        ))),
    }
}

#[async_trait::async_trait]
impl Skill for Calculator {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        Ok(SkillManifest {
            name: "calculator".into(),
            description: "Exact arithmetic.".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            tools: vec![tool(
                "evaluate",
                "Evaluates an arithmetic expression: + - * / % ^ (power), parentheses, comparisons, \
                 and functions such as math::sqrt(x), math::ln(x), math::sin(x), round(x), floor(x), \
                 min(a, b), max(a, b). Integers stay exact; write 7.0 / 2 for a fractional result.",
                json!({"type": "object", "properties": {"expression": {"type": "string"}},
                    "required": ["expression"], "additionalProperties": false}),
            )],
            permissions: Default::default(),
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        evaluate(text_argument(&call.arguments, "expression")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_arithmetic_exactly() {
        assert_eq!(evaluate("(17 + 25) * 3").unwrap()["result"], 126);
        assert_eq!(evaluate("2 ^ 10").unwrap()["result"], 1024.0);
        assert_eq!(evaluate("math::sqrt(81)").unwrap()["result"], 9.0);
        assert_eq!(evaluate("7.0 / 2").unwrap()["result"], 3.5);
        assert_eq!(
            evaluate("12345678901 * 3").unwrap()["result"],
            37_037_036_703_i64
        );
        assert_eq!(evaluate("3 >= 2").unwrap()["result"], true);
    }

    #[test]
    fn refuses_what_is_not_arithmetic() {
        for bad in ["x = 3", "1 / 0", "\"text\"", "2 +", &"1+".repeat(1_500)] {
            let error = evaluate(bad).unwrap_err();
            assert_eq!(error.code.as_str(), "invalid_arguments", "{bad}");
        }
    }
}
