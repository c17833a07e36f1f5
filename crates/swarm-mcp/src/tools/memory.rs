//! `memory_store`, `memory_get`, `memory_search`, `memory_delete`.

use base64::Engine as _;
use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use swarm_memory::{Expect, KeyPattern, ListQuery, Namespace, Record, SetOptions, Value};
use swarm_store::SearchQuery;

use super::{Ctx, Level, level_name, limit, seconds, team};
use crate::reply::{Outcome, PAGE_BUDGET, Reply, ToolError, json_len};

/// Most hits or records of one page.
const MAX_PAGE: usize = 50;
/// Characters of a value one `memory_get` returns by default, and at most.
const DEFAULT_VALUE_CHARS: usize = 8_000;
const MAX_VALUE_CHARS: usize = 32_000;

/// The schema of an argument that takes any JSON value.
fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({})
}

/// How `memory_store` stores a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// UTF-8 text (the value must be a string).
    Text,
    /// A JSON document (a string value is parsed as JSON text).
    Json,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreArgs {
    /// The key: 1-1024 bytes, no control characters.
    key: String,
    /// The value. A string is stored as text; an object, array, number, boolean or null as
    /// JSON.
    #[schemars(schema_with = "any_value")]
    value: Json,
    /// Store as `text` or `json` (default: text for a string, JSON otherwise). With
    /// `json`, a string value is parsed as JSON text.
    #[serde(rename = "type")]
    kind: Option<Kind>,
    /// Namespace (default `default`): letters, digits and `. _ : / @ -`.
    namespace: Option<String>,
    /// Who may read the record: `private` (default for a new record), `team`, `swarm`,
    /// `public` or `system`. An existing record keeps its level unless its owner changes it.
    level: Option<Level>,
    /// The team of a team-level record (needed when this agent is in several teams).
    team: Option<String>,
    /// Tags, replacing the record's tags.
    tags: Option<Vec<String>>,
    /// Expire the record after this many seconds (default: never; a write without it clears
    /// an earlier expiry).
    ttl_seconds: Option<u64>,
    /// Write only if the record is at exactly this version (compare-and-set).
    if_version: Option<u64>,
    /// Write only if no record exists under this key.
    #[serde(default)]
    if_absent: bool,
}

