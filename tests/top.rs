//! `procvisor top` in a real terminal: tmux runs it, and the test reads the
//! screen as a person would see it, before and after a job arrives.
//!
//! Without tmux the test says so and skips, unless `PROCVISOR_REQUIRE_TMUX`
//! is set (as CI sets it), when it fails.

mod common;
mod pg;

use std::process::Command;
use std::time::Duration;

use procvisor::store::NewJob;
use serde_json::json;

/// tmux on a private server of this test.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn tmux() -> Option<Tmux> {
    if Command::new("tmux").arg("-V").output().is_err() {
        if std::env::var_os("PROCVISOR_REQUIRE_TMUX").is_some() {
            panic!("tmux is required (PROCVISOR_REQUIRE_TMUX is set) but cannot be run");
        }
        eprintln!("\n*** SKIPPED: no tmux for the terminal view test; install it (apt-get install tmux)\n");
        return None;
    }
    Some(Tmux(format!("procvisor-top-{}", std::process::id())))
}

#[test]
fn top_draws_the_job_queue_in_a_terminal_and_redraws_when_a_job_arrives() {
    let Some(t) = tmux() else {
        return;
    };
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("top").await else {
            return;
        };
        store
            .submit(&NewJob::new("echo", json!(1)).queue("first").priority(4))
            .await
            .unwrap();
        let command = format!(
            "{} top --db '{url}' --every 0.2",
            env!("CARGO_BIN_EXE_procvisor")
        );
        let out = t.cmd(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "120",
            "-y",
            "40",
            &command,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut screen = String::new();
        let drawn = common::eventually(Duration::from_secs(10), || {
            screen = t.screen();
            screen.contains("procvisor top") && screen.contains("first")
        });
        assert!(drawn, "{screen}");
        let line = screen.lines().find(|l| l.starts_with("first")).unwrap();
        assert!(
            line.contains("available") && line.contains("p4:1"),
            "{line}"
        );
        assert!(screen.contains("(Ctrl-C to quit)"), "{screen}");
        assert!(!screen.contains("second"), "{screen}");

        // A job arrives: the next redraw shows it, with nothing typed.
        store
            .submit(&NewJob::new("echo", json!(2)).queue("second").priority(9))
            .await
            .unwrap();
        let redrawn = common::eventually(Duration::from_secs(10), || {
            screen = t.screen();
            screen
                .lines()
                .any(|l| l.starts_with("second") && l.contains("p9:1"))
        });
        assert!(redrawn, "{screen}");

        // Ctrl-C ends it.
        t.cmd(&["send-keys", "-t", "top", "C-c"]);
        let gone = common::eventually(Duration::from_secs(10), || {
            !t.cmd(&["has-session", "-t", "top"]).status.success()
        });
        assert!(gone, "top did not end on Ctrl-C: {}", t.screen());
    });
}

#[test]
fn top_on_a_pipe_prints_one_picture_and_exits() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("top_pipe").await else {
            return;
        };
        store
            .submit(&NewJob::new("echo", json!(1)).queue("piped"))
            .await
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_procvisor"))
            .args(["top", "--db", &url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("piped") && l.contains("available")),
            "{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "no terminal codes on a pipe: {text:?}"
        );
        let bad = Command::new(env!("CARGO_BIN_EXE_procvisor"))
            .args(["top", "--db", &url, "--every", "0.01"])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("0.1 to 3600"));
    });
}
