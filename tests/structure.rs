//! The crate's shape, read from its source: knowledge flows one way, between the top-level modules
//! of `src/` and between the files of each folder. Reads every `src/**/*.rs` (tests included),
//! resolves each `crate::`, `super::`, `self::` and child-module path to the file that holds what
//! it names, builds the graph of top-level modules and of each folder's entries, and fails on any
//! import circle, printing it. `lib.rs` and `main.rs` only list and use the modules. Only `std`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments and string literals, so neither can add an edge or a brace; their
/// line breaks stay, so a line of the result is the same line of the source.
fn code_only(source: &str) -> String {
    let lines_of = |range: &[u8]| "\n".repeat(range.iter().filter(|&&b| b == b'\n').count());
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = source[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |e| i + 2 + e + 2);
                out.push_str(&lines_of(&bytes[i..end]));
                i = end;
            }
            b'r' if matches!(bytes.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) =>
            {
                // A raw string r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while bytes.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if bytes.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = source[j + 1..]
                    .find(&close)
                    .map_or(bytes.len(), |e| j + 1 + e + close.len());
                out.push_str("\"\"");
                out.push_str(&lines_of(&bytes[i..end]));
                i = end;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                out.push_str("\"\"");
                out.push_str(&lines_of(&bytes[start..i]));
            }
            b'\'' if bytes.get(i + 2) == Some(&b'\'') || bytes.get(i + 1) == Some(&b'\\') => {
                // A char literal ('"', '\'', '\n'); lifetimes ('a) fall through.
                let end = source[i + 2..]
                    .find('\'')
                    .map_or(bytes.len(), |e| i + 2 + e + 1);
                i = end;
                out.push_str("' '");
            }
            _ => {
                let c = source[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// A module's path from the crate root: `src/a/b.rs` and `src/a/b/mod.rs` are `["a", "b"]`.
type ModPath = Vec<String>;

/// The paths a use-tree names, read from `s` (what follows `crate::`, `super::`, ...):
/// `a::b::C` is `[a, b, C]`, `{a::X, b::{c, self}}` is `[a, X]`, `[b, c]`, `[b]`. Returns the paths
/// and how many bytes it read.
fn use_tree(s: &str) -> (Vec<ModPath>, usize) {
    let trimmed = s.trim_start();
    let skipped = s.len() - trimmed.len();
    if let Some(group) = trimmed.strip_prefix('{') {
        let mut paths = Vec::new();
        let mut pos = 0;
        loop {
            let rest = &group[pos..];
            let item = rest.trim_start();
            pos += rest.len() - item.len();
            match item.chars().next() {
                None => break,
                Some('}') => {
                    pos += 1;
                    break;
                }
                Some(',') => pos += 1,
                Some(_) => {
                    let (sub, used) = use_tree(item);
                    paths.extend(sub);
                    pos += used.max(1);
                }
            }
        }
        return (paths, skipped + 1 + pos);
    }
    let name = ident(trimmed);
    if name.is_empty() || name == "self" {
        return (vec![Vec::new()], skipped + name.len());
    }
    let after = &trimmed[name.len()..];
    if let Some(rest) = after.strip_prefix("::") {
        let (subs, used) = use_tree(rest);
        let paths = subs
            .into_iter()
            .map(|sub| std::iter::once(name.to_string()).chain(sub).collect())
            .collect();
        return (paths, skipped + name.len() + 2 + used);
    }
    (vec![vec![name.to_string()]], skipped + name.len())
}

/// The inline modules (`mod tests { ... }`) of a file's code: their name and byte span.
fn inline_modules(code: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + 4..];
        let name = ident(rest.trim_start());
        let after = rest.trim_start()[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        let mut close = code.len();
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push((name.to_string(), open..close));
    }
    found
}

/// Every module path the file's code names, resolved from the crate root: `crate::` paths,
/// `super::` and `self::` paths from where they stand (inside an inline `mod tests` too), and, for
/// a module with children, paths that start with a child's name. `children` lists each module's
/// child modules.
fn references(
    code: &str,
    module: &[String],
    children: &BTreeMap<ModPath, BTreeSet<String>>,
) -> BTreeSet<ModPath> {
    let inline = inline_modules(code);
    let scope_at = |at: usize| -> ModPath {
        let mut scope = module.to_vec();
        let mut spans: Vec<_> = inline.iter().filter(|(_, r)| r.contains(&at)).collect();
        spans.sort_by_key(|(_, r)| r.start);
        scope.extend(spans.into_iter().map(|(n, _)| n.clone()));
        scope
    };
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let c = rest.chars().next().expect("in bounds");
        let before = code[..i].chars().next_back();
        let at_path_start = !before.is_some_and(|b| {
            b.is_ascii_alphanumeric() || b == '_' || b == '$' || b == ':' || b == '.'
        });
        if !(at_path_start && (c.is_ascii_alphabetic() || c == '_')) {
            i += c.len_utf8();
            continue;
        }
        let name = ident(rest);
        let after = &rest[name.len()..];
        if !after.starts_with("::") {
            i += name.len();
            continue;
        }
        let scope = scope_at(i);
        let base: Option<ModPath> = match name {
            "crate" => Some(Vec::new()),
            "self" => Some(scope.clone()),
            "super" => {
                // `super::super::x`: each climb leaves one level.
                let mut climbs = 0;
                let mut tail = rest;
                while let Some(t) = tail.strip_prefix("super::") {
                    climbs += 1;
                    tail = t;
                }
                let base = scope[..scope.len().saturating_sub(climbs)].to_vec();
                let (paths, _) = use_tree(tail);
                for path in paths {
                    found.insert(base.iter().cloned().chain(path).collect());
                }
                i += rest.len() - tail.len();
                continue;
            }
            // A child module by its bare name; inside `mod tests`, also the file's own children,
            // which `use super::*` brings into scope.
            child => [scope.as_slice(), module]
                .into_iter()
                .find(|m| children.get(*m).is_some_and(|c| c.contains(child)))
                .map(|m| m.iter().cloned().chain([child.to_string()]).collect()),
        };
        match base {
            Some(base) => {
                let (paths, used) = use_tree(&after[2..]);
                for path in paths {
                    found.insert(base.iter().cloned().chain(path).collect());
                }
                i += name.len() + 2 + used;
            }
            None => i += name.len(),
        }
    }
    found
}