pub(crate) fn store(ctx: &Ctx, a: StoreArgs) -> Outcome {
    let key = ctx.key(a.namespace.as_deref(), &a.key)?;
    let value = match (a.kind, a.value) {
        (None | Some(Kind::Text), Json::String(s)) => Value::Text(s),
        (Some(Kind::Text), other) => {
            return Err(ToolError::invalid(format!(
                "type text needs a string value, not {}",
                kind_of(&other)
            )));
        }
        (Some(Kind::Json), Json::String(s)) => Value::Json(serde_json::from_str(&s).map_err(
            |e| ToolError::invalid(format!("the value is not valid JSON text ({e}); pass the JSON itself, not a string, or use type text")),
        )?),
        (_, other) => Value::Json(other),
    };
    let mut opts = SetOptions::new();
    if let Some(l) = a.level {
        opts = opts.level(l.into());
    }
    if let Some(t) = team(a.team.as_deref())? {
        opts = opts.team(t);
    }
    if let Some(tags) = a.tags {
        opts = opts.tags(tags);
    }
    if let Some(s) = a.ttl_seconds {
        opts = opts.ttl(seconds("ttl_seconds", s)?);
    }
    opts = match (a.if_version, a.if_absent) {
        (Some(_), true) => {
            return Err(ToolError::invalid("give if_version or if_absent, not both"));
        }
        (Some(v), false) => opts.if_version(v),
        (None, true) => opts.expect(Expect::Absent),
        (None, false) => opts,
    };
    let w = ctx.store().set(ctx.who(), &key, value, &opts)?;
    Ok(Reply::new(json!({
        "namespace": key.namespace(),
        "key": key.key(),
        "version": w.version,
        "created": w.created,
    })))
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct GetArgs {
    /// The key.
    key: String,
    /// Namespace (default `default`).
    namespace: Option<String>,
    /// For long values: the character offset to read from (use `next_offset` of the
    /// previous call).
    #[serde(default)]
    offset: u64,
    /// Characters of the value to return, 100 to 32000 (default 8000). A longer value is
    /// returned in pieces as `value_text`.
    max_chars: Option<u32>,
}

pub(crate) fn get(ctx: &Ctx, a: GetArgs) -> Outcome {
    let key = ctx.key(a.namespace.as_deref(), &a.key)?;
    let max = match a.max_chars {
        None => DEFAULT_VALUE_CHARS,
        Some(n) if (100..=MAX_VALUE_CHARS as u32).contains(&n) => n as usize,
        Some(n) => {
            return Err(ToolError::invalid(format!(
                "max_chars must be 100 to {MAX_VALUE_CHARS}, not {n}"
            )));
        }
    };
    let Some(record) = ctx.store().get(ctx.who(), &key)? else {
        return Err(ToolError::not_found(format!("memory record {key}")));
    };
    let offset = usize::try_from(a.offset).unwrap_or(usize::MAX);
    Ok(Reply::new(record_json(&record, offset, max)?))
}

/// A record with its value whole when it fits in `max` characters from offset 0, else the
/// piece `[offset, offset + max)` of its text form.
fn record_json(r: &Record, offset: usize, max: usize) -> Result<Json, ToolError> {
    let m = &r.meta;
    let (whole, text, encoding): (Json, String, Option<&str>) = match &r.value {
        Value::Text(s) => (Json::String(s.clone()), s.clone(), None),
        Value::Json(v) => (v.clone(), v.to_string(), None),
        Value::Integer(n) => (json!(n), n.to_string(), None),
        Value::Bytes(b) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(b);
            (Json::String(b64.clone()), b64, Some("base64"))
        }
    };
    let mut doc = json!({
        "namespace": r.key.namespace(),
        "key": r.key.key(),
        "type": m.value_type,
        "level": level_name(m.level),
        "owner": m.owner,
        "team": m.team,
        "tags": m.tags,
        "version": m.version,
        "size": m.size,
        "encrypted": m.encrypted,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "expires_at": m.expires_at,
    });
    if let Some(e) = encoding {
        doc["encoding"] = json!(e);
    }
    let total = text.chars().count();
    if offset == 0 && total <= max {
        doc["value"] = whole;
        doc["truncated"] = json!(false);
        return Ok(doc);
    }
    if offset >= total && offset > 0 {
        return Err(ToolError::invalid(format!(
            "offset {offset} is past the end of the value ({total} characters)"
        )));
    }
    let piece: String = text.chars().skip(offset).take(max).collect();
    let end = offset + piece.chars().count();
    doc["value_text"] = json!(piece);
    doc["offset"] = json!(offset);
    doc["total_chars"] = json!(total);
    doc["truncated"] = json!(end < total);
    doc["next_offset"] = if end < total { json!(end) } else { Json::Null };
    Ok(doc)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchArgs {
    /// Words to find in values (all must appear, case-insensitive). Leave out to list
    /// records instead.
    query: Option<String>,
    /// Only this namespace.
    namespace: Option<String>,
    /// Only keys starting with this.
    prefix: Option<String>,
    /// Only records carrying this tag.
    tag: Option<String>,
    /// Records or hits per page, 1 to 50 (default 20). A page may hold fewer to stay small.
    limit: Option<u32>,
    /// `next_cursor` of the previous page, unchanged, with the same other arguments. A
    /// search cursor is valid only in this server process, for this agent and this search.
    cursor: Option<String>,
}

pub(crate) fn search(ctx: &Ctx, a: SearchArgs) -> Outcome {
    let limit = limit(a.limit, 20, MAX_PAGE)?;
    let namespace = a.namespace.as_deref().map(Namespace::new).transpose()?;
    let prefix = a.prefix.unwrap_or_default();
    match a.query.filter(|q| !q.trim().is_empty()) {
        Some(text) => {
            let mut q = SearchQuery::new(ctx.swarm().clone(), &text)?.prefix(prefix).limit(limit);
            if let Some(ns) = namespace {
                q = q.namespace(ns);
            }
            if let Some(t) = a.tag {
                q = q.tag(t);
            }
            // A search cursor is the store's sealed cursor, handed through unchanged: only
            // the store that issued it opens it, for this agent and this query.
            if let Some(c) = a.cursor {
                q = q.after(c.trim().to_owned());
            }
            let page = ctx.store().search(ctx.who(), &q)?;
            let hits: Vec<(Json, String)> = page
                .hits
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let item = json!({
                        "namespace": h.namespace,
                        "key": h.key,
                        "level": level_name(h.level),
                        "type": h.value_type,
                        "version": h.version,
                        "size": h.size,
                        "tags": h.tags,
                        "updated_at": h.updated_at,
                        "snippet": h.snippet,
                    });
                    (item, page.cursor_after(i).unwrap_or_default().to_owned())
                })
                .collect();
            let (hits, cut) = fill(hits);
            let next = cut.or_else(|| page.next.clone());
            let searched = match ctx.system.encrypted_levels() {
                Some(l) => format!(
                    "values of visible records stored in plaintext (levels above {}; encrypted levels are not searched)",
                    l.name()
                ),
                None => "values of every visible record (none are encrypted)".to_owned(),
            };
            Ok(Reply::new(json!({
                "mode": "search",
                "hits": hits,
                "next_cursor": next,
                "examined": page.examined,
                "unreadable": page.unreadable,
                "searched": searched,
            })))
        }
        None => {
            let after = a.cursor.as_deref().map(decode_cursor).transpose()?;
            let pattern = KeyPattern::parse(&format!("{}*", escape_glob(&prefix)))?;
            let mut q = ListQuery::new(ctx.swarm().clone()).pattern(pattern).limit(limit);
            if let Some(ns) = namespace {
                q = q.namespace(ns);
            }
            if let Some(t) = a.tag {
                q = q.tag(t);
            }
            if let Some(c) = &after {
                q = q.after(c)?;
            }
            let page = ctx.store().list(ctx.who(), &q)?;
            let records: Vec<(Json, String)> = page
                .items
                .iter()
                .map(|s| {
                    let item = json!({
                        "namespace": s.namespace,
                        "key": s.key,
                        "level": level_name(s.level),
                        "type": s.value_type,
                        "version": s.version,
                        "size": s.size,
                        "encrypted": s.encrypted,
                        "tags": s.tags,
                        "updated_at": s.updated_at,
                        "expires_at": s.expires_at,
                    });
                    (item, format!("{}\u{1f}{}", s.namespace, s.key))
                })
                .collect();
            let (records, cut) = fill(records);
            let next = cut.or(page.next);
            Ok(Reply::new(json!({
                "mode": "list",
                "records": records,
                "next_cursor": next.map(|c| encode_cursor(&c)),
            })))
        }
    }
}

