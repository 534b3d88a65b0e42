//! The layer rule of [`crate`] as a test: every module's code (its test modules aside, which
//! may exercise a layer together with the ones above it) names only modules of its own layer
//! or of lower ones. The source files are read as text, so a new upward `crate::` path fails
//! here before it becomes a loop between modules.

use std::path::Path;

/// The engine's layers, lowest first (as the crate documentation lists them).
const LAYERS: &[&[&str]] = &[
    &["error", "time", "keygroup", "config", "bytes"],
    &["state", "timers"],
    &["checkpoint"],
    &["runtime"],
    &["connectors", "window", "join", "api", "testing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The code of a source file without comments and without its trailing `mod tests`.
fn code(source: &str) -> String {
    let mut out = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        // Line and doc comments (`//`, `///`, `//!`); no `//` appears in a string literal
        // followed by `crate::` in this crate.
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The top-level modules named by `crate::` paths (and `super::super::` from a module two
/// deep) in `code`, grouped imports (`crate::{a::X, b}`) included.
fn named_modules(code: &str, depth: usize) -> Vec<String> {
    let code = if depth >= 2 {
        code.replace("super::super::", "crate::")
    } else {
        code.to_string()
    };
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        // Not the tail of another path (`weir_crate::`, `$crate::`).
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        item_start = false;
                        found.push(ident(&group[j..]));
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    found
}

/// Every upward reference in the files under `src`, as `file: module (layer) -> module
/// (layer)`, plus modules that belong to no layer.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("src is readable").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(src).expect("under src");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let module = parts[0].trim_end_matches(".rs").to_string();
        if module == "lib" || module == "layer_rule" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            out.push(format!(
                "{}: module '{module}' is in no layer; add it to LAYERS (and the crate docs)",
                rel.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(&path).expect("source is readable");
        for named in named_modules(&code(&source), parts.len()) {
            match layer_of(&named) {
                Some(l) if l > own => out.push(format!(
                    "{}: {module} (layer {own}) uses crate::{named} (layer {l})",
                    rel.display()
                )),
                _ => {}
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn no_module_uses_a_module_of_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "a lower layer uses a higher one; move the type to the layer it belongs to:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_plain_grouped_and_nested_paths_and_skips_comments_and_tests() {
    let source = "use crate::runtime::Rec;\n\
                  use crate::{checkpoint::Barrier, time};\n\
                  fn f() { let _ = super::super::api::x(); }\n\
                  /// See [`crate::window`].\n\
                  #[cfg(test)]\n\
                  mod tests { use crate::join::X; }\n";
    assert_eq!(
        named_modules(&code(source), 2),
        ["runtime", "checkpoint", "time", "api"]
    );
}