/// One file of `src/` as a module: its path from the crate root and its code without comments and
/// strings.
struct File {
    module: ModPath,
    code: String,
}

fn read_crate(src: &Path) -> Vec<File> {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    paths
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(src).expect("under src/");
            let mut module: ModPath = rel
                .components()
                .map(|c| c.as_os_str().to_str().expect("UTF-8 path").to_string())
                .collect();
            let last = module.pop().expect("a file name");
            match last.as_str() {
                // `main.rs` is the binary: it uses the library as an outside crate would.
                "main.rs" if module.is_empty() => return None,
                "lib.rs" if module.is_empty() => {}
                "mod.rs" => {}
                name => module.push(name.trim_end_matches(".rs").to_string()),
            }
            let source = std::fs::read_to_string(&path).expect("readable source");
            Some(File {
                module,
                code: code_only(&source),
            })
        })
        .collect()
}

/// The names each file brings in with `use` (outside inline modules), and the path each stands
/// for: `super::Item` that names a `use` of the parent is an import of where the item lives.
fn imported_names(
    files: &[File],
    children: &BTreeMap<ModPath, BTreeSet<String>>,
) -> BTreeMap<(ModPath, String), ModPath> {
    let mut names = BTreeMap::new();
    for file in files {
        let inline = inline_modules(&file.code);
        for (at, _) in file.code.match_indices("use ") {
            let before = file.code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                || inline.iter().any(|(_, r)| r.contains(&at))
            {
                continue;
            }
            let statement = &file.code[at..];
            let statement = &statement[..statement.find(';').unwrap_or(statement.len())];
            for path in references(statement, &file.module, children) {
                if let Some(name) = path.last() {
                    names.insert((file.module.clone(), name.clone()), path);
                }
            }
        }
    }
    names
}

/// Every import between two files: from the importing file's module to the module (file) that
/// holds what it names. A name a module only brings in with `use` counts as its real home's.
fn file_edges(files: &[File]) -> Vec<(ModPath, ModPath)> {
    let modules: BTreeSet<&ModPath> = files.iter().map(|f| &f.module).collect();
    let mut children: BTreeMap<ModPath, BTreeSet<String>> = BTreeMap::new();
    for m in &modules {
        if let Some((last, parent)) = m.split_last() {
            children
                .entry(parent.to_vec())
                .or_default()
                .insert(last.clone());
        }
    }
    let imported = imported_names(files, &children);
    // The longest prefix that is a file: `crate::a::b::Item` is in `a/b.rs` or `a.rs`.
    let home = |path: &ModPath| -> Option<ModPath> {
        let mut path = path.clone();
        for _ in 0..8 {
            let file = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p))?;
            match path
                .get(file.len())
                .and_then(|item| imported.get(&(file.clone(), item.clone())))
            {
                Some(source) if *source != path => {
                    path = source
                        .iter()
                        .chain(&path[file.len() + 1..])
                        .cloned()
                        .collect();
                }
                _ => return Some(file),
            }
        }
        None
    };
    let mut edges = Vec::new();
    for file in files {
        for path in references(&file.code, &file.module, &children) {
            if let Some(target) = home(&path).filter(|t| *t != file.module) {
                edges.push((file.module.clone(), target));
            }
        }
    }
    edges
}

