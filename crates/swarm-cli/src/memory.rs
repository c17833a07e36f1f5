//! Memory commands, run as the authenticated agent: `set`, `get`, `has`, `del`, `keys`,
//! `incr`/`decr`, `mget`, `mset`, `stats`, `watch`.
//!
//! Every call goes to the store as the agent's identity, so the store's ACL decides what
//! is visible; a record the agent cannot see answers exactly like an absent one.

use std::io::Read as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::{Args, ValueEnum};
use serde_json::{Value as Json, json};
use swarm_memory::{
    AclLevel, ChangeEvent, ChangeFilter, KeyPattern, ListQuery, Namespace, Record, RecordKey,
    SetOptions, TeamId, Value,
};

use crate::exit::{CliError, Result};
use crate::open::AgentCtx;
use crate::output::{self, Reply, to_json};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn parse_namespace(s: &str) -> std::result::Result<Namespace, String> {
    Namespace::new(s).map_err(|e| e.to_string())
}

/// `--namespace`, shared by the memory commands.
#[derive(Debug, Args)]
pub(crate) struct Ns {
    /// The namespace
    #[arg(long, value_name = "NS", default_value = Namespace::DEFAULT, value_parser = parse_namespace)]
    namespace: Namespace,
}

impl Ns {
    fn get(&self) -> Namespace {
        self.namespace.clone()
    }
}

/// How VALUE is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// UTF-8 text, stored as given (stdin too: a trailing newline is kept)
    #[default]
    Text,
    /// A JSON document; invalid JSON is refused
    Json,
    /// A 64-bit signed integer
    Integer,
    /// Bytes: base64 text as an argument, raw bytes from stdin
    Bytes,
}

/// Options of the writing commands.
#[derive(Debug, Args)]
pub(crate) struct WriteOpts {
    /// ACL level: 1-5 or private, team, swarm, public, system [default: the record's
    /// current level, private for a new record]
    #[arg(long)]
    level: Option<AclLevel>,
    /// Expire after this many seconds
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    ttl: Option<u64>,
    /// The record's team (for team-level records of an agent in several teams)
    #[arg(long)]
    team: Option<TeamId>,
    /// How VALUE is read
    #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = Kind::Text)]
    kind: Kind,
    /// A tag (repeatable; replaces the record's tags)
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
}

impl WriteOpts {
    fn options(&self) -> SetOptions {
        let mut o = SetOptions::new();
        if let Some(l) = self.level {
            o = o.level(l);
        }
        if let Some(t) = &self.team {
            o = o.team(t.clone());
        }
        if let Some(s) = self.ttl {
            o = o.ttl(Duration::from_secs(s));
        }
        if !self.tags.is_empty() {
            o = o.tags(self.tags.clone());
        }
        o
    }
}

/// VALUE as given: an argument, or (for `-`) all of stdin.
fn read_input(arg: &str) -> Result<Input> {
    if arg != "-" {
        return Ok(Input::Arg(arg.to_owned()));
    }
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes)?;
    Ok(Input::Stdin(bytes))
}

enum Input {
    Arg(String),
    Stdin(Vec<u8>),
}

impl Kind {
    fn parse(self, input: Input) -> Result<Value> {
        let text = |input: Input| match input {
            Input::Arg(s) => Ok(s),
            Input::Stdin(b) => String::from_utf8(b).map_err(|_| {
                CliError::usage("stdin is not UTF-8 text: pass --type bytes to store bytes")
            }),
        };
        match self {
            Kind::Text => Ok(Value::Text(text(input)?)),
            Kind::Json => {
                let s = text(input)?;
                serde_json::from_str(&s)
                    .map(Value::Json)
                    .map_err(|e| CliError::usage(format!("VALUE is not valid JSON: {e}")))
            }
            Kind::Integer => {
                let s = text(input)?;
                s.trim().parse::<i64>().map(Value::Integer).map_err(|_| {
                    CliError::usage(format!("VALUE {:?} is not a 64-bit integer", s.trim()))
                })
            }
            Kind::Bytes => match input {
                Input::Stdin(b) => Ok(Value::Bytes(b)),
                Input::Arg(s) => BASE64
                    .decode(s.trim())
                    .map(Value::Bytes)
                    .map_err(|e| CliError::usage(format!("VALUE is not base64: {e}"))),
            },
        }
    }
}

