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
///
/// The file appears complete or not at all (written aside, then moved into place without
/// replacing anything), so processes starting together agree on one secret: the first to
/// move its file into place wins and the others read the winner's.
pub fn read_or_create_secret(path: &Path) -> Result<swarm_coord::SwarmSecret> {
    if std::fs::symlink_metadata(path).is_err() {
        let secret = swarm_coord::SwarmSecret::generate().map_err(|e| Error::Key(e.to_string()))?;
        let text = zeroize::Zeroizing::new(format!(
            "# swarm-memory swarm secret: signs coordination messages. Same on every host.\n{}\n",
            secret.to_hex().as_str()
        ));
        match create_private(path, text.as_bytes()) {
            Ok(()) => return Ok(secret),
            // Another process created it first: read theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::Key(format!("cannot create {}: {e}", path.display()))),
        }
    }
    read_secret(path)
}

/// Reads the swarm secret from an existing secret file (refused when group or others may
/// read it, or when another user owns it), without ever creating one.
pub fn read_secret(path: &Path) -> Result<swarm_coord::SwarmSecret> {
    read_secret_bytes(path).map(|(_, secret)| secret)
}

/// How often, and how far apart, a secret file that looks half written is read again.
const INCOMPLETE_RETRIES: u32 = 10;
const INCOMPLETE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// The secret file's bytes and the secret they hold, from one read of one open file.
pub(crate) fn read_secret_bytes(
    path: &Path,
) -> Result<(zeroize::Zeroizing<Vec<u8>>, swarm_coord::SwarmSecret)> {
    let mut attempt = 0;
    loop {
        let bytes = read_private(path)?;
        let text = std::str::from_utf8(&bytes).unwrap_or("");
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        match swarm_coord::SwarmSecret::parse(line) {
            Ok(secret) => return Ok((bytes, secret)),
            // Files this crate writes appear whole and end in a newline; an empty file or
            // one cut short may be an older writer still at work, so look again briefly.
            // It is never used as it is.
            Err(_)
                if (bytes.is_empty() || !bytes.ends_with(b"\n"))
                    && attempt < INCOMPLETE_RETRIES =>
            {
                attempt += 1;
                std::thread::sleep(INCOMPLETE_PAUSE);
            }
            Err(_) if bytes.is_empty() || !bytes.ends_with(b"\n") => {
                return Err(Error::Key(format!(
                    "swarm secret file {} is empty or incomplete: if no process is writing it, remove it (a new secret is made) or copy the swarm's secret file there",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(Error::Key(format!("swarm secret file {}: {e}", path.display())));
            }
        }
    }
}

/// A key file as the store's keyring source: read again (under the shared lock, with the
/// same permission checks as at open) when another process has rotated the key.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) path: std::path::PathBuf,
}

/// How long a read of the key file again waits for another process's exclusive lock (an
/// append takes microseconds) before it gives up and the store tries again later: the
/// read may run on the thread that holds the database's write lock.
const RELOAD_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

impl swarm_store::KeyringSource for Source {
    fn load(&self) -> std::result::Result<Keyring, String> {
        let bytes =
            read_private_within(&self.path, Some(RELOAD_LOCK_WAIT)).map_err(|e| e.to_string())?;
        parse_bytes(&bytes, &self.path).map_err(|e| e.to_string())
    }
}

/// Reads a key file into a keyring.
pub fn read(path: &Path) -> Result<Keyring> {
    read_key_bytes(path).map(|(_, ring)| ring)
}

/// The key file's bytes and the keyring they hold, from one read of one open file.
pub(crate) fn read_key_bytes(path: &Path) -> Result<(zeroize::Zeroizing<Vec<u8>>, Keyring)> {
    let bytes = read_private(path)?;
    let ring = parse_bytes(&bytes, path)?;
    Ok((bytes, ring))
}

fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Keyring> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::Key(format!("key file {}: not UTF-8 text", path.display())))?;
    parse(text).map_err(|e| Error::Key(format!("key file {}: {e}", path.display())))
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
    create_private(path, text.as_bytes())
        .map_err(|e| Error::Key(format!("cannot create key file {}: {e}", path.display())))?;
    Ok(Keyring::new(KeyId::new(1), key))
}

