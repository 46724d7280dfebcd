//! A store-fed supervisor's metrics, read back from a real Prometheus
//! recorder while it runs jobs from a real PostgreSQL: claims, their
//! batches and round trips, and the endings written back.

mod common;
mod pg;

use std::time::Duration;

use common::{eventually, prom_sample as sample};
use metrics_exporter_prometheus::PrometheusBuilder;
use procvisor::store::{Feed, FeedOptions, NewJob};
use serde_json::json;

#[test]
fn claims_and_written_endings_reach_an_installed_recorder() {
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    pg::runtime().block_on(async {
        let Some((store, _url)) = pg::migrated("metrics").await else {
            return;
        };
        let jobs: Vec<NewJob> = (0..30).map(|_| NewJob::new("noop", json!({}))).collect();
        store.submit_many(&jobs).await.unwrap();
        let sup = common::start(common::config(2));
        let feed = Feed::start(&store, &sup, FeedOptions::default())
            .await
            .unwrap();
        pg::until_ended(&store, 30, Duration::from_secs(60)).await;
        let mut text = String::new();
        let written = eventually(Duration::from_secs(10), || {
            text = prometheus.render();
            sample(&text, "procvisor_store_write_batch_size_sum", &[]) == Some(30.0)
        });
        feed.stop(Duration::ZERO).await.unwrap();
        assert!(written, "{text}");
        let get = |name: &str| {
            sample(&text, name, &[]).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        };
        assert_eq!(get("procvisor_store_claimed_total"), 30.0);
        assert_eq!(get("procvisor_store_claim_batch_size_sum"), 30.0);
        let claims = get("procvisor_store_claim_batch_size_count");
        assert!((1.0..=30.0).contains(&claims), "{claims}");
        assert!(get("procvisor_store_claim_seconds_count") >= claims);
        let took = get("procvisor_store_claim_seconds_sum");
        assert!(took > 0.0 && took < 60.0, "{took}");
        assert_eq!(get("procvisor_store_reclaims_total"), 0.0);
        assert_eq!(get("procvisor_store_stale_writes_total"), 0.0);
        assert_eq!(
            sample(
                &text,
                "procvisor_jobs_ended_total",
                &[("kind", "noop"), ("outcome", "completed")]
            ),
            Some(30.0),
            "{text}"
        );
    });
}
