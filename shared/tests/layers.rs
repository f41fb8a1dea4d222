//! The layers of shared/src (docs/architecture.md): a module imports only from its own layer
//! and those below it. Doc comments may point anywhere; code may not point up.

use std::path::{Path, PathBuf};

/// Bottom to top.
const LAYERS: &[&str] = &["error", "domain", "config", "adapters", "app", "usecases", "http", "lambda"];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == module)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The layers a line of code names with `crate::<layer>`.
fn named_layers(line: &str) -> Vec<&str> {
    line.match_indices("crate::")
        .map(|(i, _)| {
            let rest = &line[i + "crate::".len()..];
            rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or_default()
        })
        .collect()
}

#[test]
fn nothing_imports_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    for file in files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs");
        let Some(own) = rank(top) else { continue };
        for (n, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for layer in named_layers(line) {
                if rank(layer).is_some_and(|r| r > own) {
                    upward.push(format!("{}:{}: {top} uses crate::{layer}", relative.display(), n + 1));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports pointing up a layer:\n{}", upward.join("\n"));
}

#[test]
fn a_line_names_the_layers_it_uses() {
    assert_eq!(named_layers("use crate::adapters::store::Db; crate::http::x"), ["adapters", "http"]);
    assert!(named_layers("use std::sync::Arc;").is_empty());
}
