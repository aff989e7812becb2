//! The label filter of lists and exports: `lifecycle=lost AND style=aggressive`,
//! `commuter OR long_distance`, `NOT (distance=out_of_town)`.
//!
//! A term is `group=label` (or `group!=label`), or a bare label meaning "has it". Terms join
//! with AND, OR, NOT and parentheses. Labels may be quoted (`lifecycle='lost'`). The expression
//! is parsed by `sqlparser` and compiled to SQL with every name as a bound parameter, so a
//! filter can never inject SQL.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value as SqlValue};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::store::Value;

/// A filter that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label filter {filter:?}: {reason}")]
pub struct FilterError {
    /// The filter as given.
    pub filter: String,
    /// What is wrong.
    pub reason: String,
}

/// Longest filter accepted, in bytes: filters are written by people.
pub const MAX_FILTER_LEN: usize = 2_000;

/// A compiled filter: a condition on a vehicle aliased `v`, and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// SQL with `$n` parameters starting at the number it was compiled with.
    pub sql: String,
    /// The parameters.
    pub params: Vec<Value>,
}

/// Compiles `text`; parameters are numbered from `$first`.
pub fn compile(text: &str, first: usize) -> Result<Filter, FilterError> {
    let error = |reason: String| FilterError {
        filter: text.chars().take(200).collect(),
        reason,
    };
    if text.len() > MAX_FILTER_LEN {
        return Err(error(format!("longer than {MAX_FILTER_LEN} bytes")));
    }
    let expr = Parser::new(&GenericDialect {})
        .with_recursion_limit(50)
        .try_with_sql(text)
        .and_then(|mut parser| {
            let expr = parser.parse_expr()?;
            parser.expect_token(&sqlparser::tokenizer::Token::EOF)?;
            Ok(expr)
        })
        .map_err(|e| error(e.to_string()))?;
    let mut params = Vec::new();
    let sql = emit(&expr, first, &mut params).map_err(error)?;
    Ok(Filter { sql, params })
}

fn name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.to_ascii_lowercase()),
        Expr::Value(value) => match &value.value {
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => Some(s.clone()),
            SqlValue::Number(n, _) => Some(n.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the vehicle's row of labels (`group=label` pairs joined by spaces, see
/// `vehicle_labels`), with a space at either end, holds `piece`: a `LIKE` whose pattern is
/// bound, with its wildcards escaped.
fn has(
    piece: &str,
    params: &mut Vec<Value>,
    bind: impl Fn(String, &mut Vec<Value>) -> String,
) -> String {
    let escaped = piece
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let pattern = bind(format!("%{escaped}%"), params);
    format!(
        "EXISTS (SELECT 1 FROM vehicle_labels lf WHERE lf.vin = v.vin AND ' ' || lf.labels || ' ' LIKE {pattern} ESCAPE '\\')"
    )
}

fn emit(expr: &Expr, first: usize, params: &mut Vec<Value>) -> Result<String, String> {
    let bind = |value: String, params: &mut Vec<Value>| {
        params.push(Value::Text(value));
        format!("${}", first + params.len() - 1)
    };
    Ok(match expr {
        Expr::Nested(inner) => format!("({})", emit(inner, first, params)?),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => format!("(NOT {})", emit(expr, first, params)?),
        Expr::BinaryOp {
            left,
            op: op @ (BinaryOperator::And | BinaryOperator::Or),
            right,
        } => {
            let l = emit(left, first, params)?;
            let r = emit(right, first, params)?;
            format!("({l} {op} {r})")
        }
        Expr::BinaryOp {
            left,
            op: op @ (BinaryOperator::Eq | BinaryOperator::NotEq),
            right,
        } => {
            let group = match left.as_ref() {
                Expr::Identifier(ident) => ident.value.to_ascii_lowercase(),
                other => return Err(format!("{other} is not a label group")),
            };
            let label = name(right).ok_or_else(|| format!("{right} is not a label"))?;
            let exists = has(&format!(" {group}={label} "), params, bind);
            if *op == BinaryOperator::Eq {
                exists
            } else {
                format!("(NOT {exists})")
            }
        }
        Expr::Identifier(ident) => has(
            &format!("={} ", ident.value.to_ascii_lowercase()),
            params,
            bind,
        ),
        other => {
            return Err(format!(
                "{other} is not a label term; write group=label or a label, joined with AND, OR, NOT"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn terms_compile_to_bound_parameters() {
        let filter = compile("lifecycle=lost AND style='aggressive'", 3).unwrap();
        assert_eq!(
            filter.sql,
            "(EXISTS (SELECT 1 FROM vehicle_labels lf WHERE lf.vin = v.vin AND ' ' || lf.labels || ' ' LIKE $3 ESCAPE '\\') AND \
             EXISTS (SELECT 1 FROM vehicle_labels lf WHERE lf.vin = v.vin AND ' ' || lf.labels || ' ' LIKE $4 ESCAPE '\\'))"
        );
        assert_eq!(
            filter.params,
            ["% lifecycle=lost %", "% style=aggressive %"].map(|s| Value::Text(s.into()))
        );
        let filter = compile("commuter OR NOT (distance != out_of_town)", 1).unwrap();
        assert!(
            filter.sql.starts_with(
                "(EXISTS (SELECT 1 FROM vehicle_labels lf WHERE lf.vin = v.vin AND ' ' || lf.labels || ' ' LIKE $1 ESCAPE '\\') OR (NOT"
            ),
            "{}",
            filter.sql
        );
    }

    #[test]
    fn anything_else_is_a_clear_error() {
        for bad in [
            "",
            "lifecycle=",
            "km_30d > 5",
            "lost; DROP TABLE labels",
            "(SELECT 1)",
            "a = b = c",
            "lifecycle = lost AND",
            "x IN (1)",
        ] {
            let error = compile(bad, 1).unwrap_err();
            assert!(!error.reason.is_empty(), "{bad}");
        }
        assert!(compile(&"a AND ".repeat(500), 1).is_err());
        assert!(compile(&format!("{}x{}", "(".repeat(200), ")".repeat(200)), 1).is_err());
    }

    proptest! {
        /// Arbitrary text never panics, and whatever compiles binds every name.
        #[test]
        fn arbitrary_filters_never_panic(text in ".{0,80}") {
            if let Ok(filter) = compile(&text, 1) {
                // The only literals are the template's own: the spaces around the row of labels
                // and the escape character.
                let template = filter
                    .sql
                    .replace("' ' || lf.labels || ' '", "")
                    .replace("ESCAPE '\\'", "");
                prop_assert!(!template.contains('\''), "a literal reached the SQL: {}", filter.sql);
            }
        }

        /// Filters built from the grammar always compile, with one parameter per term.
        #[test]
        fn grammar_filters_compile(terms in prop::collection::vec(("g_[a-z]{1,8}", "l_[a-z]{1,8}"), 1..6), ors in prop::collection::vec(any::<bool>(), 5)) {
            let mut text = String::new();
            for (i, (group, label)) in terms.iter().enumerate() {
                if i > 0 {
                    text.push_str(if ors[i - 1] { " OR " } else { " AND " });
                }
                text.push_str(&format!("{group}={label}"));
            }
            let filter = compile(&text, 1);
            prop_assert!(filter.is_ok(), "{text}: {filter:?}");
            prop_assert_eq!(filter.unwrap().params.len(), terms.len());
        }
    }
}
