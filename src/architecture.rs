//! The shape of `src/`, checked: no two modules use each other, at the top level (`act`, `report`,
//! `controller`, …) or among the files of one directory module (`controller/reconcile.rs` and
//! `controller/remediate.rs`). Read from the sources' `crate::` and `super::` paths, leaving test
//! code out.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The source without its test module and its comments (doc links name modules too).
fn production(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of each path of a use tree's body (`{a::B, c, d::{e, f}}` → a, c, d).
fn first_segments(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut current) = (0usize, String::new());
    for ch in body.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            current.push(ch);
        }
    }
    out.push(current);
    out.into_iter()
        .filter_map(|p| {
            let segment = p.trim().split("::").next()?.trim().to_owned();
            let module = segment.chars().next()?.is_ascii_lowercase() && segment != "self";
            module.then_some(segment)
        })
        .collect()
}

/// The modules named right after each `prefix` (`crate::`, `super::`) in `text`.
fn named_after(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        // `super::super::x` is a path to a grandparent's sibling, not to a sibling.
        let before = &text[..i];
        if prefix == "super::" && before.ends_with("super::") {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        if rest.starts_with("super::") {
            continue;
        }
        if let Some(body) = rest.strip_prefix('{') {
            let mut depth = 1usize;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(body.len(), |(j, _)| j);
            out.extend(first_segments(&body[..end]));
        } else {
            out.extend(first_segments(
                rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or(""),
            ));
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A file's module under `root` at the first level below it (`controller/probing/mod.rs` →
/// `probing` under `src/controller`), or None for the root's own `mod.rs`/`lib.rs`.
fn first_level(root: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(root).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?.trim_end_matches(".rs").to_owned();
    (!matches!(name.as_str(), "mod" | "lib" | "main")).then_some(name)
}

fn is_test_file(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n == "tests.rs") || file.components().any(|c| c.as_os_str() == "tests")
}

/// Edges between the top-level modules of `src`.
fn top_level(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let Some(from) = first_level(src, &file) else {
            continue;
        };
        // Test-only modules: this file and the fixtures.
        if is_test_file(&file) || from == "architecture" || from == "fixtures" {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for to in named_after(&production(&text), "crate::") {
            if to != from {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

/// Edges among the files of each directory module (`super::x` from a file directly in it).
fn siblings(src: &Path) -> BTreeMap<PathBuf, Graph> {
    let mut graphs: BTreeMap<PathBuf, Graph> = BTreeMap::new();
    let files = rust_files(src);
    for file in &files {
        let Some(dir) = file.parent() else { continue };
        if dir == src || is_test_file(file) {
            continue;
        }
        let Some(from) = first_level(dir, file) else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        // The directory module's own modules, from the files already listed.
        let known: BTreeSet<String> = files.iter().filter_map(|f| first_level(dir, f)).collect();
        for to in named_after(&production(&text), "super::") {
            if to != from && known.contains(&to) {
                graphs
                    .entry(dir.to_path_buf())
                    .or_default()
                    .entry(from.clone())
                    .or_default()
                    .insert(to);
            }
        }
    }
    graphs
}

/// Every pair of modules that reach each other.
fn cycles(graph: &Graph) -> Vec<(String, String)> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        false
    };
    let mut found = Vec::new();
    for (a, tos) in graph {
        for b in tos {
            if a < b && reaches(b, a) {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

#[test]
fn the_parser_reads_use_trees() {
    let text = "use crate::{act::{self, Outcome}, api, plan::Plan};\nlet x = crate::clock::now();\n\
                use super::{Context, dereference::Target, probing};\nsuper::super::x::y();";
    assert_eq!(named_after(text, "crate::"), ["act", "api", "plan", "clock"]);
    assert_eq!(named_after(text, "super::"), ["dereference", "probing"]);
    let graph: Graph =
        [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
            .into_iter()
            .fold(Graph::new(), |mut g, (x, y)| {
                g.entry(x.into()).or_default().insert(y.into());
                g
            });
    assert_eq!(
        cycles(&graph),
        [("a".to_owned(), "b".to_owned()), ("b".into(), "c".into())]
    );
}

#[test]
fn no_two_modules_use_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let top = top_level(&src);
    assert!(
        top.contains_key("controller") && top.contains_key("act"),
        "read {top:?}"
    );
    let mut problems: Vec<String> = cycles(&top)
        .into_iter()
        .map(|(a, b)| format!("src/{a} and src/{b} use each other"))
        .collect();
    for (dir, graph) in siblings(&src) {
        for (a, b) in cycles(&graph) {
            let dir = dir.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&dir);
            problems.push(format!("{0}/{a} and {0}/{b} use each other", dir.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
