//! The contract held together: the duration grammar and the CRD's pattern admit the same
//! spellings, the configuration reference in docs/configuration.md is generated from the
//! option table, every route survives its path, config files read in both of Flink's shapes,
//! and no config key, REST path or job-state name is spelled outside this crate.

use std::path::{Path, PathBuf};
use weir_contract::duration::{self, DurationError};
use weir_contract::options::{self, OPTIONS, OptionType, Section};
use weir_contract::rest::{self, Route};
use weir_contract::{JobState, config_file};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Duration-like strings: mostly near the grammar (digits, spaces, unit spellings in mixed
/// case), some mangled (a unit cut short, an extra letter, a sign, a dot, a tab).
pub fn generated_durations(n: usize) -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let noise = [
        "", "", "", "x", "w", "-", ".5", "\t", "S", "e", " ", "mss", "0",
    ];
    (0..n)
        .map(|_| {
            let mut s = String::new();
            if rng.below(20) == 0 {
                s.push(' ');
            }
            for _ in 0..rng.below(4) + usize::from(rng.below(10) > 0) {
                s.push(char::from(b'0' + rng.below(10) as u8));
            }
            if rng.below(25) == 0 {
                s.push_str("99999999999999999999");
            }
            s.push_str(&" ".repeat(rng.below(3).saturating_sub(1)));
            if rng.below(6) > 0 {
                let (unit, _) = duration::UNITS[rng.below(duration::UNITS.len())];
                let cut = if rng.below(8) == 0 {
                    rng.below(unit.len() + 1)
                } else {
                    unit.len()
                };
                for c in unit[..cut].chars() {
                    s.push(if rng.below(4) == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    });
                }
            }
            s.push_str(noise[rng.below(noise.len())]);
            s
        })
        .collect()
}

#[test]
fn the_crd_pattern_is_the_grammar_derived_from_the_unit_table() {
    assert_eq!(duration::PATTERN, duration::pattern());
}

