//! Restoring a backup with what belongs beside the database: the key file that opens its
//! encrypted values and the swarm secret its coordination messages are signed with.
//!
//! A backup holds neither (the key must not travel with the data it protects). Without
//! the key file the restored database cannot be read; without the secret file the first
//! open would create a fresh secret, and the other hosts of the swarm would reject every
//! message the restored node signs. [`SwarmMemory::restore`] copies both from beside the
//! backup or from the database the backup was taken from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use swarm_codec::{Key, KeyId, Keyring};
use swarm_store::{BackupReport, Progress, Store, StoreConfig, StoreError};

use crate::config::{Builder, KeySource};
use crate::error::{Error, Result};
use crate::keyfile;
use crate::system::SwarmMemory;

/// How [`SwarmMemory::restore`] provides the restored database with its key and secret.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    key: KeySource,
    secret_given: bool,
    original: Option<PathBuf>,
}

impl RestoreOptions {
    /// Copy the key file and the swarm secret file (from beside the backup, else from
    /// beside the [original](RestoreOptions::original) database).
    pub fn new() -> Self {
        Self::default()
    }

    /// As `builder` would open the restored database: a key from `SQLITE_ENCRYPTION_KEY`
    /// (or any explicit key) and a secret from `SWARM_SECRET` are not files, so nothing is
    /// copied for them; the key still checks that it opens the restored database.
    pub fn from_builder(builder: &Builder) -> Self {
        Self {
            key: builder.key.clone(),
            secret_given: builder.swarm_secret.is_some(),
            original: None,
        }
    }

    /// Where the key comes from (see [`KeySource`]): `Auto` copies `<backup>.key` or the
    /// original's key file to `<target>.key`; `File(p)` uses (and does not copy) `p`; key
    /// text or a keyring is used as is; `None` restores an unencrypted database.
    pub fn key(mut self, key: KeySource) -> Self {
        self.key = key;
        self
    }

    /// The swarm secret is provided otherwise (`SWARM_SECRET`): no secret file is copied.
    pub fn secret_given(mut self) -> Self {
        self.secret_given = true;
        self
    }

    /// The database the backup was taken from: its key file and secret file are copied
    /// when none lie beside the backup.
    pub fn original(mut self, db: impl Into<PathBuf>) -> Self {
        self.original = Some(db.into());
        self
    }
}

/// What happened to one of the files beside the restored database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileOutcome {
    /// Copied from `from` to `to` (mode 0600).
    Copied {
        /// The file copied.
        from: PathBuf,
        /// The new file beside the restored database.
        to: PathBuf,
    },
    /// A file was already at `path` and was kept (never overwritten).
    Present {
        /// The file.
        path: PathBuf,
    },
    /// Not needed: the key or secret comes from elsewhere (the environment, a keyring, an
    /// explicit key file).
    NotNeeded,
    /// None found to copy: put one at `path` (mode 0600) before opening the database.
    Missing {
        /// Where it belongs.
        path: PathBuf,
    },
}

/// What [`SwarmMemory::restore`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The database copy.
    pub database: BackupReport,
    /// The key file.
    pub key_file: FileOutcome,
    /// The swarm secret file.
    pub secret_file: FileOutcome,
    /// Whether the restored database was opened with its key (and its schema brought up
    /// to date): false only when the key is missing.
    pub verified: bool,
}

/// One file to copy: checked before anything is written.
struct Planned {
    from: PathBuf,
    to: PathBuf,
    bytes: zeroize::Zeroizing<Vec<u8>>,
}

/// What to do about one file, and (for the key) the keyring it yields.
enum Plan {
    Copy(Planned),
    Present(PathBuf),
    NotNeeded,
    Missing(PathBuf),
}

/// Files created by this restore, removed again if a later step fails. A path is recorded
/// only once this call's exclusive create (or no-replace move) made it, so an undo never
/// removes a file another process put there.
#[derive(Default)]
struct Created(Vec<PathBuf>);

impl Created {
    fn undo(&mut self) {
        for p in self.0.drain(..).rev() {
            let _ = std::fs::remove_file(&p);
        }
    }
}

fn candidates(backup: &Path, original: Option<&Path>, name: fn(&Path) -> PathBuf) -> Vec<PathBuf> {
    std::iter::once(name(backup)).chain(original.map(name)).collect()
}

