//! `init`, `grant` and `revoke`: the operator sets the database up and decides who may do
//! what. All run as the system principal.

use clap::Args;
use serde_json::json;
use swarm_memory::{AclLevel, Action, AgentId, Identity, ResourceType, SwarmMemory, keyfile};

use crate::Global;
use crate::exit::{CliError, Result};
use crate::open;
use crate::output::{self, Reply};

/// Creates what is missing (database, key file, swarm) and describes the result.
pub(crate) fn init(g: &Global) -> Result<Reply> {
    g.require_file("init")?;
    let db_existed = g.db.exists();
    let key_file = keyfile::key_file_for(&g.db);
    let key_existed = key_file.exists();
    let system = g.builder()?.open()?;
    let described = Ok(describe_init(&system, db_existed, key_existed, system.swarm_created()));
    open::finish(&system, described)
}

fn describe_init(
    system: &SwarmMemory,
    db_existed: bool,
    key_existed: bool,
    swarm_created: bool,
) -> Reply {
    let db = system.database().map(|p| p.display().to_string()).unwrap_or_default();
    let key_file = system.key_file().map(|p| p.display().to_string());
    let key_created = key_file.is_some() && !key_existed;
    let schema = system.store().migration().to;
    let swarm = system.swarm().to_string();
    let headline = if db_existed {
        format!("database {db} already exists")
    } else {
        format!("created database {db}")
    };
    let key_line = match &key_file {
        Some(k) if key_created => {
            format!("{k} (created, mode 0600: back it up apart from the database)")
        }
        Some(k) => k.clone(),
        None => "none: the key comes from SQLITE_ENCRYPTION_KEY".to_owned(),
    };
    let swarm_line = if swarm_created {
        format!("{swarm} (created)")
    } else {
        format!("{swarm} (already exists)")
    };
    let text = format!(
        "{headline}\n{}",
        output::fields(&[
            ("key file", key_line),
            ("schema version", schema.to_string()),
            ("swarm", swarm_line),
        ])
    );
    let doc = json!({
        "database": db,
        "created": !db_existed,
        "key_file": key_file,
        "key_file_created": key_created,
        "key_source": if key_file.is_some() { "file" } else { "environment" },
        "schema_version": schema,
        "swarm": swarm,
        "swarm_created": swarm_created,
    });
    Reply::new(doc, text)
}

/// `grant AGENT RESOURCE LEVEL ACTION[,ACTION...]`.
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// The agent
    #[arg(value_name = "AGENT")]
    who: AgentId,
    /// Resource type: memory, task, event, consensus, artifact, metrics, audit or system
    resource: ResourceType,
    /// Highest ACL level covered: 1-5 or private, team, swarm, public, system
    level: AclLevel,
    /// Actions, comma-separated: read, write, delete, vote, admin
    #[arg(value_delimiter = ',', required = true, value_name = "ACTION")]
    actions: Vec<Action>,
    /// The grant lapses after this many seconds
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    expires: Option<u64>,
}

pub(crate) fn grant(system: &SwarmMemory, a: GrantArgs) -> Result<Reply> {
    let expires_at = match a.expires {
        Some(secs) => {
            let ms = secs
                .checked_mul(1000)
                .and_then(|ms| i64::try_from(ms).ok())
                .ok_or_else(|| CliError::usage("--expires is too far in the future"))?;
            Some(system.store().now().plus_millis(ms))
        }
        None => None,
    };
    system.grant_permission_until(&a.who, a.resource, a.level, &a.actions, expires_at)?;
    let actions: Vec<&str> = a.actions.iter().map(|x| x.as_str()).collect();
    let until = expires_at.map(|t| format!(", until {}", output::time(t.as_millis())));
    let text = format!(
        "granted agent {} {} on {} up to level {} ({}){}",
        a.who,
        actions.join(", "),
        a.resource,
        a.level.as_u8(),
        a.level,
        until.unwrap_or_default()
    );
    let doc = json!({
        "agent": a.who,
        "resource": a.resource,
        "level": a.level,
        "actions": actions,
        "expires_at": expires_at,
    });
    Ok(Reply::new(doc, text))
}

/// `revoke AGENT RESOURCE LEVEL [--action A[,A...]]`.
#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The agent
    #[arg(value_name = "AGENT")]
    who: AgentId,
    /// Resource type: memory, task, event, consensus, artifact, metrics, audit or system
    resource: ResourceType,
    /// The level of the grants to take away (exactly this one): 1-5 or a level name
    level: AclLevel,
    /// Only these actions, comma-separated (default: every action)
    #[arg(long = "action", value_delimiter = ',', value_name = "ACTION")]
    actions: Vec<Action>,
}

pub(crate) fn revoke(system: &SwarmMemory, a: RevokeArgs) -> Result<Reply> {
    let only = (!a.actions.is_empty()).then_some(a.actions.as_slice());
    let n = system.registry().revoke_permission(
        &Identity::System,
        &a.who,
        a.resource,
        a.level,
        only,
    )?;
    if n == 0 {
        return Err(CliError::not_found(format!(
            "agent {} has no such grant on {} at level {} to revoke",
            a.who,
            a.resource,
            a.level.as_u8()
        )));
    }
    let text = format!(
        "revoked {n} grant{} of agent {} on {} at level {} ({})",
        if n == 1 { "" } else { "s" },
        a.who,
        a.resource,
        a.level.as_u8(),
        a.level
    );
    let doc = json!({ "agent": a.who, "resource": a.resource, "level": a.level, "revoked": n });
    Ok(Reply::new(doc, text))
}
