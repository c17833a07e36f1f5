//! What the user typed that clap cannot check alone: JSON arguments, content read from a
//! file or stdin, and durations counted from now. Every failure here is invalid input
//! (exit 2) and names the option at fault.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use serde_json::Value as Json;
use swarm_memory::{Store, Timestamp};

use crate::exit::{CliError, Result};

/// A clap parser for one of the library's names (`RoundStatus::NAMES` parsed by
/// `RoundStatus::parse`): `--help` lists them, and the value is the library's type.
pub(crate) fn one_of<T: Clone + Send + Sync + 'static>(
    names: &'static [&'static str],
    parse: fn(&str) -> std::result::Result<T, swarm_memory::StoreError>,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(names.iter().copied())
        .try_map(move |s: String| parse(&s))
}

/// A JSON object given to `flag` (`--metadata`, `--config`).
pub(crate) fn json_object(flag: &str, text: &str) -> Result<Json> {
    let v = json_value(flag, text)?;
    if !v.is_object() {
        return Err(CliError::usage(format!("{flag} must be a JSON object")));
    }
    Ok(v)
}

/// Any JSON document given to `flag` (`--result`, an event payload).
pub(crate) fn json_value(flag: &str, text: &str) -> Result<Json> {
    serde_json::from_str(text)
        .map_err(|e| CliError::usage(format!("{flag} is not valid JSON: {e}")))
}

/// All of stdin.
pub(crate) fn stdin_bytes() -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The bytes of `arg`: all of stdin for `-`, else the file it names.
pub(crate) fn file_or_stdin(arg: &Path) -> Result<Vec<u8>> {
    if arg == Path::new("-") {
        return stdin_bytes();
    }
    std::fs::read(arg).map_err(|e| CliError::usage(format!("cannot read {}: {e}", arg.display())))
}

/// `secs` seconds as a duration (clap already refused 0 where 0 makes no sense).
pub(crate) fn seconds(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// `secs` seconds in milliseconds, refused when too large to be a time.
pub(crate) fn millis(flag: &str, secs: u64) -> Result<i64> {
    secs.checked_mul(1000)
        .and_then(|ms| i64::try_from(ms).ok())
        .ok_or_else(|| CliError::usage(format!("{flag} is too far in the future")))
}

/// The moment `secs` seconds from the store's now (`--deadline-in`).
pub(crate) fn from_now(store: &Store, flag: &str, secs: u64) -> Result<Timestamp> {
    Ok(store.now().plus_millis(millis(flag, secs)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_arguments_name_their_flag() {
        assert!(json_object("--metadata", r#"{"a": 1}"#).is_ok());
        let e = json_object("--metadata", "[1]").unwrap_err();
        assert!(e.message().contains("--metadata must be a JSON object"), "{e}");
        let e = json_value("--result", "{").unwrap_err();
        assert!(e.message().starts_with("--result is not valid JSON"), "{e}");
        assert_eq!(e.code(), 2);
        assert_eq!(json_value("--result", "\"done\"").unwrap(), Json::from("done"));
    }

    #[test]
    fn huge_durations_are_refused() {
        assert_eq!(millis("--ttl", 2).unwrap(), 2000);
        assert!(millis("--ttl", u64::MAX / 10).is_err());
    }
}
