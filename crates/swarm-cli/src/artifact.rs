//! `artifact ...`: named, versioned outputs of agents and tasks, as the authenticated
//! agent. Content is stored sealed like memory values (compressed, and encrypted at the
//! private and team levels), with a BLAKE3 content hash.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::json;
use swarm_memory::{AclLevel, Artifact, ArtifactFilter, ArtifactInfo, ArtifactSpec, TeamId};

use crate::exit::{CliError, Result};
use crate::input;
use crate::open::AgentCtx;
use crate::output::{self, Reply, to_json};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Subcommand)]
pub(crate) enum ArtifactCommand {
    /// Store a new version of an artifact from a file or stdin (private unless --level)
    Put(PutArgs),
    /// Write an artifact's content to stdout or a file (the newest version unless
    /// --version); with --json, its description and the content in base64
    // `--version` here is the artifact's, not the program's.
    #[command(disable_version_flag = true)]
    Get(GetArgs),
    /// List artifact versions the agent can see, newest first
    List(ListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// The artifact's name (versions share it)
    name: String,
    /// The file to store, or `-` for stdin
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
    /// The format: a MIME type or a short name such as `markdown` [default: guessed from
    /// the file's extension, else application/octet-stream]
    #[arg(long, value_name = "F")]
    format: Option<String>,
    /// The task it is an output of
    #[arg(long, value_name = "ID")]
    task: Option<String>,
    /// ACL level: 1-5 or private, team, swarm, public, system [default: private]
    #[arg(long)]
    level: Option<AclLevel>,
    /// The artifact's team (for team-level artifacts)
    #[arg(long)]
    team: Option<TeamId>,
    /// Metadata: a JSON object
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The artifact's name, or the id of one version (`art_...`)
    #[arg(value_name = "NAME_OR_ID")]
    name: String,
    /// This version of the named artifact instead of the newest (the most recently stored
    /// one, when writers who could not see each other's versions made several)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    version: Option<u64>,
    /// Write the content to this file (created or replaced) instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only versions of this name
    #[arg(long, value_name = "N")]
    name: Option<String>,
    /// Only outputs of this task
    #[arg(long, value_name = "T")]
    task: Option<String>,
    /// Only the newest version of each name
    #[arg(long)]
    latest: bool,
    /// Print at most this many
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
}

pub(crate) fn run(ctx: &AgentCtx, c: ArtifactCommand) -> Result<Reply> {
    match c {
        ArtifactCommand::Put(a) => put(ctx, a),
        ArtifactCommand::Get(a) => get(ctx, a),
        ArtifactCommand::List(a) => list(ctx, a),
    }
}

/// A format for common file extensions.
fn guess_format(file: &Path) -> Option<&'static str> {
    let ext = file.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "md" | "markdown" => "text/markdown",
        "txt" | "log" => "text/plain",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "yaml" | "yml" => "application/yaml",
        "toml" => "application/toml",
        "rs" => "text/x-rust",
        "py" => "text/x-python",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

fn describe(i: &ArtifactInfo) -> String {
    output::fields(&[
        ("id", i.id.clone()),
        ("name", i.name.clone()),
        ("version", i.version.to_string()),
        ("previous", output::opt(i.previous.as_ref())),
        ("format", i.format.clone()),
        ("size", format!("{} bytes", i.size)),
        ("task", output::opt(i.task.as_ref())),
        ("swarm", i.swarm.to_string()),
        ("level", output::level(i.level)),
        ("owner", output::opt(i.owner.as_ref())),
        ("team", output::opt(i.team.as_ref())),
        ("metadata", i.metadata.to_string()),
        ("stored", output::time(i.created_at.as_millis())),
    ])
}

fn put(ctx: &AgentCtx, a: PutArgs) -> Result<Reply> {
    ctx.write_swarm()?;
    let content = input::file_or_stdin(&a.file)?;
    let format = a
        .format
        .or_else(|| guess_format(&a.file).map(str::to_owned))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let mut spec = ArtifactSpec::new(a.name, content).format(format);
    if let Some(t) = a.task {
        spec = spec.task(t);
    }
    if let Some(l) = a.level {
        spec = spec.level(l);
    }
    if let Some(t) = a.team {
        spec = spec.team(t);
    }
    if let Some(m) = &a.metadata {
        spec = spec.metadata(input::json_object("--metadata", m)?);
    }
    let info = ctx.store().store_artifact(ctx.identity(), spec)?;
    let text =
        format!("stored artifact {} version {}\n{}", info.name, info.version, describe(&info));
    Ok(Reply::new(json!({ "artifact": to_json(&info)? }), text))
}

/// The same words whether the artifact is absent or invisible to the agent.
fn not_found(name: &str, version: Option<u64>) -> CliError {
    match version {
        Some(v) => CliError::not_found(format!("artifact {name} version {v} not found")),
        None => CliError::not_found(format!("artifact {name} not found")),
    }
}

/// A version by id, else the newest (or `version`) of a name.
fn find(ctx: &AgentCtx, name: &str, version: Option<u64>) -> Result<Artifact> {
    let (store, who) = (ctx.store(), ctx.identity());
    let found = match version {
        None => match store.get_artifact(who, name)? {
            Some(a) => Some(a),
            None => store.latest_artifact(who, name)?,
        },
        Some(v) => {
            let filter = ArtifactFilter {
                name: Some(name.to_owned()),
                limit: Some(1000),
                ..ArtifactFilter::default()
            };
            match store.list_artifacts(who, &filter)?.into_iter().find(|i| i.version == v) {
                Some(info) => store.get_artifact(who, &info.id)?,
                None => None,
            }
        }
    };
    found.ok_or_else(|| not_found(name, version))
}

fn get(ctx: &AgentCtx, a: GetArgs) -> Result<Reply> {
    let art = find(ctx, &a.name, a.version)?;
    let info = to_json(&art.info)?;
    match (&a.output, ctx.json) {
        (Some(path), _) => {
            write_file(path, &art.content)?;
            let text = format!(
                "wrote {} bytes of artifact {} version {} to {}",
                art.content.len(),
                art.info.name,
                art.info.version,
                path.display()
            );
            let doc = json!({
                "artifact": info,
                "content_hash": art.content_hash,
                "output": path.display().to_string(),
            });
            Ok(Reply::new(doc, text))
        }
        (None, true) => {
            let doc = json!({
                "artifact": info,
                "content_hash": art.content_hash,
                "content_base64": BASE64.encode(&art.content),
            });
            Ok(Reply::new(doc, String::new()))
        }
        (None, false) => Ok(Reply::raw(art.content)),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| CliError::io(path, &e);
    let mut f = std::fs::File::create(path).map_err(fail)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(fail)
}

fn list(ctx: &AgentCtx, a: ListArgs) -> Result<Reply> {
    let filter = ArtifactFilter {
        name: a.name,
        task: a.task,
        owner: None,
        latest_only: a.latest,
        limit: Some(usize::try_from(a.limit).unwrap_or(1000)),
    };
    let items = ctx.store().list_artifacts(ctx.identity(), &filter)?;
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.version.to_string(),
                i.id.clone(),
                i.format.clone(),
                i.size.to_string(),
                output::opt(i.owner.as_ref()),
                output::time(i.created_at.as_millis()),
            ]
        })
        .collect();
    let text = if items.is_empty() {
        "no artifacts".to_owned()
    } else {
        output::table(&["NAME", "VERSION", "ID", "FORMAT", "BYTES", "OWNER", "STORED"], &rows)
    };
    Ok(Reply::new(json!({ "artifacts": to_json(&items)? }), text))
}
