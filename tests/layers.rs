//! The module layers of src/ (declared in src/layers.txt): every `crate::…` path (and
//! `roomcast::…` in main.rs) names a module of the importer's layer or of one below it; no
//! two top-level modules import each other; every top-level module is placed in the list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer index by module name (0 is the top).
fn layers(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).enumerate() {
        let (_, modules) = line.split_once(':').unwrap_or_else(|| panic!("src/layers.txt: {line:?} is not `layer: modules`"));
        for m in modules.split_whitespace() {
            assert!(out.insert(m.to_string(), i).is_none(), "src/layers.txt places {m} twice");
        }
    }
    out
}

/// The top-level module a source file belongs to (`src/job/state.rs` → `job`); None for lib.rs.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first.to_string()),
    }
}

/// The top-level modules a file's code names through `crate::` (or `roomcast::` from the
/// binary), comments left out: a doc link imports nothing.
fn imports(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Everything wrong with these sources (path relative to src/, text) against the layer list.
fn violations(sources: &[(PathBuf, String)], layers: &BTreeMap<String, usize>) -> Vec<String> {
    let mut wrong = vec![];
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    for (rel, text) in sources {
        let Some(module) = module_of(rel) else { continue };
        let Some(&own) = layers.get(&module) else {
            wrong.push(format!("src/{}: module `{module}` is in no layer of src/layers.txt: place it there", rel.display()));
            continue;
        };
        let prefix = if module == "main" { "roomcast::" } else { "crate::" };
        for used in imports(text, prefix) {
            if used == module {
                continue;
            }
            match layers.get(&used) {
                None => wrong.push(format!("src/{} names `{used}`, which is in no layer of src/layers.txt", rel.display())),
                Some(&theirs) if theirs < own => {
                    wrong.push(format!("src/{}: `{module}` imports `{used}`, a layer above it (upward import)", rel.display()))
                }
                Some(_) => {
                    edges.insert((module.clone(), used));
                }
            }
        }
    }
    for (a, b) in &edges {
        if a < b && edges.contains(&(b.clone(), a.clone())) {
            wrong.push(format!("`{a}` and `{b}` import each other"));
        }
    }
    // Longer cycles within a layer: follow the edges from every module.
    for start in layers.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = edges.iter().filter(|(a, _)| a == start).map(|(_, b)| b).collect();
        while let Some(m) = todo.pop() {
            if m == start {
                wrong.push(format!("`{start}` is part of an import cycle"));
                break;
            }
            if seen.insert(m.clone()) {
                todo.extend(edges.iter().filter(|(a, _)| a == m).map(|(_, b)| b));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    wrong
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.strip_prefix(root).unwrap().to_path_buf(), text));
        }
    }
}

#[test]
fn every_import_goes_down_the_declared_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers = layers(&std::fs::read_to_string(src.join("layers.txt")).unwrap());
    let mut files = vec![];
    sources(&src, &src, &mut files);
    // Every top-level module of src/ is placed, and every placed one exists.
    let modules: BTreeSet<String> = files.iter().filter_map(|(rel, _)| module_of(rel)).collect();
    for m in layers.keys() {
        assert!(modules.contains(m), "src/layers.txt places `{m}`, which src/ does not have");
    }
    let wrong = violations(&files, &layers);
    assert!(wrong.is_empty(), "module layers broken:\n  {}", wrong.join("\n  "));
}

/// The checker itself: an upward import, a cycle and an unplaced module are each found.
#[test]
fn the_checker_finds_upward_imports_cycles_and_unplaced_modules() {
    let layers = layers("top: api\nmid: job worker\nlow: spec\n");
    let file = |p: &str, t: &str| (PathBuf::from(p), t.to_string());
    let fine = [
        file("api/mod.rs", "use crate::job::manager::JobManager;\nuse crate::spec::JobSpec;"),
        file("job/mod.rs", "use crate::worker::X; // crate::api::Y in a comment imports nothing"),
        file("spec/mod.rs", "pub struct JobSpec;"),
    ];
    assert_eq!(violations(&fine, &layers), Vec::<String>::new());
    let upward = [file("spec/types.rs", "    let a = crate::job::x();")];
    assert_eq!(violations(&upward, &layers), ["src/spec/types.rs: `spec` imports `job`, a layer above it (upward import)"]);
    let cycle = [file("job/a.rs", "use crate::worker::W;"), file("worker/b.rs", "use crate::job::J;")];
    assert!(violations(&cycle, &layers).iter().any(|w| w == "`job` and `worker` import each other"));
    let unplaced = [file("dashboard.rs", "use crate::spec::JobSpec;")];
    assert!(violations(&unplaced, &layers)[0].contains("in no layer"));
}
