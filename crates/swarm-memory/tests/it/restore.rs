//! Restoring a backup carries the key file and the swarm secret beside the new database,
//! refuses files others may read, never overwrites, and leaves nothing behind on failure.

use std::path::{Path, PathBuf};

use swarm_memory::*;

/// A database `a.db` with a private record and a private artifact of ann, its backup at
/// `backups/a.bak`, and the system shut down. Returns the database path and ann's id.
fn database_with_backup(dir: &Path) -> (PathBuf, PathBuf, AgentId) {
    let db = dir.join("a.db");
    let system = SwarmMemory::builder().path(&db).sweep_interval(None).open().unwrap();
    let ann = system.register_agent(AgentSpec::new("ann", "worker").unwrap()).unwrap().agent.id;
    let s = system.act_as(&ann).unwrap();
    system.create_memory_adapter(&s, "n").unwrap().set("k", "kept", &SetOptions::new()).unwrap();
    system
        .store()
        .store_artifact(s.identity(), ArtifactSpec::new("doc", b"sealed doc".to_vec()))
        .unwrap();
    std::fs::create_dir(dir.join("backups")).unwrap();
    let backup = dir.join("backups/a.bak");
    system.store().backup(&Identity::System, &backup, BackupMethod::Online, |_| {}).unwrap();
    system.graceful_shutdown().unwrap();
    (db, backup, ann)
}

fn mode(p: &Path) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        0o600
    }
}

fn reads_back(db: &Path, ann: &AgentId) {
    let system = SwarmMemory::builder().path(db).must_exist().sweep_interval(None).open().unwrap();
    let s = system.act_as(ann).unwrap();
    let mem = system.create_memory_adapter(&s, "n").unwrap();
    assert_eq!(mem.get("k").unwrap(), Some(Value::from("kept")));
    let doc = system.store().latest_artifact(s.identity(), "doc").unwrap().unwrap();
    assert_eq!(doc.content, b"sealed doc");
    system.graceful_shutdown().unwrap();
}

#[test]
fn a_restore_carries_the_key_file_and_the_swarm_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (db, backup, ann) = database_with_backup(dir.path());
    let target = dir.path().join("restored.db");
    let options = RestoreOptions::new().original(&db);
    let mut pages = 0;
    let r = SwarmMemory::restore(&backup, &target, &options, |p| pages = p.done).unwrap();
    assert!(pages > 0 && r.database.integrity == "ok");
    assert_eq!(
        r.key_file,
        FileOutcome::Copied { from: key_file_for(&db), to: key_file_for(&target) }
    );
    assert_eq!(
        r.secret_file,
        FileOutcome::Copied { from: secret_file_for(&db), to: secret_file_for(&target) }
    );
    assert!(r.verified);
    for (from, to) in [
        (key_file_for(&db), key_file_for(&target)),
        (secret_file_for(&db), secret_file_for(&target)),
    ] {
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        assert_eq!(mode(&to), 0o600, "{}", to.display());
    }
    // The restored database opens with what was put beside it, and keeps the swarm's
    // secret rather than making a new one.
    reads_back(&target, &ann);
    assert_eq!(
        std::fs::read(secret_file_for(&db)).unwrap(),
        std::fs::read(secret_file_for(&target)).unwrap()
    );

    // A restore never overwrites: the same target again is refused and left as it is.
    let before = std::fs::read(&target).unwrap();
    let e = SwarmMemory::restore(&backup, &target, &options, |_| {}).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    assert_eq!(std::fs::read(&target).unwrap(), before);

    // Files kept beside the backup win over the original's.
    let elsewhere = dir.path().join("elsewhere.db");
    std::fs::copy(key_file_for(&db), key_file_for(&backup)).unwrap();
    let r = SwarmMemory::restore(&backup, &elsewhere, &options, |_| {}).unwrap();
    assert_eq!(
        r.key_file,
        FileOutcome::Copied { from: key_file_for(&backup), to: key_file_for(&elsewhere) }
    );
    assert!(
        matches!(r.secret_file, FileOutcome::Copied { ref from, .. } if *from == secret_file_for(&db))
    );
}

#[test]
fn a_key_or_secret_file_others_may_read_is_refused_before_anything_is_written() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (db, backup, _) = database_with_backup(dir.path());
        let target = dir.path().join("restored.db");
        for file in [secret_file_for(&db), key_file_for(&db)] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = SwarmMemory::restore(
                &backup,
                &target,
                &RestoreOptions::new().original(&db),
                |_| {},
            )
            .unwrap_err();
            assert!(e.to_string().contains("chmod 600"), "{e}");
            for p in [target.clone(), key_file_for(&target), secret_file_for(&target)] {
                assert!(!p.exists(), "{} was written", p.display());
            }
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

#[test]
fn a_key_that_does_not_fit_undoes_the_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (db, backup, ann) = database_with_backup(dir.path());
    let target = dir.path().join("restored.db");
    // Someone left a key file of another database where the restored one's would go.
    let other = dir.path().join("other.db");
    SwarmMemory::builder().path(&other).open().unwrap().graceful_shutdown().unwrap();
    std::fs::copy(key_file_for(&other), key_file_for(&target)).unwrap();
    let stray = std::fs::read(key_file_for(&target)).unwrap();
    let e = SwarmMemory::restore(&backup, &target, &RestoreOptions::new().original(&db), |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("does not open the restored database"), "{e}");
    // Nothing of this restore is left; the file that was there is kept as it was.
    for p in [target.clone(), secret_file_for(&target), dir.path().join("restored.db-wal")] {
        assert!(!p.exists(), "{} was left behind", p.display());
    }
    assert_eq!(std::fs::read(key_file_for(&target)).unwrap(), stray, "never overwritten");
    // With the right key file in its place, the restore goes through and keeps it.
    std::fs::remove_file(key_file_for(&target)).unwrap();
    std::fs::copy(key_file_for(&db), key_file_for(&target)).unwrap();
    let r = SwarmMemory::restore(&backup, &target, &RestoreOptions::new().original(&db), |_| {})
        .unwrap();
    assert_eq!(r.key_file, FileOutcome::Present { path: key_file_for(&target) });
    reads_back(&target, &ann);
}

