//! Reading one template directory from disk: which files are templates, their names (URL paths),
//! and the bounds on what is read. The only part of template loading that touches the file system.

use std::fmt;
use std::path::{Path, PathBuf};

/// Largest template file accepted.
const MAX_TEMPLATE_FILE_BYTES: u64 = 256 * 1024;

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
        )
    }
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

/// Reads every `.xml` template below `dir`, sorted by name; problems go to `diagnostics`.
pub(crate) fn read_sources(dir: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<Source> {
    let mut sources = Vec::new();
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
            let Ok(meta) = std::fs::metadata(&path) else {
                diagnostics.push(dir_diagnostic(&path, "cannot read file"));
                continue;
            };
            // Kubernetes ConfigMap mounts hold `..data` style links and hidden folders.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if meta.is_dir() {
                pending.push(path);
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
            match std::fs::read_to_string(&path) {
                Ok(text) => sources.push(Source { name, path, text }),
                Err(e) => diagnostics.push(dir_diagnostic(&path, format!("cannot read: {e}"))),
            }
        }
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    sources
}
