//! Every file in tests/data/pools/invalid is rejected with exactly the
//! error written beside it (`NN-name.err`), naming the field path and value.

use std::fs;
use std::path::Path;

#[test]
fn invalid_configs_are_rejected_with_the_expected_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pools/invalid");
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "only {} invalid configs", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let text = fs::read_to_string(case).unwrap();
        let want = fs::read_to_string(case.with_extension("err")).unwrap();
        match fastpath::pools::config::parse(&text, "intel.com") {
            Ok(_) => failures.push(format!("{}: accepted", case.display())),
            Err(e) if e.to_string() == want.trim_end() => {}
            Err(e) => failures.push(format!(
                "{}:\n  want {}\n  got  {e}",
                case.display(),
                want.trim_end()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_reference_example_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pools/valid");
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = fs::read_to_string(&p).unwrap();
        if let Err(e) = fastpath::pools::config::parse(&text, "intel.com") {
            panic!("{}: {e}", p.display());
        }
    }
}