/// Appends a new key under the next id and makes it active; returns the new id. The old
/// keys stay, so values sealed under them still open (until re-encrypted).
///
/// The file is read and appended to under an exclusive lock, so two rotations at once add
/// two keys with different ids rather than the same id twice (which would make the file
/// unreadable).
pub fn append_new_key(path: &Path) -> Result<KeyId> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Key(format!("cannot open key file {}: {e}", path.display())))?;
    f.lock().map_err(|e| Error::Key(format!("cannot lock key file {}: {e}", path.display())))?;
    // Read under the lock: another rotation may have appended since this process last read
    // the file.
    let text = read_handle(&f, path)?;
    let ring = parse_bytes(&text, path)?;
    let next = ring
        .ids()
        .map(KeyId::get)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| Error::Key("key ids exhausted".into()))?;
    let key = Key::generate().map_err(|e| Error::Key(e.to_string()))?;
    let mut line = zeroize::Zeroizing::new(String::new());
    // A file edited by hand may lack its final newline: the new key must start a line.
    if !text.is_empty() && !text.ends_with(b"\n") {
        line.push('\n');
    }
    let _ = writeln!(line, "{next} {}", key.to_hex().as_str());
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Key(format!("cannot write key file {}: {e}", path.display())))?;
    // Dropping the file releases the lock.
    Ok(KeyId::new(next))
}

const HEADER: &str = "# swarm-memory key file: one key per line, \"<key id> <64 hex digits>\".\n\
# The last key is the active one. Keep this file private (mode 0600) and back it up\n\
# separately from the database: without it, encrypted records cannot be read.\n";

/// Writes `bytes` to a new file at `path`, readable by its owner only (mode 0600), synced
/// to disk. Never replaces a file: an existing `path` is an error.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    create_private(path, bytes)
        .map_err(|e| Error::Key(format!("cannot create {}: {e}", path.display())))
}

/// Creates `path` holding `bytes`, so that it appears complete or not at all: the bytes go
/// to a temporary file (mode 0600) in the same directory, are synced, and the file is then
/// moved to `path` without replacing anything (a rename that refuses an existing name, or a
/// hard link). Fails with `AlreadyExists` when anything is at `path`, a dangling symbolic
/// link included; the temporary file is removed in every case.
fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    // The new name is durable once the directory is synced (best effort: not every
    // platform can open a directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Refuses a key or secret file that group or others may access, or that belongs to
/// another user (on Unix): such a file may already have leaked or been planted, and
/// copying or using it would hide that.
pub fn check_private(path: &Path) -> Result<()> {
    read_private(path).map(drop)
}

/// Opens `path` once, checks the open file (not the name, which may be replaced between a
/// check and a read) and reads it from that same handle, under a shared lock so that a
/// key being appended is never seen half written.
fn read_private(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    read_private_within(path, None)
}

/// [`read_private`], waiting at most `wait` for another process's exclusive lock (`None`:
/// as long as it is held).
fn read_private_within(
    path: &Path,
    wait: Option<std::time::Duration>,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let f = std::fs::File::open(path)
        .map_err(|e| Error::Key(format!("cannot read key file {}: {e}", path.display())))?;
    // A reader only loses the guarantee against a half-written line where locks are not
    // supported; appends are single writes, so reading on is better than failing.
    let unlocked = |e: &dyn std::fmt::Display| {
        tracing::debug!(path = %path.display(), error = %e, "key file not locked for reading");
    };
    match wait {
        None => {
            if let Err(e) = f.lock_shared() {
                unlocked(&e);
            }
        }
        Some(wait) => {
            let deadline = std::time::Instant::now() + wait;
            loop {
                match f.try_lock_shared() {
                    Ok(()) => break,
                    Err(std::fs::TryLockError::WouldBlock)
                        if std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(Error::Key(format!(
                            "key file {} stayed locked by another process",
                            path.display()
                        )));
                    }
                    Err(std::fs::TryLockError::Error(e)) => {
                        unlocked(&e);
                        break;
                    }
                }
            }
        }
    }
    read_handle(&f, path)
}

