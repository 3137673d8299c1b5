//! Typed reads of config values (JSON and HCL both parse into `hcl::Value`).
//!
//! Errors are plain strings here; the caller adds the file and the key.

use std::net::IpAddr;
use std::time::Duration;

use hcl::Value;

/// Parses a Go duration string ("10s", "1m30s", "500ms", "1.5h", "0").
/// Negative durations are rejected: no Consul setting means anything by them.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    // go-parse-duration slices by byte; feed it ASCII only ("µs" is Go's alias of "us").
    let ascii = s.replace(['µ', 'μ'], "u");
    if !ascii.is_ascii() || ascii.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    match go_parse_duration::parse_duration(&ascii) {
        Ok(n) if n < 0 => Err(format!("invalid duration {s:?}: must not be negative")),
        Ok(n) => Ok(Duration::from_nanos(n.unsigned_abs())),
        Err(_) => Err(format!(
            "invalid duration {s:?} (expected a Go duration such as \"10s\", \"1m30s\" or \"500ms\")"
        )),
    }
}

/// Formats a duration the way Go's `time.Duration.String` does ("1m30s", "500ms", "0s").
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_frac(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_frac(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let h = total_secs / 3600;
    let m = (total_secs % 3600) / 60;
    let s_nanos = nanos - u128::from(h * 3600 + m * 60) * 1_000_000_000;
    let secs = format!("{}s", trim_frac(s_nanos, 1_000_000_000));
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

fn trim_frac(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Short name of a value's type, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn mismatch(want: &str, v: &Value) -> String {
    format!("expected {want}, got {}", type_name(v))
}

pub fn as_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(mismatch("bool", v)),
    }
}

pub fn as_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(mismatch("string", v)),
    }
}

pub fn as_i64(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            // JSON decoders hand Go integral floats ("3.0"); accept those, nothing fractional.
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
                _ => Err(format!("expected int, got {n}")),
            }
        }
        _ => Err(mismatch("int", v)),
    }
}

pub fn as_int_in(v: &Value, min: i64, max: i64) -> Result<i64, String> {
    let i = as_i64(v)?;
    if i < min || i > max {
        return Err(format!("{i} is out of range ({min}..={max})"));
    }
    Ok(i)
}

pub fn as_u32(v: &Value) -> Result<u32, String> {
    as_int_in(v, 0, i64::from(u32::MAX)).map(|i| i as u32)
}

pub fn as_u64(v: &Value) -> Result<u64, String> {
    as_int_in(v, 0, i64::MAX).map(|i| i as u64)
}

pub fn as_duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => parse_go_duration(s),
        _ => Err(mismatch("duration string", v)),
    }
}

pub fn as_string_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| as_string(x).map_err(|e| format!("[{i}]: {e}")))
            .collect(),
        _ => Err(mismatch("list of strings", v)),
    }
}

/// A string-to-string map (`node_meta`, `http_config.response_headers`); keys keep their case.
pub fn as_string_map(v: &Value) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for obj in objects(v)? {
        for (k, x) in obj {
            if matches!(x, Value::Null) {
                continue;
            }
            out.push((k.clone(), as_string(x).map_err(|e| format!("{k}: {e}"))?));
        }
    }
    Ok(out)
}

/// HCL turns repeated blocks into a list of objects; a single block is an object.
pub fn objects(v: &Value) -> Result<Vec<&hcl::Map<String, Value>>, String> {
    match v {
        Value::Object(m) => Ok(vec![m]),
        Value::Array(items) => items
            .iter()
            .map(|x| match x {
                Value::Object(m) => Ok(m),
                other => Err(mismatch("object", other)),
            })
            .collect(),
        _ => Err(mismatch("object", v)),
    }
}

/// A literal IP address. go-sockaddr templates are not supported (yet).
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let t = s.trim();
    if t.contains("{{") {
        return Err(format!(
            "{s:?}: go-sockaddr templates are not supported, give an IP address"
        ));
    }
    t.parse::<IpAddr>()
        .map_err(|_| format!("{s:?} is not a valid IP address"))
}

/// A space-separated list of IP addresses (`client_addr`, `addresses.*`).
pub fn parse_ip_list(s: &str) -> Result<Vec<IpAddr>, String> {
    if s.trim().starts_with("unix://") {
        return Err(format!("{s:?}: unix sockets are not supported"));
    }
    let ips = s
        .split_whitespace()
        .map(parse_ip)
        .collect::<Result<Vec<_>, _>>()?;
    if ips.is_empty() {
        return Err("no address given".to_owned());
    }
    Ok(ips)
}

/// Converts a parsed value into the JSON value type the HTTP layer works with.
pub fn to_raw(v: &Value) -> Result<simd_json::OwnedValue, String> {
    simd_json::serde::to_owned_value(v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("10µs"), Ok(Duration::from_micros(10)));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("soon").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("-5s").is_err());
        assert!(parse_go_duration("5é").is_err());
    }

    #[test]
    fn go_durations_format() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(
            format_go_duration(Duration::from_secs(72 * 3600)),
            "72h0m0s"
        );
        assert_eq!(format_go_duration(Duration::from_nanos(20)), "20ns");
    }

    #[test]
    fn integral_floats_are_ints() {
        let v = super::super::hcl1::parse("a = 3.0").unwrap();
        let Value::Object(m) = v else { panic!() };
        assert_eq!(as_i64(&m["a"]), Ok(3));
        let v = super::super::hcl1::parse("a = 3.5").unwrap();
        let Value::Object(m) = v else { panic!() };
        assert!(as_i64(&m["a"]).is_err());
    }

    #[test]
    fn ip_lists() {
        assert_eq!(parse_ip_list("127.0.0.1 ::1").unwrap().len(), 2);
        assert!(parse_ip_list("{{ GetPrivateIP }}").is_err());
        assert!(parse_ip_list("unix:///tmp/x").is_err());
        assert!(parse_ip_list(" ").is_err());
    }
}
