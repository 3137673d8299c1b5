//! `/v1/config`: config entries. `PUT /v1/config` writes one (with `?cas`), `GET
//! /v1/config/:kind[/:name]` reads one or lists a kind (blocking), `DELETE
//! /v1/config/:kind/:name` deletes (with `?cas`). Entries live on the shard owning "kind/name";
//! reads scatter so every answer carries the table's highest index, as Consul's does.
use muster_shards::command::Command;
use muster_shards::config_entry::{ConfigEntry, ConfigOp, ConfigVerb};
use muster_shards::shard::Table;

use super::config_kinds::{self, EntryError};
use super::{allow, bool_response, scatter, Ctx};
use crate::http::blocking::{block, with_meta};
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::watch::WatchKey;

/// `/v1/config` itself: only `PUT`.
pub async fn apply(cx: Ctx) -> ApiResult<Response> {
    allow(&cx, &[Method::Put])?;
    let v = body::parse(&cx.req.body)
        .map_err(|e| match e {
            ApiError::BadRequest(t) => {
                ApiError::bad(t.replace("Request decode failed:", "Request decoding failed:"))
            }
            other => other,
        })?
        .ok_or_else(|| ApiError::bad("Request decoding failed: EOF"))?;
    let d = config_kinds::decode(&v).map_err(|e| match e {
        EntryError::Decode(t) => ApiError::bad(t),
        EntryError::Invalid(t) => ApiError::Internal(t),
    })?;
    let (verb, cas) = match cas(&cx)? {
        Some(c) => (ConfigVerb::UpsertCas, c),
        None => (ConfigVerb::Upsert, 0),
    };
    let ok = super::write(Command::Config(ConfigOp {
        verb,
        kind: d.kind,
        name: d.name,
        body: d.body,
        cas,
    }))
    .await?;
    Ok(bool_response(ok, cx.opts.pretty))
}

fn cas(cx: &Ctx) -> ApiResult<Option<u64>> {
    match cx.req.query.get("cas").filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => c.parse().map(Some).map_err(|_| {
            ApiError::bad(format!("strconv.ParseUint: parsing {c:?}: invalid syntax"))
        }),
    }
}

/// `/v1/config/<tail>`.
pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    allow(&cx, &[Method::Get, Method::Delete])?;
    let (kind, name) = match tail.split_once('/') {
        Some((k, n)) => (k.to_string(), Some(n.to_string())),
        None => (tail.to_string(), None),
    };
    if cx.req.method == Method::Delete {
        let Some(name) = name else {
            return Err(ApiError::NotFound(
                "Must provide both a kind and name to delete".into(),
            ));
        };
        config_kinds::check_kind(&kind).map_err(ApiError::bad)?;
        let cas = cas(&cx)?;
        let ok = super::write(Command::Config(ConfigOp {
            verb: if cas.is_some() {
                ConfigVerb::DeleteCas
            } else {
                ConfigVerb::Delete
            },
            kind,
            name,
            body: String::new(),
            cas: cas.unwrap_or(0),
        }))
        .await?;
        // Consul answers a plain delete with `{}` and only a CAS delete with the boolean.
        return Ok(if cas.is_some() {
            bool_response(ok, cx.opts.pretty)
        } else {
            json_text(200, "{}".into(), cx.opts.pretty)
        });
    }
    if !kind.is_empty() {
        config_kinds::check_kind(&kind).map_err(ApiError::Internal)?;
    }
    let (idx, entries) = read(&cx, kind.clone(), name.clone()).await?;
    match name {
        Some(n) => match entries.first() {
            Some(e) => Ok(with_meta(json_text(200, render(e), cx.opts.pretty), idx)),
            None => Ok(with_meta(
                ApiError::NotFound(format!("Config entry not found for {kind:?} / {n:?}"))
                    .into_response(),
                idx,
            )),
        },
        None => {
            let parts: Vec<String> = entries.iter().map(render).collect();
            Ok(with_meta(
                json_text(200, format!("[{}]", parts.join(",")), cx.opts.pretty),
                idx,
            ))
        }
    }
}

/// Entries of `kind` (all kinds when empty), or the one named, with the table's index.
pub async fn read(
    cx: &Ctx,
    kind: String,
    name: Option<String>,
) -> ApiResult<(u64, Vec<ConfigEntry>)> {
    block(&cx.opts, |min| {
        let (k, n) = (kind.clone(), name.clone());
        scatter(
            min,
            WatchKey::Table(Table::ConfigEntries),
            |s| s.config().index(),
            move |s| {
                let c = s.config();
                let items = match &n {
                    Some(n) => c.get(&k, n).cloned().into_iter().collect(),
                    None => c.list((!k.is_empty()).then_some(k.as_str())),
                };
                (c.index(), items)
            },
            |parts: Vec<(u64, Vec<ConfigEntry>)>| {
                let mut idx = 0;
                let mut all = Vec::new();
                for (i, items) in parts {
                    idx = idx.max(i);
                    all.extend(items);
                }
                all.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
                (idx, all)
            },
        )
    })
    .await
}

/// The entry as Consul serves it: Kind and Name first, its fields, then the raft indexes.
pub fn render(e: &ConfigEntry) -> String {
    let mut out = String::with_capacity(e.body.len() + 96);
    out.push_str("{\"Kind\":");
    out.push_str(&quote(&e.kind));
    out.push_str(",\"Name\":");
    out.push_str(&quote(&e.name));
    let inner = e.body.trim();
    let inner = inner
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    if !inner.is_empty() {
        out.push(',');
        out.push_str(inner);
    }
    out.push_str(&format!(
        ",\"CreateIndex\":{},\"ModifyIndex\":{}}}",
        e.create_index, e.modify_index
    ));
    out
}

fn quote(s: &str) -> String {
    simd_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A JSON text as the response body, re-indented for `?pretty`.
fn json_text(status: u16, text: String, pretty: bool) -> Response {
    let body = if pretty {
        let mut b = text.clone().into_bytes();
        match simd_json::to_owned_value(&mut b) {
            Ok(v) => simd_json::to_string_pretty(&v).unwrap_or(text) + "\n",
            Err(_) => text,
        }
    } else {
        text
    };
    Response::new(status).with_body("application/json", body)
}
