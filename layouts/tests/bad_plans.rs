//! Every file in tests/bad-plans is refused with exactly the message in its `.expected` sibling: the
//! field path, and the line and column in the file.

use std::fs;
use std::path::Path;

use layouts::{Plan, PlanFormat};

#[test]
fn every_bad_plan_is_refused_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-plans");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(&dir).expect("corpus").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else { continue };
        if ext != "toml" && ext != "json" {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        let text = fs::read_to_string(&path).expect("plan");
        let expected_path = path.with_extension("expected");
        let expected = fs::read_to_string(&expected_path).unwrap_or_else(|_| panic!("{} has no .expected file", name));
        match Plan::from_text(&text, PlanFormat::from_file_name(&name), &name) {
            Ok(_) => failures.push(format!("{name}: accepted, but should be refused with:\n{expected}")),
            Err(error) => {
                let got = error.to_string();
                if got.trim() != expected.trim() {
                    failures.push(format!("{name}:\n  expected: {}\n  got:      {}", expected.trim(), got.trim()));
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} bad plans found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
