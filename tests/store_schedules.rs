//! Periodic jobs in the store against a real PostgreSQL: each fire is
//! enqueued exactly once however many callers evaluate it, across a
//! daylight-saving change, with the time injected; and a supervisor fed by
//! the store fires a due schedule on its own and runs the job.

mod common;
mod pg;

use std::time::{Duration, SystemTime};

use procvisor::store::{Feed, FeedOptions, NewJob, Store};
use serde_json::json;

fn at(s: &str) -> SystemTime {
    SystemTime::from(s.parse::<jiff::Timestamp>().unwrap())
}

/// Jobs of `kind` in the live table.
fn jobs_of(url: &str, kind: &str) -> String {
    pg::psql(
        url,
        &format!("SELECT count(*) FROM procvisor_jobs WHERE kind = '{kind}'"),
    )
}

#[test]
fn each_fire_is_enqueued_once_by_three_racing_evaluators_across_a_dst_change() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("cron_dst").await else {
            return;
        };
        let zone = "America/New_York";
        // 01:30 happens twice on 2030-11-03 in New York (clocks fall back at
        // 02:00): it must fire once that day.
        store
            .add_schedule(
                "daily",
                "30 1 * * *",
                zone,
                &NewJob::new("daily", json!({})),
            )
            .await
            .unwrap();
        // Every hour: the repeated hour fires twice, once per real hour.
        store
            .add_schedule(
                "hourly",
                "0 * * * *",
                zone,
                &NewJob::new("hourly", json!({})),
            )
            .await
            .unwrap();
        let again = store
            .add_schedule("daily", "0 0 * * *", zone, &NewJob::new("x", json!({})))
            .await
            .unwrap_err();
        assert!(again.to_string().contains("exists already"), "{again}");

        // Three evaluators, each with its own connections, step an injected
        // clock through 2030-11-02 12:00 UTC .. 2030-11-04 12:00 UTC, at
        // staggered 7-minute steps, all at once.
        let mut racers = Vec::new();
        for offset in 0..3u64 {
            let url = url.clone();
            racers.push(tokio::spawn(async move {
                let store = Store::connect(&url).await.unwrap();
                let mut fired = 0;
                let mut now = at("2030-11-02T12:00:00Z") + Duration::from_secs(offset * 60);
                while now <= at("2030-11-04T12:00:00Z") {
                    fired += store.fire_schedules(now).await.unwrap().len();
                    now += Duration::from_secs(7 * 60);
                }
                // The end of the window, exactly, for every racer.
                fired += store
                    .fire_schedules(at("2030-11-04T12:00:00Z"))
                    .await
                    .unwrap()
                    .len();
                fired
            }));
        }
        let mut fired = 0;
        for r in racers {
            fired += r.await.unwrap();
        }
        // The first evaluation catches up with one fire (the latest missed
        // one), then one per day: 2030-11-02, -03 (once), -04.
        assert_eq!(jobs_of(&url, "daily"), "3");
        // 12:00 UTC on the 2nd, then 48 real hours.
        assert_eq!(jobs_of(&url, "hourly"), "49");
        assert_eq!(fired, 52, "the racers reported {fired} fires");

        let rows = store.schedules().await.unwrap();
        let hourly = rows.iter().find(|r| r.name == "hourly").unwrap();
        assert_eq!(hourly.last_fire, Some(at("2030-11-04T12:00:00Z")));
        assert!(store.remove_schedule("hourly").await.unwrap());
        assert!(!store.remove_schedule("hourly").await.unwrap());
        assert_eq!(store.schedules().await.unwrap().len(), 1);
    });
}

#[test]
fn a_supervisor_fires_a_due_schedule_and_runs_its_job() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("cron_live").await else {
            return;
        };
        // Hourly, at a minute that passed one to two minutes ago, so the
        // next fire is most of an hour away.
        let minute = (jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .minute()
            + 58)
            % 60;
        store
            .add_schedule(
                "tick",
                &format!("{minute} * * * *"),
                "UTC",
                &NewJob::new("noop", json!({})),
            )
            .await
            .unwrap();
        // Pretend it was added three hours ago: three fires were missed,
        // and one (the latest) is due now.
        pg::psql(
            &url,
            "UPDATE procvisor_schedules SET created_at = now() - interval '3 hours 5 minutes'",
        );
        let sup = common::start(common::config(1));
        let feed = Feed::start(
            &store,
            &sup,
            FeedOptions::default().poll(Duration::from_millis(50)),
        )
        .await
        .unwrap();
        let events = pg::until_ended(&store, 1, Duration::from_secs(20)).await;
        let end = events.iter().find(|e| e.terminal).unwrap();
        assert_eq!(
            (end.kind.as_str(), end.event.as_str()),
            ("noop", "completed")
        );
        // Still one: the missed fires were not enqueued.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            pg::psql(&url, "SELECT count(DISTINCT job_id) FROM procvisor_events"),
            "1"
        );
        feed.stop(Duration::ZERO).await.unwrap();
    });
}

#[test]
fn the_schedule_command_adds_lists_and_removes_and_refuses_bad_input() {
    let Some(url) = pg::database("cron_cli") else {
        return;
    };
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_procvisor"))
            .args(args)
            .env("PROCVISOR_DATABASE_URL", &url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    assert!(cli(&["db", "migrate"]).0);
    let (ok, said) = cli(&[
        "schedule",
        "add",
        "nightly",
        "30 2 * * *",
        "report",
        r#"{"full": true}"#,
        "--tz",
        "Europe/Berlin",
        "-p",
        "2",
    ]);
    assert!(ok, "{said}");
    let (ok, said) = cli(&["schedule", "list", "--json"]);
    assert!(ok, "{said}");
    let row: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(row["name"], "nightly");
    assert_eq!(row["time_zone"], "Europe/Berlin");
    assert_eq!(row["args"]["full"], true);
    assert_eq!(row["priority"], 2);
    let next: jiff::Timestamp = row["next_fire"].as_str().unwrap().parse().unwrap();
    let local = next.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    assert_eq!((local.hour(), local.minute()), (2, 30));

    for (args, says) in [
        (
            vec!["schedule", "add", "x", "30 25 * * *", "k"],
            "five fields",
        ),
        (
            vec![
                "schedule",
                "add",
                "x",
                "@daily",
                "k",
                "--tz",
                "Nowhere/Town",
            ],
            "IANA name",
        ),
        (
            vec!["schedule", "add", "nightly", "@daily", "k"],
            "exists already",
        ),
        (
            vec!["schedule", "add", "x", "@daily", "k", "not json"],
            "not valid JSON",
        ),
        (vec!["schedule", "remove", "x"], "no schedule named"),
    ] {
        let (ok, said) = cli(&args);
        assert!(!ok && said.contains(says), "{args:?}: {said}");
    }
    assert!(cli(&["schedule", "remove", "nightly"]).0);
    assert_eq!(cli(&["schedule", "list", "--json"]).1.trim(), "");
}
