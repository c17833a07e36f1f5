//! The key file: where a database's encryption keys live when they do not come from the
//! environment. See docs/FORMAT.md section 3.
//!
//! One key per line, `<key id> <64 hex digits>`; `#` starts a comment; the last key is the
//! active one. Created with mode 0600, and refused when group or others may read it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use swarm_codec::{Key, KeyId, Keyring};

use crate::error::{Error, Result};

/// The key file that belongs to a database file: `<db>.key` beside it.
pub fn key_file_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".key");
    db.with_file_name(name)
}

/// The swarm-secret file that belongs to a database file: `<db>.swarm-secret` beside it.
/// It holds the HMAC secret coordination messages are signed with (docs/FORMAT.md 2).
pub fn secret_file_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".swarm-secret");
    db.with_file_name(name)
}

/// Reads the swarm secret from `path`, creating the file with a fresh secret (mode 0600)
/// when it does not exist. Every process and host of a swarm must use the same secret:
/// copy the file, or set `SWARM_SECRET`.
pub fn read_or_create_secret(path: &Path) -> Result<swarm_coord::SwarmSecret> {
    if !path.exists() {
        let secret = swarm_coord::SwarmSecret::generate().map_err(|e| Error::Key(e.to_string()))?;
        let text = zeroize::Zeroizing::new(format!(
            "# swarm-memory swarm secret: signs coordination messages. Same on every host.\n{}\n",
            secret.to_hex().as_str()
        ));
        match write_new(path, &text) {
            Ok(()) => return Ok(secret),
            // Another process created it first: read theirs.
            Err(_) if path.exists() => {}
            Err(e) => return Err(e),
        }
    }
    read_secret(path)
}

/// Reads the swarm secret from an existing secret file (refused when group or others may
/// read it), without ever creating one.
pub fn read_secret(path: &Path) -> Result<swarm_coord::SwarmSecret> {
    check_permissions(path)?;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::Key(format!("cannot read {}: {e}", path.display())))?,
    );
    let line =
        text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    swarm_coord::SwarmSecret::parse(line)
        .map_err(|e| Error::Key(format!("swarm secret file {}: {e}", path.display())))
}

/// Reads a key file into a keyring.
pub fn read(path: &Path) -> Result<Keyring> {
    check_permissions(path)?;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::Key(format!("cannot read key file {}: {e}", path.display())))?,
    );
    parse(&text).map_err(|e| Error::Key(format!("key file {}: {e}", path.display())))
}

/// Parses key file text.
pub fn parse(text: &str) -> std::result::Result<Keyring, String> {
    let mut ring: Option<Keyring> = None;
    let mut last = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, hex) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("line {}: expected \"<id> <hex key>\"", n + 1))?;
        let id: u32 =
            id.parse().map_err(|_| format!("line {}: key id {id:?} is not a number", n + 1))?;
        let key = Key::from_hex(hex.trim()).map_err(|e| format!("line {}: {e}", n + 1))?;
        let id = KeyId::new(id);
        match &mut ring {
            None => ring = Some(Keyring::new(id, key)),
            Some(r) => r.insert(id, key).map_err(|e| format!("line {}: {e}", n + 1))?,
        }
        last = Some(id);
    }
    let (mut ring, last) = match (ring, last) {
        (Some(r), Some(l)) => (r, l),
        _ => return Err("no key in the file".into()),
    };
    ring.set_active(last).map_err(|e| e.to_string())?;
    Ok(ring)
}

/// Creates a key file holding one fresh key (id 1), readable by its owner only. Fails if
/// the file exists: keys are never overwritten.
pub fn create(path: &Path) -> Result<Keyring> {
    let key = Key::generate().map_err(|e| Error::Key(e.to_string()))?;
    let mut text = zeroize::Zeroizing::new(String::from(HEADER));
    let _ = writeln!(text, "1 {}", key.to_hex().as_str());
    write_new(path, &text)?;
    Ok(Keyring::new(KeyId::new(1), key))
}

/// Appends a new key under the next id and makes it active; returns the new id. The old
/// keys stay, so values sealed under them still open (until re-encrypted).
pub fn append_new_key(path: &Path) -> Result<KeyId> {
    let mut ring = read(path)?;
    let next = ring
        .ids()
        .map(KeyId::get)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| Error::Key("key ids exhausted".into()))?;
    let key = Key::generate().map_err(|e| Error::Key(e.to_string()))?;
    let line = zeroize::Zeroizing::new(format!("{next} {}\n", key.to_hex().as_str()));
    ring.insert(KeyId::new(next), key).map_err(|e| Error::Key(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::Key(format!("cannot open key file {}: {e}", path.display())))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Key(format!("cannot write key file {}: {e}", path.display())))?;
    Ok(KeyId::new(next))
}

const HEADER: &str = "# swarm-memory key file: one key per line, \"<key id> <64 hex digits>\".\n\
# The last key is the active one. Keep this file private (mode 0600) and back it up\n\
# separately from the database: without it, encrypted records cannot be read.\n";

/// Writes `bytes` to a new file at `path`, readable by its owner only (mode 0600), synced
/// to disk. Never replaces a file: an existing `path` is an error.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| Error::Key(format!("cannot create {}: {e}", path.display())))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(Error::Key(format!("cannot write {}: {e}", path.display())));
    }
    Ok(())
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| Error::Key(format!("cannot create key file {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Key(format!("cannot write key file {}: {e}", path.display())))
}

/// Refuses a key or secret file that group or others may access (on Unix): such a file
/// may already have leaked, and copying or using it would hide that.
pub fn check_private(path: &Path) -> Result<()> {
    check_permissions(path)
}

fn check_permissions(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::Key(format!("cannot read key file {}: {e}", path.display())))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Key(format!(
                "key file {} is accessible by others (mode {mode:o}): run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_read_append() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.key");
        let ring = create(&p).unwrap();
        assert_eq!(ring.active_id(), KeyId::new(1));
        assert!(create(&p).is_err(), "never overwritten");
        let again = read(&p).unwrap();
        assert_eq!(again.key_check(KeyId::new(1)), ring.key_check(KeyId::new(1)));
        assert_eq!(append_new_key(&p).unwrap(), KeyId::new(2));
        let both = read(&p).unwrap();
        assert_eq!(both.active_id(), KeyId::new(2));
        assert!(both.contains(KeyId::new(1)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn parse_errors_are_clear_and_never_show_key_material() {
        for (text, want) in [
            ("", "no key"),
            ("1", "expected"),
            ("x 00", "not a number"),
            ("1 abcd", "key"),
            (&format!("1 {}\n1 {}", "0".repeat(64), "1".repeat(64)), "line 2"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains(&"1".repeat(64)));
        }
    }

    #[test]
    fn key_file_sits_beside_the_database() {
        assert_eq!(key_file_for(Path::new("/a/b/swarm.db")), PathBuf::from("/a/b/swarm.db.key"));
        assert_eq!(key_file_for(Path::new("x.db")), PathBuf::from("x.db.key"));
    }
}
