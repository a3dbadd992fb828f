//! The documents agree with the code: README's settings table with the variables the code reads,
//! docs/lb.md's with the lb's, README's walk-through with `scripts/walkthrough.sh`, the layout
//! section with the files, every link with a file of the repository, and every cite of
//! docs/DESIGN.md with one of its sections. A clone must stand alone: nothing points outside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Every file under `dir` (relative to the root) whose name ends with one of `exts`.
fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root().join(dir)];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "node_modules" && name != "target" && !name.starts_with('.') {
                    todo.push(path);
                }
            } else if exts.iter().any(|e| name.ends_with(e)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The text of the `## <title>` section of a markdown document, up to the next `## `.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let heading = format!("\n## {title}\n");
    let start = doc.find(&heading).unwrap_or_else(|| panic!("no section '## {title}'")) + heading.len();
    let rest = &doc[start..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// `SEATGATE_*` names in `text` (a name is upper-case letters, digits and `_`).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("SEATGATE_") {
        let tail = &rest[i..];
        let end =
            tail.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches('_');
        if name.len() > "SEATGATE_".len() {
            out.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// The variables named in the first cell of each row of the markdown tables in `text`.
fn table_rows(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| l.strip_prefix('|')).filter_map(|l| l.split('|').next()).flat_map(names_in).collect()
}

/// `"SEATGATE_..."` string literals: the names Rust code reads.
fn literals_in(code: &str) -> BTreeSet<String> {
    names_in(code).into_iter().filter(|n| code.contains(&format!("\"{n}\""))).collect()
}

fn difference(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
    a.difference(b).cloned().collect()
}

#[test]
fn every_setting_the_code_reads_is_in_the_readme_table_and_every_row_is_read() {
    // Arrange
    let mut code = BTreeSet::new();
    for file in files("src", &[".rs"]).into_iter().chain(files("workers/src", &[".rs"])) {
        code.extend(literals_in(&std::fs::read_to_string(&file).expect("readable")));
    }
    // Act
    let table = table_rows(section(&read("README.md"), "Configuration"));
    // Assert
    assert!(code.len() > 30, "the scan found too few variables: {code:?}");
    assert_eq!(difference(&code, &table), Vec::<String>::new(), "read by the code, missing from README's table");
    assert_eq!(difference(&table, &code), Vec::<String>::new(), "in README's table, read by no code");
}

#[test]
fn every_lb_setting_is_in_the_table_of_docs_lb_md_and_every_row_is_one() {
    // Arrange: the lb names its settings once, as a list of keys after one prefix.
    let config = read("lb/src/config.rs");
    let keys = &config[config.find("const KEYS").expect("KEYS")..];
    let keys = &keys[..keys.find("];").expect("end of KEYS")];
    let code: BTreeSet<String> = keys.split('"').skip(1).step_by(2).map(|k| format!("SEATGATE_LB_{k}")).collect();
    // Act
    let doc = read("docs/lb.md");
    let table = table_rows(section(&doc, "Settings"));
    // Assert
    assert!(code.len() > 15, "{code:?}");
    assert_eq!(difference(&code, &table), Vec::<String>::new(), "lb settings missing from docs/lb.md");
    assert_eq!(difference(&table, &code), Vec::<String>::new(), "rows of docs/lb.md the lb does not read");
    assert!(doc.contains("SEATGATE_LB_CONFIG") && doc.contains("SEATGATE_LOG_FORMAT"));
}

#[test]
fn every_knob_a_script_reads_is_documented() {
    // Arrange: `${SEATGATE_X:-default}` is a script's own setting.
    let mut knobs = BTreeSet::new();
    for file in files("scripts", &[".sh"]) {
        let text = std::fs::read_to_string(&file).expect("readable");
        for part in text.split("${").skip(1) {
            if let Some((name, _)) = part.split_once(":-") {
                knobs.extend(names_in(name).into_iter().filter(|n| n == name));
            }
        }
    }
    let documented: BTreeSet<String> =
        names_in(&read("README.md")).union(&names_in(&read("docs/lb.md"))).cloned().collect();
    // Act
    let missing = difference(&knobs, &documented);
    // Assert
    assert!(knobs.contains("SEATGATE_UP_INSTANCES"), "{knobs:?}");
    assert_eq!(missing, Vec::<String>::new(), "script settings named nowhere in README.md or docs/lb.md");
}

/// The lines between `# >>> walk-through` and `# <<< walk-through` of the script.
fn walkthrough_of_script() -> String {
    let script = read("scripts/walkthrough.sh");
    let start = script.find("# >>> walk-through\n").expect("start marker") + "# >>> walk-through\n".len();
    let end = script.find("# <<< walk-through\n").expect("end marker");
    script[start..end].to_owned()
}

/// The fenced block after README's `<!-- walk-through: scripts/walkthrough.sh -->` comment.
fn walkthrough_of_readme() -> String {
    let readme = read("README.md");
    let marker = "<!-- walk-through: scripts/walkthrough.sh -->\n```sh\n";
    let start = readme.find(marker).expect("README marks the walk-through block") + marker.len();
    let end = start + readme[start..].find("```\n").expect("end of the block");
    readme[start..end].to_owned()
}

#[test]
fn the_readme_walk_through_is_the_script_line_for_line() {
    // Arrange
    let script = walkthrough_of_script();
    // Act
    let readme = walkthrough_of_readme();
    // Assert
    assert!(script.contains("/checkout"), "the marked part of the script is not the walk-through");
    for (i, (a, b)) in script.lines().zip(readme.lines()).enumerate() {
        assert_eq!(a, b, "line {} of the walk-through differs (scripts/walkthrough.sh first, README second)", i + 1);
    }
    assert_eq!(script.lines().count(), readme.lines().count(), "README's walk-through and the script differ in length");
}

#[test]
fn the_layout_section_names_every_folder_script_and_document() {
    // Arrange
    let readme = read("README.md");
    let layout = section(&readme, "Repository layout");
    let mut wanted: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(root()).expect("root").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && !name.starts_with('.') && name != "target" && name != "tmp" {
            wanted.push(format!("{name}/"));
        }
    }
    wanted.push("tests/browser/".into());
    for file in files("scripts", &[".sh"]).into_iter().chain(files("docs", &[".md"])) {
        wanted.push(file.file_name().expect("name").to_string_lossy().into_owned());
    }
    // Act
    let missing: Vec<&String> = wanted.iter().filter(|w| !layout.contains(w.as_str())).collect();
    // Assert
    assert!(wanted.iter().any(|w| w == "up.sh"), "{wanted:?}");
    assert_eq!(missing, Vec::<&String>::new(), "not named in README's Repository layout section");
}

/// Relative link targets of a markdown document.
fn links(doc: &str) -> Vec<String> {
    doc.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|t| t.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|t| !t.is_empty() && !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

#[test]
fn every_link_of_the_readme_and_docs_resolves_inside_the_repository() {
    // Arrange
    let mut docs = vec![root().join("README.md")];
    docs.extend(files("docs", &[".md"]));
    let mut broken = Vec::new();
    // Act
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("readable");
        let dir = doc.parent().expect("a folder");
        for target in links(&text) {
            let resolved = dir.join(&target);
            let inside = resolved.canonicalize().map(|p| p.starts_with(root().canonicalize().expect("root")));
            if !matches!(inside, Ok(true)) {
                broken.push(format!("{}: {target}", doc.strip_prefix(root()).unwrap_or(doc).display()));
            }
        }
        if text.contains("../shared") {
            broken.push(format!("{}: points at ../shared", doc.display()));
        }
    }
    // Assert
    assert!(docs.iter().any(|d| d.ends_with("docs/DESIGN.md")), "docs/DESIGN.md is missing");
    assert_eq!(broken, Vec::<String>::new(), "links that leave the repository or lead nowhere");
}

/// The numbers of the `## N.` headings of docs/DESIGN.md.
fn design_sections() -> BTreeSet<u32> {
    read("docs/DESIGN.md")
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|l| l.split('.').next()?.parse().ok())
        .collect()
}