#[test]
fn without_files_to_copy_the_restore_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, backup, ann) = database_with_backup(dir.path());
    let target = dir.path().join("restored.db");
    // No original named and nothing beside the backup.
    let r = SwarmMemory::restore(&backup, &target, &RestoreOptions::new(), |_| {}).unwrap();
    assert_eq!(r.key_file, FileOutcome::Missing { path: key_file_for(&target) });
    assert_eq!(r.secret_file, FileOutcome::Missing { path: secret_file_for(&target) });
    assert!(!r.verified);
    assert!(target.exists() && !key_file_for(&target).exists());

    // A key and a secret given as text (the environment's) need no files.
    let key_text = std::fs::read_to_string(key_file_for(&db)).unwrap();
    let hex = key_text
        .lines()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_owned();
    let builder =
        SwarmMemory::builder().key(KeySource::Text(hex.clone())).swarm_secret("11".repeat(32));
    let target2 = dir.path().join("restored2.db");
    let r =
        SwarmMemory::restore(&backup, &target2, &RestoreOptions::from_builder(&builder), |_| {})
            .unwrap();
    assert_eq!(
        (r.key_file.clone(), r.secret_file.clone(), r.verified),
        (FileOutcome::NotNeeded, FileOutcome::NotNeeded, true)
    );
    assert!(!key_file_for(&target2).exists() && !secret_file_for(&target2).exists());
    let system = SwarmMemory::builder()
        .path(&target2)
        .key(KeySource::Text(hex))
        .swarm_secret("11".repeat(32))
        .must_exist()
        .open()
        .unwrap();
    let s = system.act_as(&ann).unwrap();
    assert_eq!(
        system.create_memory_adapter(&s, "n").unwrap().get("k").unwrap(),
        Some(Value::from("kept"))
    );
    system.graceful_shutdown().unwrap();
    // A missing backup is not found, and nothing is created.
    let e = SwarmMemory::restore(
        &dir.path().join("nope.bak"),
        &dir.path().join("x.db"),
        &RestoreOptions::new(),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(e.as_store(), Some(StoreError::NotFound(_))), "{e}");
    assert!(!dir.path().join("x.db").exists());
}

/// Entries of `dir` whose name mentions staging or a temporary file: left behind.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging") || n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_file_another_restore_puts_at_the_target_meanwhile_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (db, backup, ann) = database_with_backup(dir.path());
    let target = dir.path().join("restored.db");
    // While this restore copies pages, a concurrent one claims the same target.
    let mut raced = false;
    let e = SwarmMemory::restore(&backup, &target, &RestoreOptions::new().original(&db), |_| {
        if !raced {
            raced = true;
            let _ = std::fs::remove_file(&target);
            std::fs::write(&target, b"the other restore's file").unwrap();
        }
    })
    .unwrap_err();
    assert!(raced);
    assert!(e.to_string().contains("exists"), "{e}");
    assert_eq!(std::fs::read(&target).unwrap(), b"the other restore's file", "removed by undo");
    for p in [key_file_for(&target), secret_file_for(&target)] {
        assert!(!p.exists(), "{} was left behind", p.display());
    }
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    // Elsewhere the same restore goes through, and leaves nothing aside.
    let elsewhere = dir.path().join("elsewhere.db");
    SwarmMemory::restore(&backup, &elsewhere, &RestoreOptions::new().original(&db), |_| {})
        .unwrap();
    reads_back(&elsewhere, &ann);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn a_restore_never_writes_through_a_link_or_beside_a_planted_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (db, backup, _) = database_with_backup(dir.path());
    let options = RestoreOptions::new().original(&db);
    // A dangling link at the target: `exists()` is false, and SQLite would follow it.
    let target = dir.path().join("restored.db");
    let victim = dir.path().join("victim.db");
    std::os::unix::fs::symlink(&victim, &target).unwrap();
    let e = SwarmMemory::restore(&backup, &target, &options, |_| {}).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    assert!(!victim.exists(), "written through the link");
    assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
    // A WAL already beside the target would be taken for the restored database's own.
    let target = dir.path().join("fresh.db");
    let wal = dir.path().join("fresh.db-wal");
    std::fs::write(&wal, b"planted").unwrap();
    let e = SwarmMemory::restore(&backup, &target, &options, |_| {}).unwrap_err();
    assert!(e.to_string().contains("fresh.db-wal"), "{e}");
    assert_eq!(std::fs::read(&wal).unwrap(), b"planted");
    for p in [target.clone(), key_file_for(&target), secret_file_for(&target)] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    // A dangling link where the key file goes is not written through either.
    let target = dir.path().join("third.db");
    let stolen = dir.path().join("stolen.key");
    std::os::unix::fs::symlink(&stolen, key_file_for(&target)).unwrap();
    assert!(SwarmMemory::restore(&backup, &target, &options, |_| {}).is_err());
    assert!(!stolen.exists() && !target.exists());
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}
