//! The tool table: every tool's name, description, input schema, annotations and the
//! function that runs it, and the arguments they share.
//!
//! Input schemas are generated from the same structs the arguments are parsed into, so
//! the two cannot drift; subschemas are inlined, so a schema has an object root and no
//! `$ref`. Unknown arguments are refused rather than ignored: a misspelt `if_version`
//! must not turn a compare-and-set into a blind write.

mod consensus;
mod events;
mod memory;
mod tasks;
mod whoami;

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use swarm_memory::{AclLevel, Identity, Namespace, RecordKey, Session, Store, SwarmMemory, TeamId};

use crate::reply::{Outcome, ToolError};
use crate::server::{Facts, Profile};

/// What a tool runs with: the system, the session authenticated for this call, and the
/// server's facts.
pub(crate) struct Ctx {
    pub(crate) system: SwarmMemory,
    pub(crate) session: Session,
    pub(crate) facts: Arc<Facts>,
}

impl Ctx {
    pub(crate) fn store(&self) -> &Store {
        self.system.store()
    }

    /// Who the call runs as.
    pub(crate) fn who(&self) -> &Identity {
        self.session.identity()
    }

    /// The agent's own swarm: every tool works there.
    pub(crate) fn swarm(&self) -> &swarm_memory::SwarmId {
        self.session.swarm()
    }

    /// The record `key` of `namespace` (default `default`) in the agent's swarm.
    pub(crate) fn key(&self, namespace: Option<&str>, key: &str) -> Result<RecordKey, ToolError> {
        let ns = namespace.unwrap_or(Namespace::DEFAULT);
        RecordKey::parse(self.swarm().as_str(), ns, key).map_err(ToolError::from)
    }
}

/// How a tool behaves, for its annotations.
#[derive(Clone, Copy)]
struct Hints {
    read_only: bool,
    destructive: bool,
    idempotent: bool,
}

const READ: Hints = Hints { read_only: true, destructive: false, idempotent: true };
const ADD: Hints = Hints { read_only: false, destructive: false, idempotent: false };
const CHANGE: Hints = Hints { read_only: false, destructive: true, idempotent: false };

type Run = Box<dyn Fn(&Ctx, JsonObject) -> Outcome + Send + Sync>;

/// One tool.
pub(crate) struct ToolDef {
    pub(crate) tool: Tool,
    /// The smallest profile that offers it.
    pub(crate) profile: Profile,
    run: Run,
}

impl ToolDef {
    /// Parses the arguments and runs the tool.
    pub(crate) fn call(&self, ctx: &Ctx, args: JsonObject) -> Outcome {
        (self.run)(ctx, args)
    }

    pub(crate) fn name(&self) -> &str {
        &self.tool.name
    }
}

fn def<A>(
    name: &'static str,
    title: &str,
    description: &'static str,
    hints: Hints,
    profile: Profile,
    f: fn(&Ctx, A) -> Outcome,
) -> ToolDef
where
    A: DeserializeOwned + JsonSchema + 'static,
{
    let mut tool = Tool::new(name, description, schema_of::<A>());
    tool.title = Some(title.to_owned());
    tool.annotations = Some(
        ToolAnnotations::with_title(title)
            .read_only(hints.read_only)
            .destructive(hints.destructive)
            .idempotent(hints.idempotent)
            .open_world(false),
    );
    let run: Run = Box::new(move |ctx, args| {
        let parsed: A = serde_json::from_value(Json::Object(args))
            .map_err(|e| ToolError::invalid(format!("arguments of {name}: {e}")))?;
        f(ctx, parsed)
    });
    ToolDef { tool, profile, run }
}