/// Whether anything is at `path`, a dangling symbolic link included.
fn occupied(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Finds the file to copy to `dest` among `sources`. `read` reads a file once, checking
/// its permissions and content, and returns its bytes with what they hold: the bytes
/// checked are the bytes copied, and what they hold is what the restore uses.
fn plan_copy<T>(
    dest: PathBuf,
    sources: Vec<PathBuf>,
    read: impl Fn(&Path) -> Result<(zeroize::Zeroizing<Vec<u8>>, T)>,
) -> Result<(Plan, Option<T>)> {
    if occupied(&dest) {
        let (_, held) = read(&dest)?;
        return Ok((Plan::Present(dest), Some(held)));
    }
    let Some(from) = sources.into_iter().find(|p| occupied(p)) else {
        return Ok((Plan::Missing(dest), None));
    };
    let (bytes, held) = read(&from)?;
    Ok((Plan::Copy(Planned { from, to: dest, bytes }), Some(held)))
}

fn outcome(plan: &Plan) -> FileOutcome {
    match plan {
        Plan::Copy(p) => FileOutcome::Copied { from: p.from.clone(), to: p.to.clone() },
        Plan::Present(path) => FileOutcome::Present { path: path.clone() },
        Plan::NotNeeded => FileOutcome::NotNeeded,
        Plan::Missing(path) => FileOutcome::Missing { path: path.clone() },
    }
}

impl SwarmMemory {
    /// Restores `backup` into a new database file `target` (refused if it exists) and gives
    /// it what it needs beside it: the key file (`<target>.key`) and the swarm secret file
    /// (`<target>.swarm-secret`), each copied from beside the backup or from beside the
    /// [original](RestoreOptions::original) database, with mode 0600. A source readable by
    /// group or others is refused; an existing key or secret file beside `target` is kept,
    /// never overwritten. The restored database is then opened with its key to prove it
    /// fits. Any failure removes everything this call created, so nothing is left half
    /// restored. Needs no open system; `progress` sees pages copied.
    pub fn restore(
        backup: &Path,
        target: &Path,
        options: &RestoreOptions,
        progress: impl FnMut(Progress),
    ) -> Result<RestoreReport> {
        if occupied(target) {
            return Err(Error::Store(StoreError::Invalid(format!(
                "{} exists: restore into a new path (a restore never overwrites a database)",
                target.display()
            ))));
        }
        if !occupied(backup) {
            return Err(Error::Store(StoreError::NotFound(format!("backup {}", backup.display()))));
        }
        let original = options.original.as_deref();
        // Everything is checked before anything is written.
        let (key_plan, keyring) = match &options.key {
            KeySource::Auto => {
                let (plan, ring) = plan_copy(
                    keyfile::key_file_for(target),
                    candidates(backup, original, keyfile::key_file_for),
                    keyfile::read_key_bytes,
                )?;
                (plan, ring.map(Arc::new))
            }
            KeySource::File(p) => (Plan::NotNeeded, Some(Arc::new(keyfile::read(p)?))),
            KeySource::Text(t) => {
                let key =
                    Key::parse(t).map_err(|e| Error::Key(format!("SQLITE_ENCRYPTION_KEY: {e}")))?;
                (Plan::NotNeeded, Some(Arc::new(Keyring::new(KeyId::new(1), key))))
            }
            KeySource::Keyring(k) => (Plan::NotNeeded, Some(Arc::clone(k))),
            KeySource::None => (Plan::NotNeeded, None),
        };
        let secret_plan = if options.secret_given {
            Plan::NotNeeded
        } else {
            plan_copy(
                keyfile::secret_file_for(target),
                candidates(backup, original, keyfile::secret_file_for),
                keyfile::read_secret_bytes,
            )?
            .0
        };

        // The database is restored and checked in a private directory beside `target`
        // (swarm-store checks the backup's integrity and the copy's), then opened there
        // with its key to prove the key fits: a key whose check value differs is refused.
        // Nothing is at `target` until all of that succeeded.
        let staged = swarm_store::stage_restore(backup, target, progress)?;
        let verified = match (&key_plan, &keyring) {
            (Plan::Missing(_), _) => false,
            (_, Some(ring)) => {
                verify(staged.path(), Some(Arc::clone(ring))).map_err(|e| {
                    Error::Key(format!(
                        "it does not open the restored database ({e}): restore with the key file of the database the backup was taken from"
                    ))
                })?;
                true
            }
            (_, None) => {
                verify(staged.path(), None)?;
                true
            }
        };
        let mut created = Created::default();
        let result = (|| {
            // Moved into place only if nothing is at `target` (a concurrent restore's file
            // or a planted link makes this fail, and is left alone).
            let database = staged.publish()?;
            created.0.push(target.to_path_buf());
            for plan in [&key_plan, &secret_plan] {
                if let Plan::Copy(p) = plan {
                    keyfile::write_new_private(&p.to, &p.bytes)?;
                    created.0.push(p.to.clone());
                }
            }
            Ok(RestoreReport {
                database,
                key_file: outcome(&key_plan),
                secret_file: outcome(&secret_plan),
                verified,
            })
        })();
        if result.is_err() {
            created.undo();
        }
        result
    }
}

/// Opens the restored database as it will be opened (migrations included), and closes it.
fn verify(path: &Path, keyring: Option<Arc<Keyring>>) -> Result<()> {
    let mut config =
        StoreConfig::file(path).must_exist().with_sweep_interval(None).with_metrics_interval(None);
    config = match keyring {
        Some(k) => config.with_keyring(k),
        None => config.with_encrypt_up_to(None),
    };
    let store = Store::open(config)?;
    store.shutdown()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_is_read_once_and_the_bytes_read_are_the_bytes_copied() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a.db.key");
        std::fs::write(&from, b"first read").unwrap();
        let reads = std::cell::Cell::new(0);
        let read = |p: &Path| {
            reads.set(reads.get() + 1);
            let bytes = std::fs::read(p).unwrap();
            // What a later read would see if the file were replaced meanwhile.
            std::fs::write(p, b"replaced").unwrap();
            Ok((zeroize::Zeroizing::new(bytes), reads.get()))
        };
        let to = dir.path().join("b.db.key");
        let (plan, held) = plan_copy(to.clone(), vec![from.clone()], read).unwrap();
        assert_eq!((reads.get(), held), (1, Some(1)));
        match plan {
            Plan::Copy(p) => {
                assert_eq!((p.from, p.to), (from, to.clone()));
                assert_eq!(p.bytes.as_slice(), b"first read");
            }
            _ => panic!("expected a copy"),
        }
        // A file already at the destination is read once too, and kept.
        std::fs::write(&to, b"present").unwrap();
        let (plan, _) = plan_copy(to.clone(), vec![], read).unwrap();
        assert!(matches!(plan, Plan::Present(p) if p == to));
        assert_eq!(reads.get(), 2);
    }
}