#[test]
fn a_generated_duration_matches_the_pattern_exactly_when_it_parses() {
    let pattern = regex::Regex::new(duration::PATTERN).unwrap();
    let (mut accepted, mut rejected) = (0, 0);
    for text in generated_durations(20_000) {
        let parsed = duration::parse(&text);
        let syntactic = !matches!(
            parsed,
            Err(DurationError::NoNumber | DurationError::UnknownUnit(_))
        );
        assert_eq!(
            pattern.is_match(&text),
            syntactic,
            "{text:?}: pattern and parser disagree ({parsed:?})"
        );
        if parsed.is_ok() {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    assert!(
        accepted > 5_000 && rejected > 2_000,
        "{accepted} / {rejected}"
    );
}

#[test]
fn durations_read_as_flink_writes_them() {
    let ms = |t: &str| duration::parse(t).map(|d| d.as_millis());
    assert_eq!(ms("500ms"), Ok(500));
    assert_eq!(ms("250"), Ok(250));
    assert_eq!(ms("10 s"), Ok(10_000));
    assert_eq!(ms("2MIN"), Ok(120_000));
    assert_eq!(ms("5m"), Ok(300_000));
    assert_eq!(ms("5 minutes"), Ok(300_000));
    assert_eq!(ms("1h"), Ok(3_600_000));
    assert_eq!(ms("1d"), Ok(86_400_000));
    assert_eq!(ms("7 days"), Ok(7 * 86_400_000));
    assert_eq!(duration::parse("s"), Err(DurationError::NoNumber));
    assert_eq!(
        duration::parse("10w"),
        Err(DurationError::UnknownUnit("w".into()))
    );
    assert!(
        duration::parse("999999999999999999d")
            .unwrap_err()
            .to_string()
            .contains("too large")
    );
    assert_eq!(duration::parse(" 1s"), Err(DurationError::NoNumber));
}

#[test]
fn every_default_is_a_value_of_its_type() {
    for o in OPTIONS {
        let d = o.default;
        let ok = d.is_empty()
            || match o.ty {
                OptionType::Integer => d.parse::<u64>().is_ok(),
                OptionType::Boolean => d == "true" || d == "false",
                OptionType::Duration => duration::parse(d).is_ok(),
                OptionType::MemorySize => d
                    .trim_end_matches(char::is_alphabetic)
                    .parse::<u64>()
                    .is_ok(),
                OptionType::Fraction => d.parse::<f64>().is_ok_and(|f| (0.0..1.0).contains(&f)),
                OptionType::Number => d.parse::<f64>().is_ok(),
                OptionType::Port => d.parse::<u16>().is_ok(),
                OptionType::Enum(words) => words.contains(&d),
                OptionType::Text => true,
            };
        assert!(ok, "{}: default {d:?} is not a {}", o.key, o.ty.name());
        assert_eq!(
            OPTIONS.iter().filter(|p| p.key == o.key).count(),
            1,
            "{} listed twice",
            o.key
        );
    }
    assert_eq!(
        options::nearest("paralelism.default"),
        "parallelism.default"
    );
}

/// Set `WEIR_BLESS=1` to rewrite the generated tables after changing the option table.
#[test]
fn the_configuration_reference_in_the_docs_is_generated_from_the_option_table() {
    let path = root().join("docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let current = options::update_reference(&doc).unwrap();
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(&path, &current).unwrap();
        return;
    }
    assert!(
        doc == current,
        "docs/configuration.md is stale: its option tables differ from weir_contract::options. \
         Regenerate with: WEIR_BLESS=1 cargo test --workspace --test contract"
    );
    for section in Section::ALL {
        for o in OPTIONS.iter().filter(|o| o.section == section) {
            assert!(doc.contains(&format!("| `{}` |", o.key)), "{}", o.key);
        }
    }
}

#[test]
fn every_route_is_parsed_back_from_its_path() {
    let job = || "5f0c2a1e9d8b47a6b3c2d1e0f9a8b7c6".to_string();
    let routes = [
        Route::Overview,
        Route::Config,
        Route::TaskManagers,
        Route::Metrics,
        Route::Healthz,
        Route::Readyz,
        Route::Jobs,
        Route::JobsOverview,
        Route::Job { job: job() },
        Route::Checkpoints { job: job() },
        Route::CheckpointConfig { job: job() },
        Route::Exceptions { job: job() },
        Route::TriggerSavepoint { job: job() },
        Route::Stop { job: job() },
        Route::SavepointStatus {
            job: job(),
            trigger: "upgrade-42".into(),
        },
        Route::JobPlan { job: job() },
        Route::Vertex {
            job: job(),
            vertex: "cbc357ccb763df2852fee8c4fc7d55f2".into(),
        },
        Route::VertexBackPressure {
            job: job(),
            vertex: "cbc357ccb763df2852fee8c4fc7d55f2".into(),
        },
        Route::VertexWatermarks {
            job: job(),
            vertex: "cbc357ccb763df2852fee8c4fc7d55f2".into(),
        },
        Route::CheckpointDetails {
            job: job(),
            checkpoint: 42,
        },
        Route::CheckpointSubtasks {
            job: job(),
            checkpoint: 42,
            vertex: "cbc357ccb763df2852fee8c4fc7d55f2".into(),
        },
        Route::TaskManager {
            taskmanager: "local".into(),
        },
        Route::JobManagerConfig,
        Route::Dashboard {
            asset: rest::DASHBOARD_INDEX.into(),
        },
        Route::Dashboard {
            asset: "app.js".into(),
        },
    ];
    for route in routes {
        assert_eq!(
            Route::parse(&route.path()),
            Some(route.clone()),
            "{route:?}"
        );
    }
    assert_eq!(Route::parse("/nothing/here"), None);
    assert_eq!(
        Route::Dashboard {
            asset: "index.html".into()
        }
        .path(),
        "/"
    );
    assert_eq!(
        Route::parse(&format!("/jobs/{}/checkpoints/details/latest", job())),
        None,
        "a checkpoint id is a number"
    );
    assert_eq!(rest::cancel_path("a1"), "/jobs/a1?mode=cancel");
}

#[test]
fn job_states_read_back_from_their_names() {
    for state in JobState::ALL {
        assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        let json = serde_json::to_value(state).unwrap();
        assert_eq!(serde_json::from_value::<JobState>(json).unwrap(), state);
    }
    assert!("BOGUS".parse::<JobState>().is_err());
}

#[test]
fn flat_and_nested_config_files_give_the_same_entries_with_their_lines() {
    let flat = "# checkpoints\nexecution.checkpointing.interval: 10s\nparallelism.default: 4\n";
    let nested = "execution:\n  checkpointing:\n    interval: 10s   # every 10 s\nparallelism:\n  default: 4\n";
    let pairs = |text| {
        config_file::parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value, e.line))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pairs(flat),
        [
            ("execution.checkpointing.interval".into(), "10s".into(), 2),
            ("parallelism.default".into(), "4".into(), 3)
        ]
    );
    assert_eq!(
        pairs(nested),
        [
            ("execution.checkpointing.interval".into(), "10s".into(), 3),
            ("parallelism.default".into(), "4".into(), 5)
        ]
    );
    let same_leaf = "a:\n  b: 1\nb: 2\n";
    assert_eq!(
        pairs(same_leaf),
        [("a.b".into(), "1".into(), 2), ("b".into(), "2".into(), 3)]
    );
    assert_eq!(pairs(""), []);
}