/// A value as one line for humans: text as is, JSON compact, integers in decimal, bytes
/// in base64.
fn value_text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Json(j) => j.to_string(),
        Value::Integer(n) => n.to_string(),
        Value::Bytes(b) => BASE64.encode(b),
    }
}

/// A value's exact bytes (`get --raw`).
fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        other => value_text(other).into_bytes(),
    }
}

/// A value in JSON: text a string, JSON itself, integers a number, bytes base64 text.
fn value_json(v: &Value) -> Json {
    match v {
        Value::Text(s) => Json::String(s.clone()),
        Value::Json(j) => j.clone(),
        Value::Integer(n) => Json::from(*n),
        Value::Bytes(b) => Json::String(BASE64.encode(b)),
    }
}

fn record_json(r: &Record) -> Result<Json> {
    let mut doc = json!({
        "swarm": r.key.swarm(),
        "namespace": r.key.namespace(),
        "key": r.key.key(),
        "type": r.meta.value_type,
        "value": value_json(&r.value),
    });
    if let (Json::Object(d), Json::Object(mut meta)) = (&mut doc, to_json(&r.meta)?) {
        // Already there as `type`.
        meta.remove("value_type");
        d.extend(meta);
    }
    Ok(doc)
}

fn not_found(key: &RecordKey) -> CliError {
    // The same words whether the record is absent, expired or invisible to the agent.
    CliError::not_found(format!(
        "key {:?} not found in namespace {}",
        key.key().as_str(),
        key.namespace()
    ))
}

fn written(key: &RecordKey, version: u64, created: bool) -> Json {
    json!({
        "swarm": key.swarm(),
        "namespace": key.namespace(),
        "key": key.key(),
        "version": version,
        "created": created,
    })
}

#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The key
    key: String,
    /// The value; `-` reads stdin
    #[arg(allow_negative_numbers = true)]
    value: String,
    #[command(flatten)]
    write: WriteOpts,
    /// Write only if the record is at exactly this version (else exit 5)
    #[arg(long, value_name = "V")]
    if_version: Option<u64>,
    #[command(flatten)]
    ns: Ns,
}

pub(crate) fn set(ctx: &AgentCtx, a: SetArgs) -> Result<Reply> {
    let key = ctx.key(ctx.write_swarm()?, &a.ns.get(), &a.key)?;
    let value = a.write.kind.parse(read_input(&a.value)?)?;
    let mut opts = a.write.options();
    if let Some(v) = a.if_version {
        opts = opts.if_version(v);
    }
    let w = ctx.store().set(ctx.identity(), &key, value, &opts)?;
    let text =
        format!("{} {key} version {}", if w.created { "created" } else { "updated" }, w.version);
    Ok(Reply::new(written(&key, w.version, w.created), text))
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The key
    key: String,
    /// Write the value's exact bytes, with no newline (not with --json)
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    ns: Ns,
}

pub(crate) fn get(ctx: &AgentCtx, a: GetArgs) -> Result<Reply> {
    if a.raw && ctx.json {
        return Err(CliError::usage("--raw and --json exclude each other"));
    }
    let key = ctx.key(ctx.read_swarm(), &a.ns.get(), &a.key)?;
    let record = ctx.store().get(ctx.identity(), &key)?.ok_or_else(|| not_found(&key))?;
    if a.raw {
        return Ok(Reply::raw(value_bytes(&record.value)));
    }
    Ok(Reply::new(record_json(&record)?, value_text(&record.value)))
}

#[derive(Debug, Args)]
pub(crate) struct HasArgs {
    /// The key
    key: String,
    #[command(flatten)]
    ns: Ns,
}

pub(crate) fn has(ctx: &AgentCtx, a: HasArgs) -> Result<Reply> {
    let key = ctx.key(ctx.read_swarm(), &a.ns.get(), &a.key)?;
    let found = ctx.store().has(ctx.identity(), &key)?;
    let doc = json!({ "namespace": key.namespace(), "key": key.key(), "exists": found });
    Ok(Reply::new(doc, found.to_string()))
}

#[derive(Debug, Args)]
pub(crate) struct DelArgs {
    /// The key
    key: String,
    /// Delete only if the record is at exactly this version (else exit 5)
    #[arg(long, value_name = "V")]
    if_version: Option<u64>,
    #[command(flatten)]
    ns: Ns,
}

