//! What a tool call returns: a complete `structuredContent` object and its text mirror, or
//! an error result a model can act on. The only place that decides how a store error
//! reads to a model.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value as Json, json};
use swarm_memory::{Error, RegistryError, StoreError};

/// Characters of structured content a listing may fill before it stops and hands out a
/// cursor. The text mirror repeats the content (JSON-escaped, so a little longer), which
/// keeps a whole response under about 20 000 characters: far below the 25 000 tokens
/// Claude Code accepts from one tool call by default.
pub(crate) const PAGE_BUDGET: usize = 8_000;

/// A successful result: one JSON object, sent as `structuredContent` and, serialized, as
/// the text block clients without structured output read.
#[derive(Debug)]
pub(crate) struct Reply(serde_json::Map<String, Json>);

impl Reply {
    /// A reply from a JSON object; anything else is wrapped as `{"result": ...}`, so the
    /// structured content is always an object as MCP requires.
    pub(crate) fn new(value: Json) -> Self {
        match value {
            Json::Object(map) => Reply(map),
            other => {
                let mut map = serde_json::Map::new();
                map.insert("result".into(), other);
                Reply(map)
            }
        }
    }

    pub(crate) fn into_result(self) -> CallToolResult {
        let value = Json::Object(self.0);
        let mut r = CallToolResult::success(vec![ContentBlock::text(value.to_string())]);
        r.structured_content = Some(value);
        r
    }
}

/// A failure the model can act on, returned as a tool result with `isError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolError {
    /// A short snake_case name: `not_found`, `permission_denied`, `conflict`,
    /// `invalid_input`, `blocked`, `unauthenticated`, `busy`, `unavailable`.
    pub(crate) kind: &'static str,
    /// What happened and what to do about it, in one line.
    pub(crate) message: String,
}

impl ToolError {
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// Invalid input: the arguments break a rule the tool documents.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }

    /// Absent or not visible: the same words for both, so that a hidden record's existence
    /// stays hidden.
    pub(crate) fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            "not_found",
            format!(
                "{what} was not found: it does not exist, has expired, or is not visible to this agent"
            ),
        )
    }

    pub(crate) fn into_result(self) -> CallToolResult {
        let text = format!("{}: {}", self.kind, self.message);
        let mut r = CallToolResult::error(vec![ContentBlock::text(text)]);
        r.structured_content =
            Some(json!({ "error": { "kind": self.kind, "message": self.message } }));
        r
    }
}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        match e {
            Error::Registry(RegistryError::Authentication | RegistryError::Inactive { .. }) => {
                unauthenticated()
            }
            Error::Registry(RegistryError::Invalid(m)) => ToolError::invalid(m),
            Error::Registry(RegistryError::Store(s)) | Error::Store(s) => s.into(),
            Error::Closed => ToolError::new("unavailable", "the server is shutting down"),
            other => ToolError::new("unavailable", other.to_string()),
        }
    }
}

/// The identity this server was started with no longer authenticates.
pub(crate) fn unauthenticated() -> ToolError {
    ToolError::new(
        "unauthenticated",
        "this server's agent can no longer act (its token was rotated or revoked, or the agent was \
         suspended or removed): nothing was done; ask the operator, then restart the server with a \
         valid SWARM_AGENT_TOKEN",
    )
}

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ToolError::not_found(what),
            StoreError::PermissionDenied(why) => ToolError::new(
                "permission_denied",
                format!(
                    "{why}: this agent's grants do not allow it; ask the operator for a grant, or use a level you may write (see whoami)"
                ),
            ),
            StoreError::Conflict { key, expected, found } => ToolError::new(
                "conflict",
                format!(
                    "{key}: expected {expected}, found {found}; nothing was changed: read the current state again and retry with its version or fencing token"
                ),
            ),
            StoreError::Blocked(why) => {
                ToolError::new("blocked", format!("{why}: try again when they are completed"))
            }
            StoreError::Invalid(m) => ToolError::invalid(m),
            e @ (StoreError::NotAnInteger(_) | StoreError::Overflow(_)) => {
                ToolError::invalid(e.to_string())
            }
            StoreError::InactiveAgent(_) => unauthenticated(),
            StoreError::Busy => ToolError::new(
                "busy",
                "the database stayed locked by other processes: nothing was changed; retry shortly",
            ),
            other => ToolError::new("unavailable", other.to_string()),
        }
    }
}

/// What a tool call produced.
pub(crate) type Outcome = Result<Reply, ToolError>;

/// The length of `v` serialized, in characters (bytes of ASCII-escaped JSON are close
/// enough: serde_json escapes only quotes, backslashes and control characters).
pub(crate) fn json_len(v: &Json) -> usize {
    v.to_string().chars().count()
}

/// `text` cut to at most `max` characters, with `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_objects_mirrored_as_text() {
        let r = Reply::new(json!([1, 2])).into_result();
        assert_eq!(r.structured_content, Some(json!({ "result": [1, 2] })));
        assert_eq!(r.is_error, Some(false));
        let text = r.content[0].as_text().map(|t| t.text.clone()).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Json>(&text).ok(), r.structured_content);
    }

    #[test]
    fn errors_lead_with_their_kind() {
        let r = ToolError::from(StoreError::NotFound("memory default/n/k".into())).into_result();
        assert_eq!(r.is_error, Some(true));
        let text = r.content[0].as_text().map(|t| t.text.clone()).unwrap_or_default();
        assert!(text.starts_with("not_found: memory default/n/k was not found"), "{text}");
        let e = ToolError::from(StoreError::Conflict {
            key: "k".into(),
            expected: "version 3".into(),
            found: "version 4".into(),
        });
        assert_eq!(e.kind, "conflict");
        assert!(e.message.contains("retry with its version"), "{}", e.message);
        assert_eq!(ToolError::from(StoreError::InactiveAgent("a".into())).kind, "unauthenticated");
    }

    #[test]
    fn clipping_counts_characters() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo wörld", 5), "héll…");
    }
}
