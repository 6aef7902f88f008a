//! The crate's shape, read from its source: knowledge between the top-level modules of `src/`
//! flows one way. Reads every `src/**/*.rs` (tests included), collects each `crate::` path (and
//! `super::` paths that climb to the crate root), builds the graph of top-level modules and fails
//! on any import circle, printing it. `lib.rs` and `main.rs` only list and use the modules.

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

/// The source without comments and string literals, so neither can add an edge.
fn code_only(source: &str) -> String {
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
                i = source[j + 1..]
                    .find(&close)
                    .map_or(bytes.len(), |e| j + 1 + e + close.len());
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
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

/// The top-level modules named right after a path that reaches the crate root: `a` in
/// `crate::a::b` and both in `crate::{a::X, b}`.
fn roots_after(rest: &str, into: &mut BTreeSet<String>) {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut at_item_start = true;
        let mut i = 0;
        while i < group.len() {
            let c = group[i..].chars().next().expect("in bounds");
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => at_item_start = true,
                c if c.is_whitespace() => {}
                _ if at_item_start => {
                    let name = ident(&group[i..]);
                    if !name.is_empty() && name != "self" {
                        into.insert(name.to_string());
                    }
                    at_item_start = false;
                }
                _ => {}
            }
            i += c.len_utf8();
        }
    } else {
        let name = ident(rest);
        if !name.is_empty() && name != "self" {
            into.insert(name.to_string());
        }
    }
}

/// Every top-level module the file's code names.
fn references(code: &str, depth: usize) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        roots_after(&code[at + "crate::".len()..], &mut found);
    }
    // `super::` from a file `depth` directories below src/ reaches the root after `depth` climbs
    // (a `mod.rs` counts as its directory).
    if depth > 0 {
        let climb = "super::".repeat(depth);
        for (at, _) in code.match_indices(&climb) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[at + climb.len()..];
            if ident(rest) != "super" {
                roots_after(rest, &mut found);
            }
        }
    }
    found
}

fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let tops: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(src).expect("under src/");
            let first = rel.components().next()?.as_os_str().to_str()?;
            Some(first.trim_end_matches(".rs").to_string())
        })
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let rel = file.strip_prefix(src).expect("under src/");
        let parts: Vec<&str> = rel
            .components()
            .map(|c| c.as_os_str().to_str().expect("UTF-8 path"))
            .collect();
        let top = parts[0].trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        // Module depth below the crate root: src/a.rs and src/a/mod.rs are 1, src/a/b.rs is 2.
        let depth = if parts.last() == Some(&"mod.rs") {
            parts.len() - 1
        } else {
            parts.len()
        };
        let source = std::fs::read_to_string(file).expect("readable source");
        let edges = graph.entry(top.clone()).or_default();
        for target in references(&code_only(&source), depth) {
            if target != top && tops.contains(&target) {
                edges.insert(target);
            }
        }
    }
    graph
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

#[test]
fn no_import_circle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let found = circles(&graph);
    let mut report = String::new();
    for component in &found {
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
    assert!(found.is_empty(), "import circles in src/:\n{report}");
}

#[test]
fn the_reader_sees_what_it_should() {
    // The reader itself, on the forms the crate uses: a path, a group, a climb to the root, and
    // the places a path must not count (comments, strings).
    let code = code_only(
        "use crate::a::X;\nuse crate::{b::Y, c};\n// crate::d\nlet s = \"crate::e\";\n\
         fn f() -> super::super::g::Z { crate::h::z() }\nlet r = r#\"crate::i\"#;",
    );
    let at_depth_1: Vec<String> = references(&code, 1).into_iter().collect();
    assert_eq!(at_depth_1, ["a", "b", "c", "h"]);
    let at_depth_2: Vec<String> = references(&code, 2).into_iter().collect();
    assert_eq!(at_depth_2, ["a", "b", "c", "g", "h"]);

    let mut graph = Graph::new();
    graph.entry("x".into()).or_default().insert("y".into());
    graph.entry("y".into()).or_default().insert("z".into());
    graph.entry("z".into()).or_default().insert("x".into());
    graph.entry("w".into()).or_default().insert("x".into());
    assert_eq!(circles(&graph), [vec!["x", "y", "z"]]);
}

#[test]
fn only_the_edges_read_the_command_line_and_the_settings() {
    // Knowledge flows inward: the commands read the command line, `config` turns it into each
    // module's own settings, and `service` builds the running server from them. A module deeper in
    // that imports `cli` or `config` would make a change of flags ripple into the request path.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let importers = |target: &str| -> Vec<&str> {
        graph
            .iter()
            .filter(|(from, to)| from.as_str() != target && to.contains(target))
            .map(|(from, _)| from.as_str())
            .collect()
    };
    assert_eq!(importers("cli"), ["commands", "config"]);
    assert_eq!(importers("config"), ["commands", "service"]);
}
