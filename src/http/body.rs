//! Request bodies: JSON decoded with simd-json, looked up case-insensitively as Go's
//! encoding/json (and so Consul) does, so `{"name": ..}` and `{"Name": ..}` both work.
use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::error::{ApiError, ApiResult};

/// Parses a JSON body; an empty body is `None`.
pub fn parse(body: &[u8]) -> ApiResult<Option<OwnedValue>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut buf = body.to_vec();
    simd_json::to_owned_value(&mut buf)
        .map(Some)
        .map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))
}

/// A JSON object viewed with case-insensitive keys.
#[derive(Clone, Copy)]
pub struct Obj<'a>(&'a simd_json::owned::Object);

impl<'a> Obj<'a> {
    pub fn of(v: &'a OwnedValue, what: &str) -> ApiResult<Obj<'a>> {
        v.as_object().map(Obj).ok_or_else(|| {
            ApiError::bad(format!(
                "Request decode failed: {what} must be a JSON object"
            ))
        })
    }

    pub fn get(&self, name: &str) -> Option<&'a OwnedValue> {
        if let Some(v) = self.0.get(name) {
            return Some(v);
        }
        // Consul translates snake_case keys (config-file style) to its CamelCase fields too.
        self.0
            .iter()
            .find(|(k, _)| same_key(k, name))
            .map(|(_, v)| v)
    }

    /// A present, non-null field.
    fn field(&self, name: &str) -> Option<&'a OwnedValue> {
        self.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> ApiResult<Option<&'a str>> {
        match self.field(name) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "string")),
        }
    }

    pub fn u64(&self, name: &str) -> ApiResult<Option<u64>> {
        match self.field(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "unsigned integer")),
        }
    }

    pub fn bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.field(name) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "boolean")),
        }
    }

    /// A string-to-string map (Meta, NodeMeta, TaggedAddresses of nodes).
    pub fn string_map(
        &self,
        name: &str,
    ) -> ApiResult<Option<std::collections::BTreeMap<String, String>>> {
        let Some(o) = self.obj(name)? else {
            return Ok(None);
        };
        o.0.iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.to_string(), s.to_string()))
                    .ok_or_else(|| wrong_type(name, "map of strings"))
            })
            .collect::<ApiResult<_>>()
            .map(Some)
    }

    /// The field as compact JSON text (kept opaque, e.g. Proxy, Connect).
    pub fn raw(&self, name: &str) -> Option<String> {
        // `encode`, not `to_string`: simd-json's Display prints objects in Debug form.
        self.field(name).map(|v| v.encode())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a OwnedValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn f64(&self, name: &str) -> Option<f64> {
        self.field(name).and_then(|v| v.cast_f64())
    }

    pub fn strings(&self, name: &str) -> ApiResult<Option<Vec<String>>> {
        match self.field(name) {
            None => Ok(None),
            Some(v) => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| wrong_type(name, "array of strings"))?;
                arr.iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| wrong_type(name, "array of strings"))
                    })
                    .collect::<ApiResult<Vec<String>>>()
                    .map(Some)
            }
        }
    }

    pub fn obj(&self, name: &str) -> ApiResult<Option<Obj<'a>>> {
        match self.field(name) {
            None => Ok(None),
            Some(v) => Obj::of(v, name).map(Some),
        }
    }
}

fn same_key(k: &str, name: &str) -> bool {
    let mut a = k.bytes().filter(|b| *b != b'_');
    let mut b = name.bytes().filter(|b| *b != b'_');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(&y) => {}
            _ => return false,
        }
    }
}

fn wrong_type(name: &str, want: &str) -> ApiError {
    ApiError::bad(format!(
        "Request decode failed: field {name:?} must be a {want}"
    ))
}

/// Go duration syntax ("10s", "1m30s", "500ms"), as Consul parses durations.
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    let ns = go_parse_duration::parse_duration(s)
        .map_err(|_| format!("time: invalid duration {s:?}"))?;
    if ns < 0 {
        return Err(format!("time: negative duration {s:?}"));
    }
    Ok(std::time::Duration::from_nanos(ns as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive() {
        let v = parse(br#"{"name":"a","TTL":"10s","Checks":["x"]}"#)
            .unwrap()
            .unwrap();
        let o = Obj::of(&v, "body").unwrap();
        assert_eq!(o.str("Name").unwrap(), Some("a"));
        assert_eq!(o.str("ttl").unwrap(), Some("10s"));
        assert_eq!(o.strings("checks").unwrap(), Some(vec!["x".to_string()]));
        assert!(o.u64("name").is_err());
        let v = parse(br#"{"enable_tag_override":true}"#).unwrap().unwrap();
        assert!(Obj::of(&v, "b").unwrap().get("EnableTagOverride").is_some());
    }

    #[test]
    fn malformed_json_is_a_400() {
        let e = parse(b"{not json").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().starts_with("Request decode failed"));
        assert_eq!(parse(b"  ").unwrap(), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(duration("1m30s").unwrap().as_secs(), 90);
        assert_eq!(duration("500ms").unwrap().as_millis(), 500);
        assert!(duration("soon").is_err());
        assert!(duration("-1s").is_err());
    }
}
