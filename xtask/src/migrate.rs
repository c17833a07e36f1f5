//! `cargo xtask migrate`: upgrade a database file in place, or report its schema version.
//!
//! Applying goes through [`swarm_store::Store::open`], the one migration runner, so xtask
//! cannot upgrade a database differently from the library.
//!
//! `--status` must not change the file, and only `swarm-store` may link SQLite, so it
//! reads the version from the database header instead of opening the database. The schema
//! version is SQLite's `PRAGMA user_version`, which SQLite keeps as a big-endian `u32` at
//! byte offset 60 of the 100-byte header that begins every database file (the header starts
//! with the 16 bytes `"SQLite format 3\0"`). See <https://www.sqlite.org/fileformat.html>,
//! section "The Database Header".
//!
//! One caveat: in WAL mode a committed change lives in the `-wal` file until a checkpoint
//! copies it into the main file. The store checkpoints on shutdown, so the header is
//! current for a database closed cleanly; when a non-empty `-wal` file sits beside the
//! database, `--status` says that the version shown may be behind.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use swarm_store::{Store, StoreConfig};

/// The first bytes of every SQLite 3 database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Length of the database header.
const HEADER_LEN: usize = 100;
/// Offset of the user version (big-endian `u32`) in the header.
const USER_VERSION_OFFSET: usize = 60;

const USAGE: &str =
    "usage: cargo xtask migrate [--create] PATH | cargo xtask migrate --status PATH";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// Apply pending migrations; `create` allows a missing file.
    Apply { path: PathBuf, create: bool },
    /// Report the version only.
    Status { path: PathBuf },
}

fn parse(args: &[String]) -> Result<Mode> {
    let mut create = false;
    let mut status = false;
    let mut path = None;
    for arg in args {
        match arg.as_str() {
            "--create" => create = true,
            "--status" => status = true,
            flag if flag.starts_with('-') => bail!("unknown option `{flag}`\n{USAGE}"),
            p if path.is_none() => path = Some(PathBuf::from(p)),
            extra => bail!("unexpected argument `{extra}`: one database path at a time\n{USAGE}"),
        }
    }
    let Some(path) = path else { bail!("missing database path\n{USAGE}") };
    match (status, create) {
        (true, true) => {
            bail!("--status never changes the file, so it cannot be combined with --create")
        }
        (true, false) => Ok(Mode::Status { path }),
        (false, create) => Ok(Mode::Apply { path, create }),
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    match parse(args)? {
        Mode::Status { path } => status(&path),
        Mode::Apply { path, create } => apply(&path, create),
    }
}

fn status(path: &Path) -> Result<()> {
    if !path.try_exists().with_context(|| format!("checking {}", path.display()))? {
        bail!("{} does not exist", path.display());
    }
    let found = read_user_version(path)?;
    let latest = swarm_schema::latest_version();
    println!("{}: schema version {found}", path.display());
    println!("latest schema version known to this build: {latest}");
    let verdict = match found {
        0 if latest > 0 => "not initialized: every migration is pending".to_owned(),
        v if v == latest => "up to date".to_owned(),
        v if v < latest => format!(
            "{} migration(s) pending: run cargo xtask migrate {}",
            latest - v,
            path.display()
        ),
        _ => "newer than this build: it cannot open this database; upgrade swarm-memory".to_owned(),
    };
    println!("{verdict}");
    if wal_is_pending(path) {
        println!(
            "note: {} has a non-empty write-ahead log; the version above may be behind until it is checkpointed",
            path.display()
        );
    }
    Ok(())
}

fn apply(path: &Path, create: bool) -> Result<()> {
    let exists = path.try_exists().with_context(|| format!("checking {}", path.display()))?;
    if exists {
        // Refuse a file that is not SQLite, or one too new for this build, before the store
        // touches it (opening switches the journal mode, which rewrites the header).
        let found = read_user_version(path)?;
        let latest = swarm_schema::latest_version();
        if found > latest {
            bail!(
                "{}: schema version {found} is newer than this build supports ({latest}); upgrade swarm-memory",
                path.display()
            );
        }
    } else if !create {
        bail!("{} does not exist (pass --create to create a new database)", path.display());
    }
    let mut config = StoreConfig::file(path).with_encrypt_up_to(None).with_sweep_interval(None);
    if !create {
        config = config.must_exist();
    }
    let store = Store::open(config).with_context(|| format!("migrating {}", path.display()))?;
    let report = store.migration();
    store.shutdown().with_context(|| format!("closing {}", path.display()))?;
    if report.from == report.to {
        println!(
            "{}: schema version {} -> {} (already up to date)",
            path.display(),
            report.from,
            report.to
        );
    } else {
        println!("{}: schema version {} -> {}", path.display(), report.from, report.to);
    }
    Ok(())
}

/// The schema version recorded in the header of the database file at `path`.
fn read_user_version(path: &Path) -> Result<u32> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    file.by_ref()
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .with_context(|| format!("reading {}", path.display()))?;
    user_version(&header).with_context(|| format!("{} is not a usable database", path.display()))
}

