//! `calculator`: evaluates arithmetic exactly as written (`evalexpr`), so the model never
//! has to do sums in its head. Only expressions: no assignments, no variables kept.

use evalexpr::{
    ContextWithMutableFunctions, DefaultNumericTypes, EvalexprError, Function, HashMapContext,
    Value as Number,
};
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
    // A fresh context per call: nothing is kept between calls.
    let context = exact_context()?;
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

type Context = HashMapContext<DefaultNumericTypes>;

/// A context whose `math::abs`, `shl` and `shr` refuse what does not fit in 64 bits
/// instead of wrapping, as evalexpr's built-ins do (`math::abs(i64::MIN)` was negative,
/// `shl(1, 200)` was 256). Functions of the context are found before the built-ins.
fn exact_context() -> Result<Context, SkillError> {
    let mut context = Context::new();
    let functions: [(&str, Function<DefaultNumericTypes>); 3] = [
        ("math::abs", Function::new(checked_abs)),
        (
            "shl",
            Function::new(|argument| shift(argument, ShiftDirection::Left)),
        ),
        (
            "shr",
            Function::new(|argument| shift(argument, ShiftDirection::Right)),
        ),
    ];
    for (name, function) in functions {
        context
            .set_function(name.into(), function)
            .map_err(|error| SkillError::failed(format!("calculator set-up: {error}")))?;
    }
    Ok(context)
}

fn overflow(what: &str) -> EvalexprError<DefaultNumericTypes> {
    EvalexprError::CustomMessage(format!("{what} does not fit in a 64-bit integer"))
}

fn checked_abs(
    argument: &Number<DefaultNumericTypes>,
) -> Result<Number<DefaultNumericTypes>, EvalexprError<DefaultNumericTypes>> {
    match argument {
        Number::Int(int) => int
            .checked_abs()
            .map(Number::Int)
            .ok_or_else(|| overflow(&format!("math::abs({int})"))),
        Number::Float(float) => Ok(Number::Float(float.abs())),
        other => Err(EvalexprError::expected_number(other.clone())),
    }
}

#[derive(Clone, Copy)]
enum ShiftDirection {
    Left,
    Right,
}

fn shift(
    argument: &Number<DefaultNumericTypes>,
    direction: ShiftDirection,
) -> Result<Number<DefaultNumericTypes>, EvalexprError<DefaultNumericTypes>> {
    let pair = argument.as_fixed_len_tuple(2)?;
    let (value, by) = (pair[0].as_int()?, pair[1].as_int()?);
    let name = match direction {
        ShiftDirection::Left => "shl",
        ShiftDirection::Right => "shr",
    };
    let by = u32::try_from(by)
        .ok()
        .filter(|by| *by < i64::BITS)
        .ok_or_else(|| {
            EvalexprError::CustomMessage(format!("{name}: the shift must be 0 to 63, not {by}"))
        })?;
    let shifted = match direction {
        // Bits shifted out of a left shift would be lost: that is an overflow.
        ShiftDirection::Left => Some(value << by).filter(|shifted| shifted >> by == value),
        ShiftDirection::Right => Some(value >> by),
    };
    shifted
        .map(Number::Int)
        .ok_or_else(|| overflow(&format!("{name}({value}, {by})")))
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
    fn integers_that_do_not_fit_are_refused_not_wrapped() {
        for bad in [
            "math::abs(-9223372036854775807 - 1)",
            "shl(1, 200)",
            "shl(1, 64)",
            "shl(1, -1)",
            "shl(3, 62)",
            "shr(1, 64)",
        ] {
            let error = evaluate(bad).unwrap_err();
            assert_eq!(error.code.as_str(), "invalid_arguments", "{bad}");
        }
        assert_eq!(evaluate("math::abs(-5)").unwrap()["result"], 5);
        assert_eq!(evaluate("math::abs(-2.5)").unwrap()["result"], 2.5);
        assert_eq!(evaluate("shl(1, 62)").unwrap()["result"], 1_i64 << 62);
        assert_eq!(evaluate("shl(-1, 63)").unwrap()["result"], i64::MIN);
        assert_eq!(evaluate("shr(-256, 4)").unwrap()["result"], -16);
    }

    #[test]
    fn refuses_what_is_not_arithmetic() {
        for bad in ["x = 3", "1 / 0", "\"text\"", "2 +", &"1+".repeat(1_500)] {
            let error = evaluate(bad).unwrap_err();
            assert_eq!(error.code.as_str(), "invalid_arguments", "{bad}");
        }
    }
}
