//! Capabilities import each other in one direction only (docs/DESIGN.md §1): the folders of
//! `src/` form no loop through their `crate::<folder>` paths. Comments and `#[cfg(test)]` tails
//! are skipped; a use of another folder anywhere else counts as an import of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` tail.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// Every `crate::x` and every name inside `use crate::{x, y::z}` of `code`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or_default();
            for part in group.split(',') {
                names.insert(ident(part.trim()));
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names
}

/// The import graph between the folders of `src/`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let folders: BTreeSet<String> = std::fs::read_dir(src)
        .expect("src")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let mut edges = BTreeMap::new();
    for folder in &folders {
        let mut files = Vec::new();
        rust_files(&src.join(folder), &mut files);
        let mut to = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable");
            to.extend(crate_paths(&code(&text)).into_iter().filter(|n| n != folder && folders.contains(n)));
        }
        edges.insert(folder.clone(), to);
    }
    edges
}

/// A loop through `start`, if any: the path back to it.
fn loop_through(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in edges.get(&node).into_iter().flatten() {
            if next == start {
                let mut found = path.clone();
                found.push(start.to_owned());
                return Some(found);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn the_folders_of_src_import_each_other_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    let loops: Vec<String> = edges.keys().filter_map(|f| loop_through(&edges, f)).map(|l| l.join(" -> ")).collect();
    assert!(loops.is_empty(), "capability folders import each other in a loop:\n{}", loops.join("\n"));
}

#[test]
fn the_check_sees_imports_in_use_groups_and_plain_paths_but_not_in_comments() {
    let code = code(
        "use crate::{auth::AuthUser, holds};\n// crate::ledger\nlet x = crate::catalog::repo::f();\n#[cfg(test)]\nuse crate::checkout;",
    );
    assert_eq!(crate_paths(&code), BTreeSet::from(["auth".into(), "holds".into(), "catalog".into()]));
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("d".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(loop_through(&edges, "a"), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    assert_eq!(loop_through(&edges, "d"), None);
}