/// The user version from the first bytes of a database file.
fn user_version(header: &[u8]) -> Result<u32> {
    // SQLite treats a zero-length file as an empty database and writes the header on the
    // first change, so an empty file is a database at version 0.
    if header.is_empty() {
        return Ok(0);
    }
    if !header.starts_with(MAGIC) {
        bail!("not an SQLite database (the file does not start with \"SQLite format 3\")");
    }
    if header.len() < HEADER_LEN {
        bail!("truncated SQLite header: {} bytes, expected {HEADER_LEN}", header.len());
    }
    let bytes: [u8; 4] = header[USER_VERSION_OFFSET..USER_VERSION_OFFSET + 4]
        .try_into()
        .context("header slice has the wrong length")?;
    Ok(u32::from_be_bytes(bytes))
}

/// Whether a non-empty `-wal` file sits beside the database.
fn wal_is_pending(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).is_ok_and(|m| m.len() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn header_with_version(version: u32) -> Vec<u8> {
        let mut header = vec![0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[USER_VERSION_OFFSET..USER_VERSION_OFFSET + 4]
            .copy_from_slice(&version.to_be_bytes());
        header
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            parse(&args(&["a.db"])).unwrap(),
            Mode::Apply { path: "a.db".into(), create: false }
        );
        assert_eq!(
            parse(&args(&["--create", "a.db"])).unwrap(),
            Mode::Apply { path: "a.db".into(), create: true }
        );
        assert_eq!(
            parse(&args(&["--status", "a.db"])).unwrap(),
            Mode::Status { path: "a.db".into() }
        );
        assert_eq!(
            parse(&args(&["a.db", "--status"])).unwrap(),
            Mode::Status { path: "a.db".into() }
        );
    }

    #[test]
    fn rejects_bad_command_lines() {
        for bad in [
            &[][..],
            &["--status"],
            &["a.db", "b.db"],
            &["--force", "a.db"],
            &["--status", "--create", "a.db"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn reads_the_version_big_endian_at_offset_60() {
        assert_eq!(user_version(&header_with_version(1)).unwrap(), 1);
        assert_eq!(user_version(&header_with_version(0x0102_0304)).unwrap(), 0x0102_0304);
        assert_eq!(user_version(&[]).unwrap(), 0);
    }

    #[test]
    fn refuses_files_that_are_not_sqlite() {
        let err = user_version(b"this is a text file, long enough to hold a header if it were one......................").unwrap_err();
        assert!(err.to_string().contains("not an SQLite database"), "{err}");
        let err = user_version(&header_with_version(3)[..40]).unwrap_err();
        assert!(err.to_string().contains("truncated SQLite header: 40 bytes"), "{err}");
    }

    #[test]
    fn create_then_status_reads_the_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.db");

        let err = apply(&path, false).unwrap_err();
        assert!(err.to_string().contains("does not exist (pass --create"), "{err}");
        assert!(!path.exists(), "a refused migrate must not create the file");

        apply(&path, true).unwrap();
        assert_eq!(read_user_version(&path).unwrap(), swarm_schema::latest_version());
        // Running again is a no-op that still succeeds.
        apply(&path, false).unwrap();
        assert_eq!(read_user_version(&path).unwrap(), swarm_schema::latest_version());

        let newer = dir.path().join("newer.db");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[USER_VERSION_OFFSET..USER_VERSION_OFFSET + 4]
            .copy_from_slice(&(swarm_schema::latest_version() + 1).to_be_bytes());
        std::fs::write(&newer, &bytes).unwrap();
        let err = apply(&newer, false).unwrap_err();
        assert!(err.to_string().contains("newer than this build supports"), "{err}");
        assert_eq!(std::fs::read(&newer).unwrap(), bytes, "the newer database was changed");

        let text = dir.path().join("notes.db");
        std::fs::write(&text, "not a database").unwrap();
        let err = apply(&text, false).unwrap_err();
        assert!(format!("{err:#}").contains("not an SQLite database"), "{err:#}");
        assert_eq!(
            std::fs::read_to_string(&text).unwrap(),
            "not a database",
            "the file was changed"
        );
    }
}
