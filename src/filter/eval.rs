//! Evaluation of an expression tree against one JSON item.

use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::error::FilterError;
use super::parser::{Expr, Match, Op, Operand};

pub(super) fn eval(expr: &Expr, item: &OwnedValue) -> Result<bool, FilterError> {
    match expr {
        Expr::True => Ok(true),
        Expr::Not(inner) => Ok(!eval(inner, item)?),
        // Short-circuits like go-bexpr, so an error in a term that is not reached is not reported.
        Expr::And(terms) => {
            for t in terms {
                if !eval(t, item)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Or(terms) => {
            for t in terms {
                if eval(t, item)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::Match(m) => select(m, item, 0),
    }
}

/// Walks the selector from part `depth` on, starting at `node`.
fn select(m: &Match, node: &OwnedValue, depth: usize) -> Result<bool, FilterError> {
    let Some(part) = m.selector.0.get(depth) else {
        return apply(m, node);
    };
    match node {
        OwnedValue::Object(map) => match map.get(part.as_str()) {
            Some(child) => select(m, child, depth + 1),
            None => Ok(absent(m.op)),
        },
        OwnedValue::Array(items) => {
            if let Ok(i) = part.parse::<usize>() {
                return match items.get(i) {
                    Some(child) => select(m, child, depth + 1),
                    None => Ok(absent(m.op)),
                };
            }
            // A field selected through a list applies the whole match to each element and holds if
            // any element satisfies it (go-bexpr's rule), so `Checks.Status != passing` means "some
            // check is not passing", and an empty list satisfies nothing.
            for child in items.iter() {
                if select(m, child, depth)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        // A scalar has no fields: selecting into it is the same as selecting a missing field.
        _ => Ok(absent(m.op)),
    }
}

/// The answer for a selector that finds nothing (a missing key or JSON null): it equals nothing,
/// contains nothing, matches nothing and is empty, so only the negated operators and `is empty` hold.
fn absent(op: Op) -> bool {
    matches!(
        op,
        Op::NotEqual | Op::NotIn | Op::NotContains | Op::IsEmpty | Op::NotMatches
    )
}

/// The JSON shapes the operators distinguish.
enum Kind<'a> {
    Null,
    Str(&'a str),
    Int(i128),
    Float(f64),
    Bool(bool),
    List(&'a [OwnedValue]),
    Map(&'a simd_json::owned::Object),
}

impl Kind<'_> {
    fn of(v: &OwnedValue) -> Kind<'_> {
        match v {
            OwnedValue::String(s) => Kind::Str(s),
            OwnedValue::Array(a) => Kind::List(a),
            OwnedValue::Object(o) => Kind::Map(o),
            OwnedValue::Static(_) => {
                if let Some(b) = v.as_bool() {
                    Kind::Bool(b)
                } else if let Some(i) = v.as_i64() {
                    Kind::Int(i128::from(i))
                } else if let Some(u) = v.as_u64() {
                    Kind::Int(i128::from(u))
                } else if let Some(f) = v.cast_f64() {
                    Kind::Float(f)
                } else {
                    Kind::Null
                }
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Str(_) => "a string",
            Kind::Int(_) | Kind::Float(_) => "a number",
            Kind::Bool(_) => "a boolean",
            Kind::List(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }
}

fn apply(m: &Match, node: &OwnedValue) -> Result<bool, FilterError> {
    if let Some(positive) = m.op.negated() {
        return apply_positive(m, positive, node).map(|b| !b);
    }
    apply_positive(m, m.op, node)
}

fn apply_positive(m: &Match, op: Op, node: &OwnedValue) -> Result<bool, FilterError> {
    let kind = Kind::of(node);
    let invalid = |kind: &Kind<'_>| FilterError::InvalidOperator {
        operator: m.op.as_str(),
        selector: m.selector.to_string(),
        found: kind.name(),
    };
    let text = match &m.operand {
        Operand::Text(t) => t.as_str(),
        Operand::Regex(_) | Operand::None => "",
    };
    match (op, &kind) {
        (_, Kind::Null) => Ok(absent(op)),
        (Op::Equal, Kind::Str(s)) => Ok(*s == text),
        (Op::Equal, Kind::Int(_) | Kind::Float(_) | Kind::Bool(_)) => scalar_eq(&kind, text)
            .ok_or_else(|| FilterError::Coerce {
                selector: m.selector.to_string(),
                value: text.to_string(),
                target: if matches!(kind, Kind::Bool(_)) {
                    "boolean"
                } else {
                    "number"
                },
            }),
        (Op::In | Op::Contains, Kind::Str(s)) => Ok(s.contains(text)),
        (Op::In | Op::Contains, Kind::List(items)) => Ok(items.iter().any(|item| {
            let k = Kind::of(item);
            match k {
                Kind::Str(s) => s == text,
                // Elements the value cannot be read as are simply not equal to it.
                Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => {
                    scalar_eq(&k, text).unwrap_or(false)
                }
                _ => false,
            }
        })),
        (Op::In | Op::Contains, Kind::Map(map)) => Ok(map.contains_key(text)),
        (Op::IsEmpty, Kind::List(items)) => Ok(items.is_empty()),
        (Op::IsEmpty, Kind::Map(map)) => Ok(map.is_empty()),
        (Op::IsEmpty, Kind::Str(s)) => Ok(s.is_empty()),
        (Op::Matches, Kind::Str(s)) => match &m.operand {
            Operand::Regex(re) => Ok(re.is_match(s)),
            _ => Ok(false),
        },
        (_, k) => Err(invalid(k)),
    }
}

/// Equality of a JSON number or boolean with the value's text, read as that type the way Go's
/// `strconv` (behind go-bexpr) reads it. `None` when the text is not of that type.
fn scalar_eq(kind: &Kind<'_>, text: &str) -> Option<bool> {
    match *kind {
        Kind::Bool(b) => parse_go_bool(text).map(|v| v == b),
        Kind::Int(n) => match parse_go_int(text) {
            Some(v) => Some(v == n),
            // Precision loss is acceptable: the comparison is only exact for integral floats anyway.
            #[allow(clippy::cast_precision_loss)]
            None => text.parse::<f64>().ok().map(|f| f == n as f64),
        },
        #[allow(clippy::cast_precision_loss)]
        Kind::Float(x) => match text.parse::<f64>() {
            Ok(f) => Some(f == x),
            Err(_) => parse_go_int(text).map(|i| i as f64 == x),
        },
        _ => None,
    }
}

fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// An integer with Go's base prefixes (`0x`, `0o`, `0b`, and a leading `0` for octal).
fn parse_go_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (digits, radix) = match lower.as_deref() {
        Some("0x") => (&body[2..], 16),
        Some("0o") => (&body[2..], 8),
        Some("0b") => (&body[2..], 2),
        _ if body.len() > 1 && body.starts_with('0') => (&body[1..], 8),
        _ => (body, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i128::from_str_radix(digits, radix).ok()?;
    Some(if neg { -v } else { v })
}
