//! How supervisors fed by a real PostgreSQL pick jobs: a weighted-random
//! supervisor draws across the whole table in proportion to the jobs'
//! weights (a chi-squared test), and a supervisor of several queues takes
//! the most urgent job of any of them and nothing from other queues.

mod common;
mod pg;

use std::collections::HashMap;
use std::time::Duration;

use pg::store;
use procvisor::store::{Feed, FeedOptions, NewJob};
use procvisor::Policy;
use serde_json::json;

/// Chi-squared's value for 3 degrees of freedom at p = 0.001: a fair draw
/// fails this test once in a thousand runs.
const CHI2_3DF_P001: f64 = 16.27;

/// Expected picks per weight class when `picks` jobs are drawn without
/// replacement by weight from `per_class` jobs of each weight in `weights`
/// (each step takes the expected share out of each class).
fn expected(weights: &[f64], per_class: f64, picks: usize) -> Vec<f64> {
    let mut left = vec![per_class; weights.len()];
    let mut got = vec![0.0; weights.len()];
    for _ in 0..picks {
        let total: f64 = weights.iter().zip(&left).map(|(w, n)| w * n).sum();
        for i in 0..weights.len() {
            let p = weights[i] * left[i] / total;
            got[i] += p;
            left[i] -= p;
        }
    }
    got
}

#[test]
fn a_weighted_random_supervisor_draws_across_the_whole_table_by_weight() {
    pg::runtime().block_on(async {
        let Some(store) = store("weighted").await else {
            return;
        };
        let weights = [1.0, 2.0, 3.0, 4.0];
        let per_class = 500;
        // Interleaved, so that id order says nothing of the weight.
        let jobs: Vec<NewJob> = (0..per_class * weights.len())
            .map(|i| NewJob::new("noop", json!({})).weight(weights[i % weights.len()]))
            .collect();
        let ids = store.submit_many(&jobs).await.unwrap();
        let class: HashMap<i64, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i % weights.len()))
            .collect();

        let sup = common::start(common::config(1).policy(Policy::WeightedRandom));
        let feed = Feed::start(&store, &sup, FeedOptions::default()).await.unwrap();
        let picks = 200;
        let events = pg::until_ended(&store, picks, Duration::from_secs(60)).await;
        feed.stop(Duration::ZERO).await.unwrap();

        let mut counts = [0.0f64; 4];
        for e in events.iter().filter(|e| e.terminal).take(picks) {
            counts[class[&e.job_id]] += 1.0;
        }
        let want = expected(&weights, per_class as f64, picks);
        let chi2: f64 = counts
            .iter()
            .zip(&want)
            .map(|(o, e)| (o - e).powi(2) / e)
            .sum();
        assert!(
            chi2 < CHI2_3DF_P001,
            "first {picks} picks by weight class {counts:?}, expected about {want:?}: chi-squared {chi2:.2}"
        );
    });
}

#[test]
fn a_supervisor_of_several_queues_takes_the_most_urgent_of_any_and_none_of_the_others() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("queues").await else {
            return;
        };
        let mut jobs = Vec::new();
        for _ in 0..20 {
            jobs.push(NewJob::new("noop", json!({})).queue("a").priority(6));
            jobs.push(NewJob::new("noop", json!({})).queue("b").priority(2));
            jobs.push(NewJob::new("noop", json!({})).queue("c").priority(0));
        }
        let ids = store.submit_many(&jobs).await.unwrap();
        let queue_of: HashMap<i64, &str> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, ["a", "b", "c"][i % 3]))
            .collect();

        let sup = common::start(common::config(1));
        let feed = Feed::start(&store, &sup, FeedOptions::default().queues(&["a", "b"]))
            .await
            .unwrap();
        let events = pg::until_ended(&store, 40, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        feed.stop(Duration::ZERO).await.unwrap();

        let order: Vec<&str> = events
            .iter()
            .filter(|e| e.terminal)
            .map(|e| queue_of[&e.job_id])
            .collect();
        assert_eq!(order.len(), 40, "{order:?}");
        // Queue b's jobs (priority 2) all before queue a's (priority 6).
        assert_eq!(order[..20], ["b"; 20], "{order:?}");
        assert_eq!(order[20..], ["a"; 20], "{order:?}");
        // Queue c is no business of this supervisor's: all still waiting.
        assert_eq!(
            pg::psql(
                &url,
                "SELECT count(*) FROM procvisor_jobs WHERE queue = 'c' AND state = 'available'"
            ),
            "20"
        );
    });
}

#[test]
fn a_supervisor_that_draws_at_random_takes_nothing_from_a_paused_queue_until_resumed() {
    pg::runtime().block_on(async {
        let Some(store) = store("paused_drawn").await else {
            return;
        };
        store.set_paused("default", true, "test").await.unwrap();
        let jobs: Vec<NewJob> = (0..5).map(|_| NewJob::new("noop", json!({}))).collect();
        store.submit_many(&jobs).await.unwrap();
        let sup = common::start(common::config(1).policy(Policy::WeightedRandom));
        let feed = Feed::start(&store, &sup, FeedOptions::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(store.running_jobs(10).await.unwrap().is_empty());
        assert!(
            pg::all_events(&store).await.is_empty(),
            "nothing ran while paused"
        );
        store.set_paused("default", false, "test").await.unwrap();
        pg::until_ended(&store, 5, Duration::from_secs(30)).await;
        feed.stop(Duration::ZERO).await.unwrap();
    });
}