/// Name of the entry of `folder` that holds `module`: the file or sub-folder just below it; `None`
/// outside the folder and for the folder's own `mod.rs` (`lib.rs` at the top), which is the
/// entries' parent: it declares them and may use them, and they may use what it defines.
fn entry_of(folder: &[String], module: &[String]) -> Option<String> {
    module
        .strip_prefix(folder)
        .and_then(|below| below.first())
        .cloned()
}

/// The graph between the entries of `folder` (`[]` is `src/` itself, whose entries are the
/// top-level modules).
fn folder_graph(edges: &[(ModPath, ModPath)], folder: &[String]) -> Graph {
    let mut graph = Graph::new();
    for (from, to) in edges {
        let (Some(a), Some(b)) = (entry_of(folder, from), entry_of(folder, to)) else {
            continue;
        };
        if a != b {
            graph.entry(a).or_default().insert(b);
        }
    }
    graph
}

/// The graph between top-level modules.
fn module_graph(src: &Path) -> Graph {
    folder_graph(&file_edges(&read_crate(src)), &[])
}

/// Strongly connected components with more than one module (Tarjan).
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, node: &'g str) {
        let n = s.index.len();
        s.index.insert(node, n);
        s.low.insert(node, n);
        s.stack.push(node);
        s.on_stack.insert(node);
        for next in s.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !s.index.contains_key(next) {
                visit(s, next);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            loop {
                let top = s.stack.pop().expect("node is on the stack");
                s.on_stack.remove(top);
                component.push(top.to_string());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

/// The circles of `graph`, each with its arrows, for a failure message.
fn describe(graph: &Graph, found: &[Vec<String>]) -> String {
    let mut report = String::new();
    for component in found {
        report.push_str(&format!("circle: {}\n", component.join(", ")));
        for from in component {
            let inside: Vec<&str> = graph[from]
                .iter()
                .filter(|to| component.contains(to))
                .map(String::as_str)
                .collect();
            report.push_str(&format!("  {from} -> {}\n", inside.join(", ")));
        }
    }
    report
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let found = circles(&graph);
    assert!(
        found.is_empty(),
        "import circles in src/:\n{}",
        describe(&graph, &found)
    );
}

#[test]
fn no_import_circle_between_files_of_a_folder() {
    // Inside each folder too, between its files and sub-folders (its `mod.rs` is their parent, as
    // `lib.rs` is the top-level modules'; what it only re-exports counts as its real home's).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_crate(&src);
    let edges = file_edges(&files);
    let folders: BTreeSet<ModPath> = files
        .iter()
        .filter_map(|f| f.module.split_last().map(|(_, parent)| parent.to_vec()))
        .filter(|parent| !parent.is_empty())
        .collect();
    assert!(folders.len() >= 10, "the folders were found: {folders:?}");
    let mut report = String::new();
    for folder in folders {
        let graph = folder_graph(&edges, &folder);
        let found = circles(&graph);
        if !found.is_empty() {
            report.push_str(&format!("in src/{}/:\n", folder.join("/")));
            report.push_str(&describe(&graph, &found));
        }
    }
    assert!(report.is_empty(), "import circles between files:\n{report}");
}

#[test]
fn the_reader_sees_what_it_should() {
    // The reader itself, on the forms the crate uses: a path, a group (nested, with `self`), a
    // climb, a child by its bare name, a `mod tests` whose `super` is its own file, and the places
    // a path must not count (comments, strings).
    let code = code_only(
        "use crate::a::X;\nuse crate::{b::Y, c::{self, d::Z}};\n// crate::d\n\
         let s = \"crate::e\";\nfn f() -> super::g::Z { crate::h::z() }\n\
         let r = r#\"crate::i\"#;\nuse kid::W;\nuse other::V;\n\
         mod tests {\n    use super::*;\n    use super::super::j;\n}\n",
    );
    let mut children = BTreeMap::new();
    children.insert(
        vec!["m".to_string(), "f".to_string()],
        BTreeSet::from(["kid".to_string()]),
    );
    let module = ["m".to_string(), "f".to_string()];
    let found: Vec<String> = references(&code, &module, &children)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        found,
        [
            "a::X",
            "b::Y",
            "c",
            "c::d::Z",
            "h::z",
            "m::f",
            "m::f::kid::W",
            "m::g::Z",
            "m::j"
        ]
    );

    let mut graph = Graph::new();
    graph.entry("x".into()).or_default().insert("y".into());
    graph.entry("y".into()).or_default().insert("z".into());
    graph.entry("z".into()).or_default().insert("x".into());
    graph.entry("w".into()).or_default().insert("x".into());
    assert_eq!(circles(&graph), [vec!["x", "y", "z"]]);

    // Files become entries of a folder: a file below a sub-folder counts as that sub-folder, and
    // the folder's own `mod.rs` is none of them.
    let p = |parts: &[&str]| -> ModPath { parts.iter().map(|s| s.to_string()).collect() };
    let mut edges = vec![
        (p(&["s", "a"]), p(&["s", "t", "b"])),
        (p(&["s", "t", "b"]), p(&["s"])),
        (p(&["s"]), p(&["s", "a"])),
    ];
    let graph = folder_graph(&edges, &p(&["s"]));
    assert_eq!(circles(&graph), Vec::<Vec<String>>::new());
    assert_eq!(graph.len(), 1, "only a -> t: {graph:?}");
    edges.push((p(&["s", "t", "c"]), p(&["s", "a"])));
    assert_eq!(circles(&folder_graph(&edges, &p(&["s"]))), [vec!["a", "t"]]);
    assert!(circles(&folder_graph(&edges, &[])).is_empty());

    // A name `mod.rs` only brings in with `use` leads to the file that defines it.
    let file = |module: &[&str], code: &str| File {
        module: p(module),
        code: code_only(code),
    };
    let files = [
        file(&["s"], "mod a;\nmod b;\nuse b::Item;\nfn f() { a::g() }"),
        file(&["s", "a"], "use super::Item;\npub fn g() {}"),
        file(&["s", "b"], "pub struct Item;"),
    ];
    let edges = file_edges(&files);
    assert!(
        edges.contains(&(p(&["s", "a"]), p(&["s", "b"]))),
        "{edges:?}"
    );
    assert!(edges.contains(&(p(&["s"]), p(&["s", "a"]))), "{edges:?}");
}

#[test]
fn only_the_edges_read_the_command_line_and_the_settings() {
    // Knowledge flows inward: the binary parses the command line (`cli`, which takes each
    // command's flags from the command, and `serve`'s from `config`, where each setting is
    // declared once), `config` turns it into each module's own settings, and `service` builds the
    // running server from them. A module deeper in that imports `cli` or `config` would make a
    // change of flags ripple into the request path.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let importers = |target: &str| -> Vec<&str> {
        graph
            .iter()
            .filter(|(from, to)| from.as_str() != target && to.contains(target))
            .map(|(from, _)| from.as_str())
            .collect()
    };
    assert!(importers("cli").is_empty(), "{:?}", importers("cli"));
    assert_eq!(importers("config"), ["cli", "commands", "service"]);
}

