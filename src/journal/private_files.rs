//! Caller data at rest: the journal's SQLite file (and the `-wal`, `-shm` and `-journal` files
//! SQLite keeps beside it) and the spill files hold every webhook parameter (phone numbers, message
//! bodies), so they are created `0600` and folders created for them `0700`, whatever the umask.
//! I/O (creates files and folders, changes modes).
//!
//! A file of ours found with group or other access (made by an older version, or copied in) is
//! tightened to `0600`, with a warning that says so: nothing else should read it (a backup agent
//! should run as the same user or read a copy). A folder is not changed, since it may be a volume
//! whose mode the platform sets; one that others can open gets a warning instead.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a file holding caller data.
pub const FILE_MODE: u32 = 0o600;
/// The mode of a folder created for such files.
pub const DIR_MODE: u32 = 0o700;

/// Creates `path` (which must not exist) as a private file, open for writing.
pub fn create_new(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    // The mode given to open(2) passes through the umask; this one does not. The umask only takes
    // bits away, so the file is private either way: a network file system that refuses chmod (an
    // SMB share, a bucket through FUSE) must not cost the events this file is about to keep.
    if let Err(e) = file.set_permissions(Permissions::from_mode(FILE_MODE)) {
        tracing::warn!(file = %path.display(), error = %e, "cannot set the mode of a new journal file to 0600; it keeps the mode it was created with");
    }
    Ok(file)
}

/// Makes `dir` exist, creating it (and missing parents) `0700`.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
            // As for files: mkdir's mode already passed the umask, which only takes bits away.
            if let Err(e) = std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot set the mode of a new journal folder to 0700");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Warns when other users can open `dir`, a folder holding journal data.
pub fn warn_if_shared(dir: &Path) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:04o}"),
            "other users can open this folder of journal data: they can list the files in it (which \
             are 0600) and, without the sticky bit, delete them; make it 0700"
        );
    }
}

/// Before SQLite opens `db`: creates it `0600` when missing (SQLite gives its `-wal`, `-shm` and
/// `-journal` files the mode of the database file), refuses anything but a regular file (a FIFO
/// would block the writer), and tightens the file and those beside it when others can read them.
///
/// An existing file is only looked at and changed by path (stat, chmod), never opened: closing a
/// descriptor of a file drops every POSIX lock this process holds on it, and SQLite's locks on the
/// database and its `-shm` are such locks, held by the process's other connections.
pub fn prepare_sqlite(db: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(db)
    {
        // New, so no connection holds a lock on it yet (the caller opens connections one at a
        // time); exactly 0600, since the mode given to open(2) passes through the umask.
        Ok(file) => return file.set_permissions(Permissions::from_mode(FILE_MODE)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        // A reader without write access to the folder: SQLite says what it can open.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::metadata(db)?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    tighten(db);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        tighten(Path::new(&name));
    }
    Ok(())
}

/// Takes group and other access away from spill files already in `dir` (taken back and deleted
/// at start-up anyway, but readable until then).
pub fn tighten_all(paths: &[PathBuf]) {
    for path in paths {
        tighten(path);
    }
}

/// Sets the regular file at `path` to 0600 when it lets anyone else in, and says so.
fn tighten(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_file() || mode & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE)) {
        Ok(()) => tracing::warn!(
            file = %path.display(),
            was = format!("{mode:04o}"),
            "journal file was readable by other users; now 0600"
        ),
        Err(e) => tracing::warn!(
            file = %path.display(),
            mode = format!("{mode:04o}"),
            error = %e,
            "journal file is readable by other users and cannot be made 0600"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_folders_are_private_and_loose_files_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        ensure_dir(&nested).unwrap();
        assert_eq!(mode(&nested), DIR_MODE);
        let file = nested.join("f");
        create_new(&file).unwrap();
        assert_eq!(mode(&file), FILE_MODE);
        assert!(create_new(&file).is_err(), "never replaces a file");

        let db = dir.path().join("j.db");
        prepare_sqlite(&db).unwrap();
        assert_eq!(mode(&db), FILE_MODE);
        let wal = dir.path().join("j.db-wal");
        std::fs::write(&wal, b"x").unwrap();
        std::fs::set_permissions(&wal, Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&db, Permissions::from_mode(0o666)).unwrap();
        prepare_sqlite(&db).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (FILE_MODE, FILE_MODE));
    }

    #[test]
    fn a_fifo_is_not_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("j.db");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo is needed here");
        assert!(prepare_sqlite(&fifo).is_err());
        assert!(ensure_dir(&fifo).is_err());
    }
}
