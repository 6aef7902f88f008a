//! Reading a file the operator names (config, secrets, certificates, templates, Bins, params, test
//! suites, wiring): bounded in size and time. I/O.
//!
//! A path given on the command line or in the config can name anything: `/dev/zero` would be read
//! until memory runs out, and a FIFO without a writer would block the open, and then the read,
//! forever. So every such file is opened non-blocking (a FIFO's open returns at once), checked to be
//! a regular file on the open descriptor (no race with a rename in between), and read up to its
//! cap plus one byte, which tells a file at the cap from one beyond it. Symbolic links are followed:
//! Kubernetes mounts Secrets and ConfigMaps through them.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Config files, template test suites, wiring, params files and JSON bodies: text an operator
/// writes by hand is far below this.
pub const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;
/// Auth token, shared key and password files: a secret is a line.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// PEM certificates, keys and CA bundles (the Debian CA bundle is about 220 KB).
pub const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// Why a file could not be read; `Display` names the path and never shows the contents.
#[derive(Debug)]
pub struct FileError {
    path: PathBuf,
    problem: Problem,
}

#[derive(Debug)]
enum Problem {
    Io(std::io::Error),
    NotRegular(&'static str),
    TooLarge(u64),
    NotUtf8,
}

impl FileError {
    /// What is wrong, without the path (for messages that name the file already).
    pub fn reason(&self) -> String {
        match &self.problem {
            Problem::Io(e) => e.to_string(),
            Problem::NotRegular(kind) => format!("is {kind}, not a regular file"),
            Problem::TooLarge(cap) => format!("larger than {}; not read", human_bytes(*cap)),
            Problem::NotUtf8 => "not UTF-8 text".into(),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason())
    }
}

impl std::error::Error for FileError {}

fn human_bytes(n: u64) -> String {
    if n >= 1024 * 1024 && n % (1024 * 1024) == 0 {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 1024 && n % 1024 == 0 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Opens `path` for reading without blocking on a FIFO or device, and refuses anything but a
/// regular file. The file is read normally afterwards (`O_NONBLOCK` changes nothing for a
/// regular file).
pub fn open_regular(path: &Path) -> Result<File, FileError> {
    let fail = |problem| FileError {
        path: path.to_owned(),
        problem,
    };
    let file = OpenOptions::new()
        .read(true)
        // O_NOCTTY: naming a terminal must not make it this process's controlling terminal.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| fail(Problem::Io(e)))?;
    let kind = file
        .metadata()
        .map_err(|e| fail(Problem::Io(e)))?
        .file_type();
    if !kind.is_file() {
        return Err(fail(Problem::NotRegular(describe(&kind))));
    }
    Ok(file)
}

fn describe(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// The whole of the regular file at `path`, refused beyond `cap` bytes.
pub fn read(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    let fail = |problem| FileError {
        path: path.to_owned(),
        problem,
    };
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| fail(Problem::Io(e)))?;
    if bytes.len() as u64 > cap {
        return Err(fail(Problem::TooLarge(cap)));
    }
    Ok(bytes)
}

/// Like [`read`], as UTF-8 text.
pub fn read_text(path: &Path, cap: u64) -> Result<String, FileError> {
    String::from_utf8(read(path, cap)?).map_err(|_| FileError {
        path: path.to_owned(),
        problem: Problem::NotUtf8,
    })
}

/// The PEM certificates in `path` (at least one), within [`MAX_PEM_BYTES`]; errors name the file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path, MAX_PEM_BYTES).map_err(|e| e.to_string())?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The PEM private key in `path`, within [`MAX_PEM_BYTES`]; errors name the file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path, MAX_PEM_BYTES).map_err(|e| e.to_string())?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{}: no private key: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_file_at_the_cap_is_read_and_one_byte_more_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x".repeat(1024)).unwrap();
        assert_eq!(read_text(&path, 1024).unwrap().len(), 1024);
        let e = read_text(&path, 1023).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{}: larger than 1023 bytes; not read", path.display())
        );
        assert!(read_text(&path, 512)
            .unwrap_err()
            .to_string()
            .contains("larger than 512 bytes"));
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo is needed here");
        let started = Instant::now();
        for (path, kind) in [
            (Path::new("/dev/zero"), "a character device"),
            (fifo.as_path(), "a FIFO"),
            (dir.path(), "a directory"),
        ] {
            let e = read(path, MAX_DOCUMENT_BYTES).unwrap_err().to_string();
            assert_eq!(
                e,
                format!("{}: is {kind}, not a regular file", path.display())
            );
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_missing_file_says_so() {
        let e = read(Path::new("/no/such/file"), 10).unwrap_err();
        assert!(
            e.to_string().starts_with("/no/such/file: No such file"),
            "{e}"
        );
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_text(&path, 10)
            .unwrap_err()
            .to_string()
            .ends_with("not UTF-8 text"));
    }
}
