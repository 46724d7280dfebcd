//! What an application that embeds procvisor gets: a dependency tree with
//! no command-line crates, and a public surface of a few root items.

use std::process::Command;

#[test]
fn an_embedding_application_compiles_no_command_line_crates() {
    // `procvisor = { version = "…", default-features = false }`, as the
    // README tells embedders, is this tree.
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "procvisor",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"actix"), "not the tree expected:\n{tree}");
    for cli in [
        "clap",
        "indicatif",
        "ctrlc",
        "tracing-subscriber",
        "rand_distr",
    ] {
        assert!(
            !crates.contains(&cli),
            "{cli} is in an embedder's dependency tree:\n{tree}"
        );
    }
}

#[test]
fn an_outcome_is_an_error_so_question_mark_works() {
    fn run(report: procvisor::Report<u32>) -> Result<u32, Box<dyn std::error::Error>> {
        Ok(report.into_result()?)
    }
    let report = procvisor::Report {
        id: 1,
        kind: "x".into(),
        outcome: procvisor::Outcome::Failed(procvisor::JobError::Handler("no".into())),
        attempts: 1,
        evictions: 0,
        worker_pid: None,
        ran_for: None,
        history: Vec::new(),
    };
    let e = run(report).unwrap_err();
    assert!(e.to_string().contains("no"), "{e}");
    assert!(e.source().is_some(), "the handler's error is the source");
}
