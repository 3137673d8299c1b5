//! Errors of the filter language. Every text starts the way Consul's answer to a bad `?filter=` does,
//! so `err.to_string()` is ready to be the body of the HTTP 400.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The expression does not parse. `line` and `column` are 1-based (column in characters),
    /// `offset` is the 0-based byte offset, as in Consul's `1:7 (6): ...` texts.
    #[error(
        "Failed to create boolean expression evaluator: {line}:{column} ({offset}): {message}"
    )]
    Syntax {
        line: usize,
        column: usize,
        offset: usize,
        message: String,
    },
    /// The right-hand side of `matches` / `not matches` is not a valid regular expression.
    #[error(
        "Failed to create boolean expression evaluator: invalid regular expression {pattern:?} for selector {selector:?}: {reason}"
    )]
    InvalidRegex {
        selector: String,
        pattern: String,
        reason: String,
    },
    /// The operator has no meaning for the JSON type found at the selector (e.g. `matches` on a number,
    /// `==` on a list). Consul rejects these from the field's declared type.
    #[error(
        "Failed to create boolean expression evaluator: invalid match operator {operator:?} for selector {selector:?} (its value is {found})"
    )]
    InvalidOperator {
        operator: &'static str,
        selector: String,
        found: &'static str,
    },
    /// The value cannot be read as the type found at the selector (e.g. `Service.Port == abc`).
    #[error(
        "Failed to create boolean expression evaluator: failed to coerce value {value:?} for selector {selector:?}: not a valid {target}"
    )]
    Coerce {
        selector: String,
        value: String,
        target: &'static str,
    },
}

impl FilterError {
    /// A syntax error at byte `offset` of `src`.
    pub(super) fn syntax(src: &str, offset: usize, message: impl Into<String>) -> FilterError {
        let offset = offset.min(src.len());
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        FilterError::Syntax {
            line,
            column,
            offset,
            message: message.into(),
        }
    }
}