#[test]
fn a_malformed_config_file_is_refused_naming_the_line() {
    let e = config_file::parse("a: 1\nb: [1, 2]\n").unwrap_err();
    assert_eq!(e.line(), 2, "{e}");
    assert!(e.to_string().contains("'b' must be a single value"), "{e}");
    let e = config_file::parse("a: 1\nb: 'unclosed\n").unwrap_err();
    assert!(
        matches!(e, config_file::ConfigFileError::Syntax { line, .. } if line >= 2),
        "{e}"
    );
    let e = config_file::parse("a: 1\na: 2\n").unwrap_err();
    assert!(e.to_string().contains("duplicate"), "{e}");
    assert!(config_file::parse("just text").is_err());
}

/// Every string literal of a Rust source, with its line, outside comments.
fn literals(source: &str) -> Vec<(usize, String)> {
    let bytes = source.as_bytes();
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\'' => {
                // A char literal ('x', '\n', '"') or a lifetime ('a).
                if bytes.get(i + 1) == Some(&b'\\') {
                    i += 3;
                    while i < bytes.len() && bytes[i] != b'\'' {
                        i += 1;
                    }
                } else if bytes.get(i + 2) == Some(&b'\'') {
                    i += 2;
                }
            }
            b'r' if matches!(bytes.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
                if bytes.get(i + 1 + hashes) == Some(&b'"') {
                    let start = i + 2 + hashes;
                    let close = format!("\"{}", "#".repeat(hashes));
                    let end = source[start..]
                        .find(&close)
                        .map_or(source.len(), |e| start + e);
                    out.push((line, source[start..end].to_string()));
                    line += source[start..end].matches('\n').count();
                    i = end + close.len();
                    continue;
                }
            }
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let text = &source[start..i.min(source.len())];
                out.push((line, text.to_string()));
                line += text.matches('\n').count();
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// What a literal spells that belongs to the contract, if anything.
fn contract_name_in(literal: &str) -> Option<String> {
    if let Some(o) = OPTIONS.iter().find(|o| {
        literal.match_indices(o.key).any(|(at, _)| {
            let before = literal[..at].chars().next_back();
            let after = literal[at + o.key.len()..].chars().next();
            let word =
                |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || "._-".contains(c));
            !word(before) && !word(after)
        })
    }) {
        return Some(format!("config key {}", o.key));
    }
    if let Some(s) = JobState::ALL.iter().find(|s| {
        literal
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == s.as_str())
    }) {
        return Some(format!("job state {s}"));
    }
    let paths = [
        "/jobs",
        "/overview",
        "/taskmanagers",
        "/healthz",
        "/readyz",
        "/metrics",
    ];
    if let Some(p) = paths
        .iter()
        .find(|p| literal.starts_with(*p) || literal.contains(&format!("{p}/")))
    {
        return Some(format!("REST path {p}"));
    }
    None
}

/// Sources allowed to spell contract names, and why.
const ALLOWED: &[(&str, &str)] = &[
    // Being reworked in parallel with this crate's introduction: their messages still name
    // keys in prose, and the runtime's `JobStatus::as_str` and checkpoint paths should move to
    // `weir_contract::JobState` and `weir_contract::layout` with that work.
    (
        "worker/engine/src/runtime/",
        "engine runtime, being reworked",
    ),
    ("worker/engine/src/state/", "engine state, being reworked"),
    (
        "worker/engine/src/connectors/",
        "engine connectors, being reworked",
    ),
    ("worker/sql/", "SQL, being reworked"),
    ("worker/kafka/", "Kafka connector, being reworked"),
    // The operator's own lifecycle states (`StreamJob` status) and its own HTTP endpoints.
    (
        "operator/src/metrics.rs",
        "the operator's own states and endpoints",
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            // Tests, benchmarks and examples may spell what a user would write.
            if !["tests", "benches", "examples", "target", "contract", ".git"]
                .contains(&name.as_str())
            {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_config_key_rest_path_or_job_state_is_spelled_outside_the_contract() {
    let root = root();
    let mut files = Vec::new();
    for dir in ["worker", "operator", "e2e"] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} sources", files.len());
    let mut found = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if ALLOWED
            .iter()
            .any(|(prefix, _)| relative.starts_with(prefix))
        {
            continue;
        }
        let source = std::fs::read_to_string(file).unwrap();
        // Unit tests at the end of a file may spell what a user would write.
        let code = source.split("#[cfg(test)]").next().unwrap_or("");
        for (line, literal) in literals(code) {
            if let Some(what) = contract_name_in(&literal) {
                found.push(format!("{relative}:{line}: {what} in {literal:?}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "spelled outside weir-contract (use its constants):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_default_ports_are_the_option_defaults() {
    assert_eq!(
        options::RPC_PORT.default,
        options::DEFAULT_RPC_PORT.to_string()
    );
    assert!(
        options::REST_PORT
            .description
            .contains(&rest::DEFAULT_PORT.to_string())
    );
}