/// Checks an open key or secret file and reads it from the start.
fn read_handle(mut f: &std::fs::File, path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::{Read as _, Seek as _};
    let meta = f
        .metadata()
        .map_err(|e| Error::Key(format!("cannot read key file {}: {e}", path.display())))?;
    check_metadata(&meta, path)?;
    // Sized up front so that reading does not reallocate and leave copies of the key behind.
    let len = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(len.saturating_add(1)));
    f.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut bytes))
        .map_err(|e| Error::Key(format!("cannot read key file {}: {e}", path.display())))?;
    Ok(bytes)
}

fn check_metadata(meta: &std::fs::Metadata, path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !meta.is_file() {
            return Err(Error::Key(format!("key file {} is not a regular file", path.display())));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Key(format!(
                "key file {} is accessible by others (mode {mode:o}): run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
        // Owned by the user this process runs as, or by root: a file another user planted
        // (a root process can read it whatever its mode) is not this database's key.
        if let Some(me) = current_uid() {
            let owner = meta.uid();
            if owner != me && owner != 0 {
                return Err(Error::Key(format!(
                    "key file {} is owned by another user (uid {owner}, this process runs as uid {me}): run `chown {me} {}` if it is the right file",
                    path.display(),
                    path.display()
                )));
            }
        }
    }
    let _ = (meta, path);
    Ok(())
}

/// The user id this process creates files as, read from a file it creates (std has no
/// `geteuid`, and this crate takes no libc dependency for it). `None`, and no owner check,
/// when no temporary file can be created.
#[cfg(unix)]
fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    static UID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UID.get_or_init(|| {
        let uid = tempfile::tempfile().and_then(|f| f.metadata()).map(|m| m.uid());
        match uid {
            Ok(uid) => Some(uid),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell this process's user id: key file owners are not checked");
                None
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_does_not_wait_long_for_a_key_file_locked_elsewhere() {
        use swarm_store::KeyringSource as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.key");
        let ring = create(&p).unwrap();
        let source = Source { path: p.clone() };
        let holder = std::fs::File::open(&p).unwrap();
        holder.lock().unwrap();
        let started = std::time::Instant::now();
        let e = source.load().unwrap_err();
        assert!(e.contains("stayed locked"), "{e}");
        // Not a speed check: a read that waited for the lock would not return at all.
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
        holder.unlock().unwrap();
        let again = source.load().unwrap();
        assert_eq!(again.ids().collect::<Vec<_>>(), ring.ids().collect::<Vec<_>>());
        assert_eq!(again.key_check(again.active_id()), ring.key_check(ring.active_id()));
    }

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

    fn ids(path: &Path) -> Vec<u32> {
        let mut ids: Vec<u32> = read(path).unwrap().ids().map(KeyId::get).collect();
        ids.sort_unstable();
        ids
    }

    /// Entries of `dir` other than `keep`: temporary files left behind.
    fn strays(dir: &Path, keep: &[&str]) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect()
    }

    #[test]
    fn concurrent_rotations_append_keys_with_different_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.key");
        create(&p).unwrap();
        let (threads, each) = (4, 10);
        let barrier = std::sync::Barrier::new(threads);
        let mut got: Vec<u32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        (0..each)
                            .map(|_| append_new_key(&p).map(KeyId::get).map_err(|e| e.to_string()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).map(|r| r.unwrap()).collect()
        });
        got.sort_unstable();
        let last = u32::try_from(threads * each + 1).unwrap();
        assert_eq!(got, (2..=last).collect::<Vec<_>>(), "one id each");
        assert_eq!(ids(&p), (1..=last).collect::<Vec<_>>(), "the file parses with every key");
        assert_eq!(read(&p).unwrap().active_id(), KeyId::new(last));
    }

    #[test]
    fn a_key_is_appended_on_its_own_line_when_the_file_lacks_a_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.key");
        create(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.trim_end()).unwrap();
        assert_eq!(append_new_key(&p).unwrap(), KeyId::new(2));
        assert_eq!(ids(&p), [1, 2]);
        assert!(std::fs::read_to_string(&p).unwrap().ends_with('\n'));
    }

    #[test]
    fn processes_starting_together_agree_on_one_complete_secret() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("db.swarm-secret");
            let n = 8;
            let barrier = std::sync::Barrier::new(n);
            let secrets: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            match read_or_create_secret(&p) {
                                Ok(secret) => secret.to_hex().as_str().to_owned(),
                                Err(e) => format!("error: {e}"),
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let on_disk = read_secret(&p).unwrap().to_hex().as_str().to_owned();
            for got in &secrets {
                assert_eq!(got, &on_disk, "round {round}");
            }
            assert_eq!(strays(dir.path(), &["db.swarm-secret"]), Vec::<String>::new());
        }
    }

    #[test]
    fn a_new_secret_file_appears_complete_or_not_at_all() {
        for round in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("db.swarm-secret");
            let done = std::sync::atomic::AtomicBool::new(false);
            let seen: Vec<Vec<u8>> = std::thread::scope(|s| {
                // Watchers read the file the moment it has a name, as a process starting
                // then would.
                let watchers: Vec<_> = (0..3)
                    .map(|_| {
                        s.spawn(|| {
                            let mut short = Vec::new();
                            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                                if let Ok(bytes) = std::fs::read(&p) {
                                    if !bytes.ends_with(b"\n") {
                                        short.push(bytes);
                                    }
                                    break;
                                }
                            }
                            short
                        })
                    })
                    .collect();
                std::thread::sleep(std::time::Duration::from_millis(2));
                read_or_create_secret(&p).unwrap();
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                watchers.into_iter().flat_map(|w| w.join().unwrap()).collect()
            });
            assert!(seen.is_empty(), "round {round}: read {} incomplete file(s)", seen.len());
        }
    }

    #[test]
    fn an_empty_or_cut_short_secret_file_is_never_used() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.swarm-secret");
        for text in ["", "# header\n", "0123abcd"] {
            std::fs::write(&p, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            let e = read_or_create_secret(&p).map(drop).unwrap_err().to_string();
            assert!(e.contains(&p.display().to_string()), "{text:?}: {e}");
            assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "never replaced");
        }
    }

    #[test]
    fn a_new_key_or_secret_file_never_replaces_anything() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.key");
        std::fs::write(&p, "kept").unwrap();
        assert!(create(&p).is_err());
        assert!(write_new_private(&p, b"other").is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "kept");
        #[cfg(unix)]
        {
            // Not through a dangling link either.
            let link = dir.path().join("link.key");
            let victim = dir.path().join("victim");
            std::os::unix::fs::symlink(&victim, &link).unwrap();
            assert!(create(&link).is_err());
            assert!(!victim.exists());
            let s = dir.path().join("link.swarm-secret");
            std::os::unix::fs::symlink(&victim, &s).unwrap();
            assert!(read_or_create_secret(&s).is_err());
            assert!(!victim.exists());
        }
        assert_eq!(
            strays(dir.path(), &["db.key", "link.key", "link.swarm-secret"]),
            Vec::<String>::new()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.key");
        create(&p).unwrap();
        // Giving a file away needs root; as any other user the check is the mode check
        // above, and this test has nothing to try.
        if std::os::unix::fs::chown(&p, Some(4242), Some(4242)).is_err() {
            return;
        }
        for e in [read(&p).map(drop), check_private(&p), append_new_key(&p).map(drop)] {
            let e = e.unwrap_err().to_string();
            assert!(e.contains("owned by another user (uid 4242"), "{e}");
        }
        std::os::unix::fs::chown(&p, Some(current_uid().unwrap()), None).unwrap();
        read(&p).unwrap();
    }

    #[test]
    fn key_file_sits_beside_the_database() {
        assert_eq!(key_file_for(Path::new("/a/b/swarm.db")), PathBuf::from("/a/b/swarm.db.key"));
        assert_eq!(key_file_for(Path::new("x.db")), PathBuf::from("x.db.key"));
    }
}
