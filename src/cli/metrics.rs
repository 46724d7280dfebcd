//! `--metrics ADDR`: serve the supervisor's metrics for Prometheus to
//! scrape (the names are listed in the README).

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

/// The `--metrics` option of the commands that run a supervisor.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve metrics in Prometheus' text format over HTTP at this address
    /// (for example 127.0.0.1:9184; port 0 picks a free one), at any path:
    /// jobs submitted, started and ended by kind and outcome, queue wait
    /// and run time, jobs waiting by priority, workers by phase, restarts,
    /// evictions, retries, and the job queue's claims. Default: off.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

impl MetricsArgs {
    /// Start the metrics endpoint, if asked for. Call it before starting a
    /// supervisor: what a supervisor records before it goes nowhere.
    pub fn install(&self) -> Result<(), String> {
        let Some(addr) = self.metrics else {
            return Ok(());
        };
        PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| {
                format!("cannot serve metrics at {addr}: {e}; pick another address with --metrics")
            })?;
        tracing::info!(%addr, "serving metrics");
        Ok(())
    }
}