#[test]
fn every_cite_of_the_design_names_docs_design_md_and_a_section_it_has() {
    // Arrange
    let sections = design_sections();
    let this_file = Path::new(file!()).file_name().expect("name").to_owned();
    let mut bad = Vec::new();
    let sources = ["src", "lb", "workers", "benches", "tests", "scripts", "docs"]
        .iter()
        .flat_map(|d| files(d, &[".rs", ".sh", ".md", ".toml", ".mjs"]))
        .chain([root().join("README.md")])
        .filter(|f| f.file_name() != Some(this_file.as_os_str()));
    // Act
    for file in sources {
        let text = std::fs::read_to_string(&file).expect("readable");
        let shown = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
        for (i, _) in text.match_indices("DESIGN.md") {
            let before = &text[..i];
            let local = shown == "docs/DESIGN.md" || (shown.starts_with("docs/") && !before.ends_with("../"));
            if !before.ends_with("docs/") && !local {
                bad.push(format!("{shown}: cites DESIGN.md without docs/"));
            }
            let after = text[i + "DESIGN.md".len()..].trim_start();
            if let Some(rest) = after.strip_prefix('§') {
                let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if !n.parse().is_ok_and(|n: u32| sections.contains(&n)) {
                    bad.push(format!("{shown}: docs/DESIGN.md §{n} is no section"));
                }
            }
        }
    }
    // Assert
    assert!(sections.len() >= 9, "docs/DESIGN.md has too few numbered sections: {sections:?}");
    assert_eq!(bad, Vec::<String>::new());
}