pub(crate) fn del(ctx: &AgentCtx, a: DelArgs) -> Result<Reply> {
    let key = ctx.key(ctx.write_swarm()?, &a.ns.get(), &a.key)?;
    let expect = a.if_version.map(swarm_memory::Expect::Version);
    if !ctx.store().delete(ctx.identity(), &key, expect)? {
        return Err(not_found(&key));
    }
    let doc = json!({ "namespace": key.namespace(), "key": key.key(), "deleted": true });
    Ok(Reply::new(doc, format!("deleted {key}")))
}

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    /// Glob: `*` any run, `?` one character, `\` escapes; everything else is literal
    #[arg(default_value = "*")]
    pattern: String,
    /// Print at most this many keys
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
    #[command(flatten)]
    ns: Ns,
}

pub(crate) fn keys(ctx: &AgentCtx, a: KeysArgs) -> Result<Reply> {
    let ns = a.ns.get();
    let pattern = KeyPattern::parse(&a.pattern)?;
    let limit = usize::try_from(a.limit).unwrap_or(usize::MAX);
    let mut query = ListQuery::new(ctx.read_swarm().clone()).namespace(ns.clone()).pattern(pattern);
    let mut keys = Vec::new();
    let truncated = loop {
        let page = ctx.store().list(ctx.identity(), &query.clone().limit(limit - keys.len()))?;
        keys.extend(page.items.into_iter().map(|s| s.key.to_string()));
        match page.next {
            Some(cursor) if keys.len() < limit => query = query.after(&cursor)?,
            Some(_) => break true,
            None => break false,
        }
    };
    let doc =
        json!({ "namespace": ns, "pattern": a.pattern, "keys": keys, "truncated": truncated });
    let mut reply = Reply::new(doc, keys.join("\n"));
    if truncated {
        reply = reply.note(format!("more keys match: showing the first {limit} (raise --limit)"));
    }
    Ok(reply)
}

#[derive(Debug, Args)]
pub(crate) struct CountArgs {
    /// The key
    key: String,
    /// The amount
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    by: i64,
    #[command(flatten)]
    ns: Ns,
}

/// `incr` (`sign` 1) and `decr` (`sign` -1).
pub(crate) fn add(ctx: &AgentCtx, a: CountArgs, sign: i8) -> Result<Reply> {
    let key = ctx.key(ctx.write_swarm()?, &a.ns.get(), &a.key)?;
    let (store, who, opts) = (ctx.store(), ctx.identity(), SetOptions::new());
    let n = if sign < 0 {
        store.decr(who, &key, a.by, &opts)?
    } else {
        store.incr(who, &key, a.by, &opts)?
    };
    let doc = json!({ "namespace": key.namespace(), "key": key.key(), "value": n });
    Ok(Reply::new(doc, n.to_string()))
}

#[derive(Debug, Args)]
pub(crate) struct MgetArgs {
    /// The keys
    #[arg(required = true)]
    keys: Vec<String>,
    #[command(flatten)]
    ns: Ns,
}

pub(crate) fn mget(ctx: &AgentCtx, a: MgetArgs) -> Result<Reply> {
    let ns = a.ns.get();
    let keys: Vec<RecordKey> =
        a.keys.iter().map(|k| ctx.key(ctx.read_swarm(), &ns, k)).collect::<Result<_>>()?;
    let records = ctx.store().mget(ctx.identity(), &keys)?;
    let mut items = Vec::with_capacity(keys.len());
    let mut lines = Vec::with_capacity(keys.len());
    for (key, record) in keys.iter().zip(&records) {
        match record {
            Some(r) => {
                let mut item = record_json(r)?;
                item["found"] = Json::Bool(true);
                items.push(item);
                lines.push(format!("{}\t{}", key.key(), value_text(&r.value)));
            }
            None => {
                items.push(json!({ "key": key.key(), "found": false }));
                lines.push(format!("{}\t(not found)", key.key()));
            }
        }
    }
    Ok(Reply::new(json!({ "namespace": ns, "items": items }), lines.join("\n")))
}

#[derive(Debug, Args)]
pub(crate) struct MsetArgs {
    /// KEY VALUE pairs; one VALUE may be `-` to read stdin
    #[arg(required = true, value_name = "KEY VALUE", allow_negative_numbers = true)]
    pairs: Vec<String>,
    #[command(flatten)]
    write: WriteOpts,
    #[command(flatten)]
    ns: Ns,
}

