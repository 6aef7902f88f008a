//! Reading one template directory from disk: which files are templates, their names (URL paths),
//! and the bounds on what is read. The only part of template loading that touches the file system.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::operator_file;

/// Largest template file accepted (and Bin given to `import-bin`, which becomes one).
pub const MAX_TEMPLATE_FILE_BYTES: u64 = 256 * 1024;

/// One problem in a template file, printed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or directory) the problem is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// The other places with the same problem (`file`, line, column), after [`merge_repeats`].
    pub also: Vec<(PathBuf, usize, usize)>,
    /// Set on a problem fixed in one place whatever the number of places it shows in (an unknown
    /// variable is fixed in the config): diagnostics with the same key are merged.
    pub(crate) one_fix: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )?;
        if !self.also.is_empty() {
            let places: Vec<String> = self
                .also
                .iter()
                .map(|(file, line, col)| format!("{}:{line}:{col}", file.display()))
                .collect();
            write!(f, " (also at {})", places.join(", "))?;
        }
        Ok(())
    }
}

/// A problem with one fix found in several places (the same unknown variable in every template)
/// is one diagnostic naming each place, at the first; every other problem keeps its line.
pub fn merge_repeats(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut merged: Vec<Diagnostic> = Vec::new();
    for d in diagnostics {
        let first = merged
            .iter_mut()
            .find(|m| m.one_fix.is_some() && m.one_fix == d.one_fix);
        match first {
            Some(first) => first.also.push((d.file, d.line, d.col)),
            None => merged.push(d),
        }
    }
    merged
}

/// One template file as read from disk.
pub(crate) struct Source {
    /// The template name: its path below the set's folder, without `.xml`.
    pub(crate) name: String,
    /// Where it was read from.
    pub(crate) path: PathBuf,
    /// Its text.
    pub(crate) text: String,
}

impl Source {
    pub(crate) fn diagnostic(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        let (line, col) = line_col(&self.text, offset);
        Diagnostic {
            file: self.path.clone(),
            line,
            col,
            message: message.into(),
            also: Vec::new(),
            one_fix: None,
        }
    }
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

pub(crate) fn dir_diagnostic(path: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: path.to_owned(),
        line: 1,
        col: 1,
        message: message.into(),
        also: Vec::new(),
        one_fix: None,
    }
}

/// True for a template name that is also a safe URL path: `/`-separated `[A-Za-z0-9_-]` segments.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Files one set may hold at most; beyond it the set is refused.
pub const MAX_SET_FILES: usize = 2000;

/// Bytes of template text one set may hold at most; beyond it the set is refused. Loading keeps the
/// old set answering while the new one is read, so memory briefly holds both, and `check` of a
/// 50 MB set peaked at 109 MiB RSS (release build): 16 MiB keeps a reload well inside the 128 Mi
/// of `deploy/kubernetes` while leaving room for hundreds of 64 kB answers.
pub const MAX_SET_BYTES: u64 = 16 * 1024 * 1024;

