//! The claim: available jobs become running under a new lease for one
//! supervisor, by priority or drawn at random.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use crate::store::StoreError;

/// The claim by priority: `claim/me.sql`, `claim/by_priority.sql` and
/// `claim/take.sql` (see the files).
const CLAIM: &str = concat!(
    include_str!("../sql/claim/me.sql"),
    include_str!("../sql/claim/by_priority.sql"),
    include_str!("../sql/claim/take.sql")
);

/// The claim of a supervisor that draws at random (see
/// `claim/drawn.sql`).
const CLAIM_DRAWN: &str = concat!(
    include_str!("../sql/claim/me.sql"),
    include_str!("../sql/claim/drawn.sql"),
    include_str!("../sql/claim/take.sql")
);

/// A claimed job: what its supervisor needs to run it and to write its
/// ending.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) id: i64,
    pub(crate) lease: i64,
    pub(crate) tries: Tries,
    pub(crate) kind: String,
    pub(crate) args: String,
    pub(crate) priority: u8,
    pub(crate) timeout: Option<Duration>,
    pub(crate) weight: f64,
}

/// Which attempt a claim starts, and the job's retry settings: what its
/// ending decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tries {
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) backoff_cap: Duration,
}

/// How a claim picks among the waiting jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Draw {
    /// Most urgent first, then oldest.
    Priority,
    /// At random by weight, across every waiting job.
    Weighted,
    /// At random, every waiting job alike.
    Uniform,
    /// At random by weight among the most urgent priority waiting.
    PriorityWeighted,
}

impl Draw {
    /// How a supervisor with this policy claims.
    pub(crate) fn of(policy: crate::Policy) -> Draw {
        match policy {
            crate::Policy::Priority => Draw::Priority,
            crate::Policy::WeightedRandom => Draw::Weighted,
            crate::Policy::Uniform => Draw::Uniform,
            crate::Policy::PriorityWeighted => Draw::PriorityWeighted,
        }
    }
}

/// What to claim.
#[derive(Debug)]
pub(crate) struct Ask<'a> {
    pub(crate) queues: &'a [String],
    pub(crate) kinds: &'a [String],
    /// Only jobs more urgent than this (11: any).
    pub(crate) below: u8,
    /// At most this many.
    pub(crate) limit: usize,
    /// Of which this many start at once; the rest wait in the supervisor
    /// (claimed ahead), about `wait` each at most, so only jobs with no
    /// timeout or a timeout of at least `wait` are claimed ahead.
    pub(crate) now: usize,
    pub(crate) wait: Duration,
    pub(crate) supervisor: i64,
    pub(crate) draw: Draw,
}

/// Claim what `ask` says; the jobs come back most urgent first (in the
/// order they were drawn, for a draw).
pub(crate) async fn claim(
    client: &impl GenericClient,
    ask: &Ask<'_>,
) -> Result<Vec<Grant>, StoreError> {
    let below = i16::from(ask.below);
    let limit = ask.limit.min(i64::MAX as usize) as i64;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        vec![&ask.queues, &ask.kinds, &below, &limit, &ask.supervisor];
    let mode: i32 = match ask.draw {
        Draw::Priority => 0,
        Draw::Weighted => 1,
        Draw::Uniform => 2,
        Draw::PriorityWeighted => 3,
    };
    let now = (ask.now.min(ask.limit)).min(i64::MAX as usize) as i64;
    let wait = crate::store::millis(ask.wait);
    let sql = if mode == 0 {
        params.push(&now);
        params.push(&wait);
        CLAIM
    } else {
        params.push(&mode);
        CLAIM_DRAWN
    };
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(|e| StoreError::query("prepare the claim", e))?;
    let rows = client
        .query(&stmt, &params)
        .await
        .map_err(|e| StoreError::query("claim jobs", e))?;
    let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
    Ok(rows
        .iter()
        .map(|r| Grant {
            id: r.get("id"),
            lease: r.get("lease"),
            tries: Tries {
                attempt: r.get::<_, i32>("attempt").max(1) as u32,
                max_attempts: r.get::<_, i32>("max_attempts").max(1) as u32,
                backoff: ms(r.get("backoff_ms")),
                backoff_cap: ms(r.get("backoff_cap_ms")),
            },
            kind: r.get("kind"),
            args: r.get("args"),
            priority: r
                .get::<_, i16>("priority")
                .clamp(0, crate::LEAST_URGENT.into()) as u8,
            timeout: r.get::<_, Option<i64>>("timeout_ms").map(ms),
            weight: r.get("weight"),
        })
        .collect())
}