/// Every tool, in the order `tools/list` shows them.
pub(crate) fn all() -> Vec<ToolDef> {
    use Profile::{Core, Swarm};
    vec![
        def(
            "whoami",
            "Who am I",
            "Who this server acts as: agent, swarm, teams, the ACL levels it may read and write \
             at, which levels are encrypted (and so not full-text searchable), the server version \
             and the absolute path of the database. Call it first.",
            READ,
            Core,
            whoami::run,
        ),
        def(
            "memory_store",
            "Store a memory record",
            "Write a value (text, or any JSON) under a key in a namespace. New records are private \
             to this agent unless `level` says otherwise (team, swarm, public). Pass `if_version` \
             (the version memory_get returned) to update only if nobody changed the record since, \
             or `if_absent` to create only; a mismatch is a `conflict` error and nothing is \
             written. Returns the new version.",
            CHANGE,
            Core,
            memory::store,
        ),
        def(
            "memory_get",
            "Read a memory record",
            "Read one record: its value, type, level, owner, tags and version. A record that does \
             not exist and one this agent may not see give the same `not_found` error. Long \
             values come in pieces: follow `next_offset`.",
            READ,
            Core,
            memory::get,
        ),
        def(
            "memory_search",
            "Search memory",
            "Without `query`: list the records this agent can see (keys and metadata, no values), \
             filtered by namespace, key prefix and tag. With `query`: full-text search (every \
             word must appear, case-insensitive) over the values of the records this agent can \
             see that are stored in plaintext (encrypted levels are not searched; see whoami), \
             with a short snippet per hit. Pages are small: pass `cursor` from the previous page \
             to continue; a page may be empty and still have a cursor.",
            READ,
            Core,
            memory::search,
        ),
        def(
            "memory_delete",
            "Delete a memory record",
            "Delete one record. Pass `if_version` to delete only the version you read; a mismatch \
             is a `conflict` error. A record that does not exist and one this agent may not see \
             give the same `not_found` error.",
            Hints { read_only: false, destructive: true, idempotent: true },
            Core,
            memory::delete,
        ),
        def(
            "task_create",
            "Create a task",
            "Create a task in this agent's swarm (swarm level unless `level` says otherwise). \
             Dependencies between tasks are managed with the swarm-memory command line.",
            ADD,
            Swarm,
            tasks::create,
        ),
        def(
            "task_list",
            "List tasks",
            "Tasks this agent can see, highest priority first. `ready_only`: pending tasks whose \
             hard dependencies are all completed, which can be claimed now. `assignee`: `me` or \
             an agent id.",
            READ,
            Swarm,
            tasks::list,
        ),
        def(
            "task_update",
            "Claim, progress, complete, fail or release a task",
            "`claim` takes a task atomically under a lease (only one agent can win) and returns \
             its `fencing_token`; `progress`, `complete`, `fail` and `release` must pass that \
             token while the lease lasts, so an agent whose lease lapsed cannot overwrite the \
             next holder's work (a `conflict` error says so). Claim again to renew.",
            CHANGE,
            Swarm,
            tasks::update,
        ),
        def(
            "event_publish",
            "Publish an event",
            "Publish an event (a type and a JSON payload) to this agent's swarm: persisted, seen \
             by every agent allowed to read it, optionally addressed to one agent, optionally \
             expiring.",
            ADD,
            Swarm,
            events::publish,
        ),
        def(
            "event_poll",
            "Poll events",
            "Events after a position, oldest first, that this agent can see. Without `since`, \
             starts from where this agent's `consumer` (default `mcp`) got to, and remembers the \
             returned `cursor` for it, so successive calls never miss or repeat an event. \
             `wait_ms` waits (at most 20 s) for the first event when there is none yet.",
            Hints { read_only: false, destructive: false, idempotent: false },
            Swarm,
            events::poll,
        ),
        def(
            "consensus_propose",
            "Propose a decision",
            "Open a consensus round on a target (what is being decided), with a strategy \
             (majority, weighted by confidence, unanimous, threshold), a quorum and an optional \
             deadline. Agents who can see the round vote with consensus_vote.",
            ADD,
            Swarm,
            consensus::propose,
        ),
        def(
            "consensus_vote",
            "Vote on a decision",
            "Cast this agent's vote on a round: approve or reject, with a confidence from 0 to 1 \
             and a reason. One vote per agent: a second one is a `conflict` error and the first \
             stands. Returns the round's tally and whether this vote decided it.",
            Hints { read_only: false, destructive: false, idempotent: true },
            Swarm,
            consensus::vote,
        ),
        def(
            "consensus_status",
            "Consensus status",
            "With `id`: one round, its tally, outcome and votes. Without: the rounds this agent \
             can see, newest first, optionally only those with a status.",
            READ,
            Swarm,
            consensus::status,
        ),
    ]
}

/// The input schema of `A`: a JSON Schema object with every subschema inlined.
fn schema_of<A: JsonSchema>() -> Arc<JsonObject> {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut value = generator.into_root_schema_for::<A>().to_value();
    simplify(&mut value);
    let mut object = match value {
        Json::Object(o) => o,
        _ => JsonObject::new(),
    };
    object.remove("title");
    // A tool without arguments still takes an object.
    object.entry("type").or_insert_with(|| Json::from("object"));
    object.entry("properties").or_insert_with(|| Json::Object(JsonObject::new()));
    Arc::new(object)
}