/// Reads every `.xml` template below `dir`, sorted by name; problems go to `diagnostics`.
///
/// Returns for every layout: directory symlinks below `dir` are refused rather than followed
/// (following them needs loop detection and can leave the folder; a Kubernetes ConfigMap mount
/// needs only file symlinks, its `..data` directory link is hidden and skipped), only regular files
/// are read (a FIFO or device named `x.xml` would block or never end; see [`operator_file`]), and
/// reading stops at [`MAX_SET_FILES`] / [`MAX_SET_BYTES`] with a diagnostic naming the file that
/// crossed the limit.
// Long on purpose: each refusal of a file (kind, size, count, encoding) next to the read it guards.
pub(crate) fn read_sources(dir: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<Source> {
    let mut sources = Vec::new();
    let mut files = 0usize;
    let mut bytes = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(e) => {
                diagnostics.push(dir_diagnostic(
                    &current,
                    format!("cannot read directory: {e}"),
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Kubernetes ConfigMap mounts hold `..data` style links and hidden folders.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                diagnostics.push(dir_diagnostic(&path, "cannot read file"));
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            // A link is followed one step to learn what it names; `metadata` fails on a loop.
            let Ok(meta) = std::fs::metadata(&path) else {
                diagnostics.push(dir_diagnostic(&path, "cannot read file (broken link?)"));
                continue;
            };
            if meta.is_dir() {
                diagnostics.push(dir_diagnostic(
                    &path,
                    "directory symlinks are not followed; copy the folder or link its files",
                ));
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("xml") {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let name = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if !valid_name(&name) {
                diagnostics.push(dir_diagnostic(
                    &path,
                    "template names may only use letters, digits, '-' and '_' (they are URL paths)",
                ));
                continue;
            }
            if meta.len() > MAX_TEMPLATE_FILE_BYTES {
                diagnostics.push(dir_diagnostic(&path, "template file is over 256 KiB"));
                continue;
            }
            files += 1;
            bytes += meta.len();
            if files > MAX_SET_FILES {
                diagnostics.push(dir_diagnostic(
                    &path,
                    format!("the set holds more than {MAX_SET_FILES} template files"),
                ));
                return sorted(sources);
            }
            if bytes > MAX_SET_BYTES {
                diagnostics.push(dir_diagnostic(
                    &path,
                    format!(
                        "the set's templates total more than {} MiB",
                        MAX_SET_BYTES / (1024 * 1024)
                    ),
                ));
                return sorted(sources);
            }
            // Read through the descriptor checked again: the file may have been replaced since.
            match operator_file::read_text(&path, MAX_TEMPLATE_FILE_BYTES) {
                Ok(text) => sources.push(Source { name, path, text }),
                Err(e) => diagnostics.push(dir_diagnostic(
                    &path,
                    format!("cannot read: {}", e.reason()),
                )),
            }
        }
    }
    sorted(sources)
}

fn sorted(mut sources: Vec<Source>) -> Vec<Source> {
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path) -> (Vec<String>, Vec<String>) {
        let mut diagnostics = Vec::new();
        let names = read_sources(dir, &mut diagnostics)
            .into_iter()
            .map(|s| s.name)
            .collect();
        (names, diagnostics.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn symlink_loops_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sms.xml"), "<Response/>").unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("b")).unwrap();
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        let (names, problems) = read(dir.path());
        assert_eq!(names, ["sms"]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.contains("/a:1:1: directory symlinks")));
        assert!(problems
            .iter()
            .any(|p| p.contains("/loop:1:1: cannot read")));
    }

    #[test]
    fn configmap_layout_is_read_through_its_links() {
        // What the kubelet mounts: files link into `..data`, itself a link to a timestamped folder.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2026_12_01_00_00_00.1");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("sms.xml"), "<Response/>").unwrap();
        std::os::unix::fs::symlink("..2026_12_01_00_00_00.1", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/sms.xml", dir.path().join("sms.xml")).unwrap();
        assert_eq!(read(dir.path()), (vec!["sms".to_string()], vec![]));
    }

    #[test]
    fn special_files_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.xml")).unwrap();
        let (names, problems) = read(dir.path());
        assert!(names.is_empty());
        assert!(
            problems[0]
                .contains("zero.xml:1:1: cannot read: is a character device, not a regular file"),
            "{problems:?}"
        );
    }

    #[test]
    fn total_bytes_are_bounded_and_the_error_names_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = "x".repeat(MAX_TEMPLATE_FILE_BYTES as usize);
        let files = MAX_SET_BYTES / MAX_TEMPLATE_FILE_BYTES + 1;
        for i in 0..files {
            std::fs::write(dir.path().join(format!("t{i}.xml")), &text).unwrap();
        }
        let (names, problems) = read(dir.path());
        assert_eq!(names.len() as u64, files - 1);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains(".xml:1:1: the set's templates total more than 16 MiB"),
            "{problems:?}"
        );
    }

    #[test]
    fn file_count_is_bounded_and_the_error_names_a_file() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..=MAX_SET_FILES {
            std::fs::write(dir.path().join(format!("t{i}.xml")), "<Response/>").unwrap();
        }
        let (names, problems) = read(dir.path());
        assert_eq!(names.len(), MAX_SET_FILES);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains(".xml:1:1: the set holds more than 2000"),
            "{problems:?}"
        );
    }
}
