//! What a store-fed supervisor reports through the [`metrics`] facade,
//! beside the supervisor's own metrics:
//!
//! | name | type | what |
//! |---|---|---|
//! | `procvisor_store_claim_seconds` | histogram | one claim statement's round trip |
//! | `procvisor_store_claim_batch_size` | histogram | jobs taken by one claim (claims that found none are not counted) |
//! | `procvisor_store_write_seconds` | histogram | one batch of endings' round trip |
//! | `procvisor_store_write_batch_size` | histogram | endings written by one batch |
//! | `procvisor_store_claimed_total` | counter | jobs claimed |
//! | `procvisor_store_reclaims_total` | counter | jobs taken back from supervisors that stopped heartbeating, or past their deadline |
//! | `procvisor_store_stale_writes_total` | counter | endings not written because another supervisor had taken the job over |
//! | `procvisor_store_errors_total` | counter | failed statements (each is retried) |

use std::sync::Once;
use std::time::Duration;

use metrics::{Counter, Histogram};

/// A feed's metric handles.
pub(super) struct FeedMeters {
    claim_seconds: Histogram,
    claim_batch: Histogram,
    write_seconds: Histogram,
    write_batch: Histogram,
    claimed: Counter,
    reclaims: Counter,
    stale: Counter,
    errors: Counter,
}

impl FeedMeters {
    pub(super) fn new() -> FeedMeters {
        describe();
        FeedMeters {
            claim_seconds: metrics::histogram!("procvisor_store_claim_seconds"),
            claim_batch: metrics::histogram!("procvisor_store_claim_batch_size"),
            write_seconds: metrics::histogram!("procvisor_store_write_seconds"),
            write_batch: metrics::histogram!("procvisor_store_write_batch_size"),
            claimed: metrics::counter!("procvisor_store_claimed_total"),
            reclaims: metrics::counter!("procvisor_store_reclaims_total"),
            stale: metrics::counter!("procvisor_store_stale_writes_total"),
            errors: metrics::counter!("procvisor_store_errors_total"),
        }
    }

    /// A claim took `jobs` in `took`.
    pub(super) fn claimed(&self, jobs: usize, took: Duration) {
        self.claim_seconds.record(took.as_secs_f64());
        if jobs > 0 {
            self.claim_batch.record(jobs as f64);
            self.claimed.increment(jobs as u64);
        }
    }

    /// A batch of `endings` was written in `took`, `stale` of them not.
    pub(super) fn wrote(&self, endings: usize, stale: usize, took: Duration) {
        self.write_seconds.record(took.as_secs_f64());
        self.write_batch.record(endings as f64);
        self.stale.increment(stale as u64);
    }

    pub(super) fn reclaimed(&self, jobs: u64) {
        self.reclaims.increment(jobs);
    }

    pub(super) fn error(&self) {
        self.errors.increment(1);
    }
}

/// Tell the recorder what each metric means (once per process).
fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use metrics::{describe_counter, describe_histogram, Unit};
        describe_histogram!(
            "procvisor_store_claim_seconds",
            Unit::Seconds,
            "Round trip of one claim of jobs from the PostgreSQL job queue."
        );
        describe_histogram!(
            "procvisor_store_claim_batch_size",
            Unit::Count,
            "Jobs taken by one claim that found any."
        );
        describe_histogram!(
            "procvisor_store_write_seconds",
            Unit::Seconds,
            "Round trip of one batch of job endings written to the job queue."
        );
        describe_histogram!(
            "procvisor_store_write_batch_size",
            Unit::Count,
            "Job endings written by one batch."
        );
        describe_counter!(
            "procvisor_store_claimed_total",
            "Jobs claimed from the PostgreSQL job queue."
        );
        describe_counter!(
            "procvisor_store_reclaims_total",
            "Jobs taken back from supervisors that stopped heartbeating, or that ran past their deadline."
        );
        describe_counter!(
            "procvisor_store_stale_writes_total",
            "Job endings not written because another supervisor had taken the job over."
        );
        describe_counter!(
            "procvisor_store_errors_total",
            "Failed statements against the job queue (each is retried)."
        );
    });
}