/// Rewrites what schemars generates into the plainest JSON Schema clients understand:
/// optional arguments are simply left out (`"type": ["string", "null"]` becomes
/// `"type": "string"`), a choice of documented strings (`oneOf` of `const`s) becomes an
/// `enum` whose values are explained in the description, and doc-comment line breaks
/// become spaces.
fn simplify(v: &mut Json) {
    match v {
        Json::Object(o) => {
            if let Some(Json::Array(types)) = o.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    o.insert("type".into(), only);
                }
            }
            if let Some(Json::Array(choices)) = o.get_mut("anyOf") {
                choices.retain(|c| c.get("type").and_then(Json::as_str) != Some("null"));
                if choices.len() == 1 {
                    let only = choices.remove(0);
                    o.remove("anyOf");
                    if let Json::Object(inner) = only {
                        for (k, val) in inner {
                            o.entry(k).or_insert(val);
                        }
                    }
                }
            }
            if let Some(Json::Array(choices)) = o.get_mut("enum") {
                choices.retain(|c| !c.is_null());
            }
            if let Some(Json::Array(choices)) = o.get("oneOf")
                && !choices.is_empty()
                && choices.iter().all(|c| c.get("const").is_some_and(Json::is_string))
            {
                let values: Vec<Json> =
                    choices.iter().filter_map(|c| c.get("const").cloned()).collect();
                let explained: Vec<String> = choices
                    .iter()
                    .filter_map(|c| {
                        let value = c.get("const")?.as_str()?;
                        let what = c.get("description").and_then(Json::as_str)?;
                        Some(format!("`{value}`: {}", what.trim_end_matches('.')))
                    })
                    .collect();
                o.remove("oneOf");
                o.insert("type".into(), Json::from("string"));
                o.insert("enum".into(), Json::Array(values));
                if !explained.is_empty() {
                    let mut d =
                        o.get("description").and_then(Json::as_str).unwrap_or("").to_owned();
                    if !d.is_empty() {
                        d.push(' ');
                    }
                    d.push_str(&explained.join("; "));
                    o.insert("description".into(), Json::from(d));
                }
            }
            if let Some(Json::String(d)) = o.get_mut("description") {
                *d = d.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            for (_, child) in o.iter_mut() {
                simplify(child);
            }
        }
        Json::Array(a) => a.iter_mut().for_each(simplify),
        _ => {}
    }
}

/// An ACL level, by name.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    /// Only this agent.
    Private,
    /// Members of the record's team.
    Team,
    /// Every agent of this swarm.
    Swarm,
    /// Every authenticated agent of this database, any swarm.
    Public,
    /// System principals and agents with a level-5 grant.
    System,
}

impl From<Level> for AclLevel {
    fn from(l: Level) -> Self {
        match l {
            Level::Private => AclLevel::Private,
            Level::Team => AclLevel::Team,
            Level::Swarm => AclLevel::Swarm,
            Level::Public => AclLevel::Public,
            Level::System => AclLevel::System,
        }
    }
}

/// A team id argument.
pub(crate) fn team(t: Option<&str>) -> Result<Option<TeamId>, ToolError> {
    t.map(|t| TeamId::new(t).map_err(|e| ToolError::invalid(e.to_string()))).transpose()
}

/// A duration in whole seconds, at least one.
pub(crate) fn seconds(what: &str, s: u64) -> Result<std::time::Duration, ToolError> {
    if s == 0 {
        return Err(ToolError::invalid(format!("{what} must be at least 1 second")));
    }
    Ok(std::time::Duration::from_secs(s))
}

/// A limit argument: `default` when absent, 1 to `max`.
pub(crate) fn limit(n: Option<u32>, default: usize, max: usize) -> Result<usize, ToolError> {
    match n {
        None => Ok(default),
        Some(n) if n == 0 || n as usize > max => {
            Err(ToolError::invalid(format!("limit must be 1 to {max}, not {n}")))
        }
        Some(n) => Ok(n as usize),
    }
}

/// A store value as JSON for output: the name of a level instead of its number.
pub(crate) fn level_name(l: AclLevel) -> &'static str {
    l.name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_unique() {
        let tools = all();
        let mut names: Vec<&str> = tools.iter().map(ToolDef::name).collect();
        for n in &names {
            assert!(
                !n.is_empty()
                    && n.len() <= 64
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{n}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), tools.len());
    }

    #[test]
    fn schemas_have_object_roots_and_no_refs() {
        for t in all() {
            let schema = Json::Object((*t.tool.input_schema).clone());
            assert_eq!(schema["type"], "object", "{}", t.name());
            let text = schema.to_string();
            assert!(!text.contains("$ref") && !text.contains("$defs"), "{}: {text}", t.name());
            assert!(!text.contains("\"null\""), "{}: {text}", t.name());
            assert!(!text.contains("oneOf") && !text.contains("\\n"), "{}: {text}", t.name());
        }
    }

    #[test]
    fn unknown_arguments_are_refused() {
        #[derive(Deserialize, JsonSchema)]
        #[schemars(crate = "rmcp::schemars")]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct A {
            key: String,
        }
        let err = serde_json::from_value::<A>(serde_json::json!({ "key": "k", "if_verison": 1 }))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("if_verison"), "{err}");
    }
}