#[test]
fn twilio_vocabulary_is_a_leaf_the_engines_share() {
    // Twilio's vocabulary imports nothing of the crate, and the engines that speak Twilio (the
    // drill, `numbers`, upstream mode) take it from there rather than from each other or from the
    // runtime templates; the authoring tools stay off what `serve` runs.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let imports = |from: &str| graph.get(from).cloned().unwrap_or_default();
    assert!(imports("twilio").is_empty(), "{:?}", imports("twilio"));
    for engine in ["drill", "numbers", "upstream"] {
        for other in ["drill", "numbers", "upstream", "templates", "authoring"] {
            assert!(!imports(engine).contains(other), "{engine} imports {other}");
        }
    }
    let importers: Vec<&str> = graph
        .iter()
        .filter(|(_, to)| to.contains("authoring"))
        .map(|(from, _)| from.as_str())
        .collect();
    assert_eq!(importers, ["commands"]);
}

#[test]
fn the_journal_is_storage() {
    // The journal keeps events; delivering them over HTTP is `forward`'s, which sits above it.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let imports = graph.get("journal").cloned().unwrap_or_default();
    for speaks_http in ["net", "breaker", "keyring", "signature", "forward"] {
        assert!(
            !imports.contains(speaks_http),
            "journal imports {speaks_http}"
        );
    }
    assert!(graph["forward"].contains("journal"));
}

