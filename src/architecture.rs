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

/// The stages between observe and report, and the records they pass along: plain data only.
const CORE: [&str; 8] = [
    "evaluate",
    "plan",
    "probing",
    "record.rs",
    "observation.rs",
    "act/outcome.rs",
    "act/remediation.rs",
    "rbac.rs",
];

/// The types the CRD declares (`src/api/{spec,status,remediation,crd}.rs`), by name.
fn crd_types(src: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in ["spec.rs", "status.rs", "remediation.rs", "crd.rs"] {
        let text = fs::read_to_string(src.join("api").join(file)).unwrap();
        for line in production(&text).lines() {
            let line = line.trim_start();
            for kind in ["pub struct ", "pub enum "] {
                if let Some(rest) = line.strip_prefix(kind) {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// The words of `text` that are among `names`, or name a Kubernetes crate. A variant path
/// (`TriggerSettings::Restarts`) names the variant, not a type.
fn kubernetes_words(text: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = BTreeSet::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (is_word(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                start = None;
                let word = &text[s..i];
                let variant = text[..s]
                    .strip_suffix("::")
                    .and_then(|before| before.rsplit(|c: char| !is_word(c)).next())
                    .is_some_and(|owner| owner.starts_with(|c: char| c.is_ascii_uppercase()));
                if !variant && (names.contains(word) || matches!(word, "k8s_openapi" | "kube")) {
                    found.insert(word.to_owned());
                }
            }
            _ => {}
        }
    }
    found
}

#[test]
fn the_core_names_no_kubernetes_type() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let names = crd_types(&src);
    assert!(
        names.contains("AppHealthPolicyStatus") && names.contains("RemediationRecord"),
        "read {names:?}"
    );
    assert_eq!(
        kubernetes_words(
            "use k8s_openapi::Time; fn f(s: &AppHealthPolicyStatus, x: Statuses, t: Kind::Ladder)",
            &names
        ),
        ["AppHealthPolicyStatus", "k8s_openapi"].map(str::to_owned).into()
    );
    let mut problems = Vec::new();
    for part in CORE {
        let path = src.join(part);
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path]
        };
        assert!(!files.is_empty(), "{part} not found");
        for file in files.iter().filter(|f| !is_test_file(f)) {
            let found = kubernetes_words(&production(&fs::read_to_string(file).unwrap()), &names);
            if !found.is_empty() {
                let shown = file.strip_prefix(&src).unwrap_or(file).display().to_string();
                problems.push(format!("src/{shown} names {found:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