pub(crate) fn mset(ctx: &AgentCtx, a: MsetArgs) -> Result<Reply> {
    if !a.pairs.len().is_multiple_of(2) {
        return Err(CliError::usage(format!(
            "mset takes KEY VALUE pairs, but got {} arguments",
            a.pairs.len()
        )));
    }
    if a.pairs.chunks(2).filter(|p| p[1] == "-").count() > 1 {
        return Err(CliError::usage("only one VALUE can be `-`: stdin is read once"));
    }
    let (swarm, ns) = (ctx.write_swarm()?, a.ns.get());
    let mut items = Vec::with_capacity(a.pairs.len() / 2);
    for pair in a.pairs.chunks(2) {
        let key = ctx.key(swarm, &ns, &pair[0])?;
        items.push((key, a.write.kind.parse(read_input(&pair[1])?)?));
    }
    let keys: Vec<RecordKey> = items.iter().map(|(k, _)| k.clone()).collect();
    let written = ctx.store().mset(ctx.identity(), items, &a.write.options())?;
    let docs: Vec<Json> =
        keys.iter().zip(&written).map(|(k, w)| self::written(k, w.version, w.created)).collect();
    let text: Vec<String> =
        keys.iter().zip(&written).map(|(k, w)| format!("{k} version {}", w.version)).collect();
    Ok(Reply::new(json!({ "written": docs }), text.join("\n")))
}

pub(crate) fn stats(ctx: &AgentCtx) -> Result<Reply> {
    let swarm = ctx.read_swarm();
    let s = ctx.store().stats(ctx.identity(), Some(swarm))?;
    let levels: Vec<String> =
        AclLevel::ALL.iter().zip(s.by_level).map(|(l, n)| format!("{}={n}", l.name())).collect();
    let text = output::fields(&[
        ("swarm", swarm.to_string()),
        ("records", s.records.to_string()),
        ("bytes", s.bytes.to_string()),
        ("namespaces", s.namespaces.to_string()),
        ("encrypted", s.encrypted.to_string()),
        ("by level", levels.join(" ")),
    ]);
    let mut doc = to_json(&s)?;
    doc["swarm"] = json!(swarm);
    Ok(Reply::new(doc, text))
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Only keys starting with this
    prefix: Option<String>,
    /// Only this namespace [default: every namespace]
    #[arg(long, value_name = "NS", value_parser = parse_namespace)]
    namespace: Option<Namespace>,
    /// Start after this position of the change feed [default: now, new changes only]
    #[arg(long, value_name = "SEQ")]
    from: Option<u64>,
    /// Stop after this many seconds [default: run until Ctrl-C]
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
}

fn change_json(c: &ChangeEvent) -> Json {
    json!({
        "seq": c.seq,
        "op": c.op,
        "swarm": c.key.swarm(),
        "namespace": c.key.namespace(),
        "key": c.key.key(),
        "version": c.version,
        "level": c.level,
        "owner": c.owner,
        "team": c.team,
        "at": c.at,
    })
}

pub(crate) fn watch(ctx: &AgentCtx, a: WatchArgs) -> Result<Reply> {
    let swarm = ctx.read_swarm();
    let mut filter = ChangeFilter::swarm(swarm.clone());
    if let Some(ns) = &a.namespace {
        filter = filter.namespace(ns.clone());
    }
    if let Some(p) = &a.prefix {
        filter = filter.prefix(p.clone());
    }
    let from = match a.from {
        Some(seq) => seq,
        None => ctx.store().change_head()?,
    };
    let mut changes = ctx.store().watch(ctx.identity(), filter, from);
    let deadline = a.timeout.map(|s| Instant::now() + Duration::from_secs(s));
    // On stderr, so a reader of stdout sees only changes; it also tells whoever started
    // the watch that it is in place.
    output::stderr_line(&format!(
        "watching swarm {swarm}, {}, {} from seq {from} ({})",
        a.namespace.as_ref().map_or("every namespace".to_owned(), |n| format!("namespace {n}")),
        a.prefix.as_ref().map_or("every key".to_owned(), |p| format!("keys starting with {p:?}")),
        if a.timeout.is_some() { "until --timeout" } else { "Ctrl-C to stop" }
    ));
    loop {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => break,
            },
            None => Duration::from_secs(60),
        };
        if let Some(c) = changes.next_timeout(wait)? {
            let text = format!("{} {} {} version {}", c.seq, c.op, c.key, c.version);
            output::stream_item(ctx.json, &change_json(&c), &text)?;
        }
    }
    Ok(Reply::streamed())
}