/// Longest a function outside tests may be, signature through closing brace, without a reason.
const MAX_FUNCTION_LINES: usize = 80;
/// How a longer function gives its reason: a comment line starting so, among the doc and
/// attribute lines just above its signature.
const LONG_MARK: &str = "// Long on purpose: ";
/// `code` (from [`code_only`]) with every `#[cfg(test)]` item blanked, line breaks kept.
fn without_tests(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]").map(|i| from + i) {
        let item = at + "#[cfg(test)]".len();
        let Some(open) = out[item..].find(['{', ';']).map(|i| item + i) else {
            break;
        };
        let end = if out.as_bytes()[open] == b'{' {
            matching_brace(&out, open)
        } else {
            open + 1
        };
        let blank: String = out[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..end, &blank);
        from = end;
    }
    out
}

/// The offset just past the `}` that closes the `{` at `open`.
fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, b) in code.bytes().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Each function with a body in `code`: its name, the line its signature starts on (from 1) and
/// its length in lines, signature through closing brace.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    for (at, _) in code.match_indices("fn ") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name = ident(code[at + 3..].trim_start());
        if name.is_empty() {
            continue;
        }
        // The body opens at the first `{` outside parentheses and brackets; a `;` first is a
        // declaration without one.
        let mut depth = 0i32;
        let mut body = None;
        for (i, b) in code.bytes().enumerate().skip(at) {
            match b {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b'{' if depth == 0 => {
                    body = Some(i);
                    break;
                }
                b';' if depth == 0 => break,
                _ => {}
            }
        }
        if let Some(open) = body {
            let end = matching_brace(code, open);
            let first = line_of(at);
            found.push((name.to_string(), first, line_of(end - 1) - first + 1));
        }
    }
    found
}

/// True when the lines just above line `line` (doc comments, attributes, comments) give the
/// reason a function is long.
fn gives_a_reason(source: &str, line: usize) -> bool {
    source
        .lines()
        .take(line - 1)
        .collect::<Vec<_>>()
        .iter()
        .rev()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with("//") || l.starts_with("#[") || l.starts_with(')'))
        .any(|l| {
            l.strip_prefix(LONG_MARK)
                .is_some_and(|why| !why.trim().is_empty())
        })
}

#[test]
fn the_function_measure_sees_what_it_should() {
    let source = "fn short() {\n    let s = \"}\";\n}\n\
                  trait T {\n    fn declared(&self);\n}\n\
                  pub fn outer(f: fn(u8) -> u8) -> Vec<u8>\nwhere\n    u8: Copy,\n{\n\
                  \x20   fn inner() {}\n    /* } */\n    vec![f(1)]\n}\n\
                  #[cfg(test)]\nmod tests {\n    fn in_a_test() {\n    }\n}\n";
    let found = functions(&without_tests(&code_only(source)));
    assert_eq!(
        found,
        [
            ("short".to_string(), 1, 3),
            ("outer".to_string(), 7, 8),
            ("inner".to_string(), 11, 1)
        ]
    );
    let marked = "/// Doc.\n// Long on purpose: one table.\n#[allow(x)]\nfn f() {}\n";
    assert!(gives_a_reason(marked, 4));
    assert!(!gives_a_reason("// Long on purpose:\nfn f() {}\n", 2));
    assert!(!gives_a_reason("// Long on purpose: x\n\nfn f() {}\n", 3));
}

#[test]
fn no_long_function_without_a_reason() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let mut measured = Vec::new();
    for path in paths {
        let rel = path.strip_prefix(&src).expect("under src/").to_path_buf();
        let name = rel.to_str().expect("UTF-8 path").to_string();
        // A `tests.rs` is a test module in a file of its own.
        if name.ends_with("tests.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("readable source");
        for (function, line, lines) in functions(&without_tests(&code_only(&source))) {
            let reason = lines > MAX_FUNCTION_LINES && gives_a_reason(&source, line);
            measured.push((lines, format!("src/{name}:{line} {function}"), reason));
        }
    }
    assert!(
        measured.len() > 500,
        "the functions were found: {}",
        measured.len()
    );
    measured.sort_by(|a, b| b.cmp(a));
    // `cargo test --test structure -- --nocapture` shows the longest, to re-measure.
    for (lines, at, reason) in measured.iter().take(15) {
        let why = if *reason { " (a reason given)" } else { "" };
        eprintln!("{lines:4} {at}{why}");
    }
    let over: Vec<String> = measured
        .iter()
        .filter(|(lines, _, reason)| *lines > MAX_FUNCTION_LINES && !reason)
        .map(|(lines, at, _)| format!("{lines:4} lines  {at}"))
        .collect();
    assert!(
        over.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines outside tests, without a `{LONG_MARK}...` line \
         above them: split them, or say why not\n{}",
        over.join("\n")
    );
}
