//! Consul's `?filter=` expression language (HashiCorp go-bexpr), evaluated on the JSON of each result
//! item, e.g. `"production" in Service.Tags and Checks.Status == passing`.
//!
//! Syntax: match expressions joined by `and`, `or`, `not` and parentheses (`not` binds tighter than
//! `and`, which binds tighter than `or`). A match is one of
//! `Sel == V`, `Sel != V`, `Sel contains V`, `Sel not contains V`, `V in Sel`, `V not in Sel`,
//! `Sel is empty`, `Sel is not empty`, `Sel matches V`, `Sel not matches V`. A selector is a dotted
//! path of names (`Service.Meta.version`); a map key that is no plain name is written `Meta["some-key"]`
//! and a list element `Checks.0`. A value is a bare word (`passing`, or a dotted path taken as its text),
//! a number, a "double-quoted" string with Go escapes, or a `backtick` raw string.
//!
//! Semantics, following go-bexpr as Consul uses it, with the type of each field read from the JSON:
//! - strings: `==`/`!=` compare exactly, `contains`/`in` test for a substring, `matches` runs an
//!   unanchored RE2-style regular expression (compiled once, at parse time);
//! - numbers and booleans: `==`/`!=` read the value as that type (Go `strconv` rules: `8080`, `0x1f`,
//!   `1.5`; `true`, `T`, `1`, `false`, ...); a value that cannot be read so is a [`FilterError::Coerce`];
//! - lists: `contains`/`in` test membership (elements compared as above), `is empty` tests length;
//! - maps: `contains`/`in` test for a key, `is empty` tests length;
//! - an operator with no meaning for the JSON type found (`==` on a list, `matches` on a number) is a
//!   [`FilterError::InvalidOperator`], as Consul rejects it for the field's type;
//! - selecting a field through a list (`Checks.Status` on a list of checks) applies the whole match to
//!   every element and holds if any element satisfies it; an empty list satisfies nothing, even a
//!   negated operator (so `Checks.Status != passing` means "some check is not passing").
//!
//! Deviations, because we filter JSON rather than typed Go structs:
//! - Consul rejects a selector that does not exist in the endpoint's type; here a missing field, a JSON
//!   null, or a path through a scalar all count as absent: `==`, `contains`, `in`, `matches` and
//!   `is not empty` are false, their negations and `is empty` are true (go-bexpr's rule for a missing
//!   map key);
//! - type errors (coercion, invalid operator) surface when an item reaches the match, not when the
//!   expression is parsed, so a filter over an empty result cannot fail;
//! - `is empty` also applies to strings (Consul's schema allows it only on lists and maps), escaped
//!   quotes (`\"`) are allowed in double-quoted strings, whitespace around keywords next to quotes or
//!   parentheses is optional, and a number value compared with an integer field may be a float;
//! - the empty expression matches everything (Consul applies no filter when `filter` is empty).
//!
//! Expressions come from URLs, so nesting is capped (see [`MAX_DEPTH`]) and regular expressions have
//! a compiled-size limit.

mod error;
mod eval;
mod lexer;
mod parser;

#[cfg(test)]
mod tests;

use std::str::FromStr;

pub use error::FilterError;
pub use parser::MAX_DEPTH;

/// A parsed filter expression, ready to be evaluated against many items.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: parser::Expr,
}

impl Filter {
    /// Parses `expr`; regular expressions are compiled here, so a bad one is reported before any item
    /// is evaluated.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        Ok(Filter {
            expr: parser::parse(expr)?,
        })
    }

    /// Evaluates against one result item given as the JSON value Consul would return for it (field
    /// names exactly as in the API output, e.g. `{"Service":{"Tags":[..]},"Checks":[{"Status":..}]}`).
    pub fn matches(&self, item: &simd_json::OwnedValue) -> Result<bool, FilterError> {
        eval::eval(&self.expr, item)
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}