/// Keeps items while they fit in [`PAGE_BUDGET`]; when one does not, returns the position
/// of the last one kept, to continue from.
fn fill(items: Vec<(Json, String)>) -> (Vec<Json>, Option<String>) {
    let mut out = Vec::new();
    let mut used = 0;
    let mut last = None;
    for (item, position) in items {
        let len = json_len(&item) + 1;
        if !out.is_empty() && used + len > PAGE_BUDGET {
            return (out, last);
        }
        used += len;
        out.push(item);
        last = Some(position);
    }
    (out, None)
}

/// Escapes the pattern characters of a key prefix so it matches literally.
fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Cursors are handed out as base64url, so a model copies a plain token.
fn encode_cursor(position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position)
}

fn decode_cursor(cursor: &str) -> Result<String, ToolError> {
    let bad = || {
        ToolError::invalid("malformed cursor: pass next_cursor from the previous page unchanged")
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    if !s.contains('\u{1f}') {
        return Err(bad());
    }
    Ok(s)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteArgs {
    /// The key.
    key: String,
    /// Namespace (default `default`).
    namespace: Option<String>,
    /// Delete only if the record is at exactly this version.
    if_version: Option<u64>,
}

pub(crate) fn delete(ctx: &Ctx, a: DeleteArgs) -> Outcome {
    let key = ctx.key(a.namespace.as_deref(), &a.key)?;
    if ctx.store().delete(ctx.who(), &key, a.if_version.map(Expect::Version))? {
        Ok(Reply::new(json!({
            "namespace": key.namespace(),
            "key": key.key(),
            "deleted": true,
        })))
    } else {
        Err(ToolError::not_found(format!("memory record {key}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("ns\u{1f}key with spaces/and:colons");
        assert!(c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{c}");
        assert_eq!(decode_cursor(&c).ok().as_deref(), Some("ns\u{1f}key with spaces/and:colons"));
        assert!(decode_cursor("!!!").is_err());
        assert!(decode_cursor(&encode_cursor("no separator")).is_err());
    }

    #[test]
    fn prefixes_match_literally() {
        let p = KeyPattern::parse(&format!("{}*", escape_glob("a*b?c\\"))).ok();
        let p = p.as_ref();
        assert!(p.is_some_and(|p| p.matches("a*b?c\\tail")));
        assert!(!p.is_some_and(|p| p.matches("axbycz")));
    }

    #[test]
    fn pages_stop_at_the_budget_and_say_where() {
        let items: Vec<(Json, String)> = (0..100)
            .map(|i| (json!({ "snippet": "x".repeat(500) }), format!("n\u{1f}{i}")))
            .collect();
        let (kept, cut) = fill(items);
        assert!(kept.len() < 100 && !kept.is_empty());
        let used: usize = kept.iter().map(|k| json_len(k) + 1).sum();
        assert!(used <= PAGE_BUDGET, "{used}");
        assert_eq!(cut, Some(format!("n\u{1f}{}", kept.len() - 1)));
        let (kept, cut) = fill(vec![(json!({}), "n\u{1f}0".into())]);
        assert_eq!((kept.len(), cut), (1, None));
    }
}
