//! The test scheduler's bus done right, with real processes on a real
//! PostgreSQL: two `procvisor producer --db` and two `procvisor
//! test-scheduler --db`; every produced job is run and ends exactly once,
//! both schedulers take part, and nothing is left behind.

mod pg;

use std::process::{Command, Output, Stdio};

use procvisor::store::Store;

fn procvisor(url: &str, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(args)
        .env("PROCVISOR_DATABASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start procvisor")
}

fn finished(child: std::process::Child, what: &str) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&stdout).to_string();
    assert!(
        status.success(),
        "{what} exited with {status}: {out}{}",
        String::from_utf8_lossy(&stderr)
    );
    out
}

#[test]
fn two_producers_and_two_test_schedulers_share_one_queue_and_end_every_job_once() {
    let Some(url) = pg::database("bus") else {
        return;
    };
    pg::runtime().block_on(async {
        Store::connect(&url).await.unwrap().migrate().await.unwrap();
    });
    // Jobs every 0.2 s for 2 s from each producer (--fast scales the
    // test jobs' 3..15 s to 30..150 ms and the 10 s timeout to 100 ms).
    let producers: Vec<_> = [1, 2]
        .iter()
        .map(|seed| {
            procvisor(
                &url,
                &[
                    "producer",
                    "--fast",
                    "--period",
                    "20",
                    "--duration",
                    "2",
                    "--seed",
                    &seed.to_string(),
                ],
            )
        })
        .collect();
    let schedulers: Vec<_> = (0..2)
        .map(|_| {
            procvisor(
                &url,
                &[
                    "test-scheduler",
                    "--db",
                    &url,
                    "--fast",
                    "-s",
                    "2",
                    "--duration",
                    "5",
                ],
            )
        })
        .collect();
    let mut ids: Vec<i64> = Vec::new();
    for p in producers {
        let out = finished(p, "producer");
        ids.extend(
            out.lines()
                .map(|l| l.split_whitespace().next().unwrap().parse::<i64>().unwrap()),
        );
    }
    let mut claimed = Vec::new();
    for s in schedulers {
        let out = finished(s, "test-scheduler --db");
        let summary = out
            .lines()
            .find(|l| l.starts_with("summary: claimed="))
            .unwrap_or_else(|| panic!("no summary in {out}"));
        let n: u64 = summary["summary: claimed=".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        claimed.push(n);
    }
    assert!(ids.len() >= 10, "the producers made {} jobs", ids.len());
    assert!(
        claimed.iter().all(|&n| n > 0),
        "both schedulers ran jobs: {claimed:?}"
    );
    assert!(claimed.iter().sum::<u64>() >= ids.len() as u64);
    pg::runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let events = pg::all_events(&store).await;
        pg::assert_each_ended_once(&events, &ids);
        for e in events.iter().filter(|e| e.terminal) {
            assert!(e.event == "completed" || e.event == "timed_out", "{e:?}");
        }
        let status = store.status().await.unwrap();
        assert!(status.jobs.is_empty(), "left behind: {status:?}");
    });
}
