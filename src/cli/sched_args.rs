//! Command-line options for the scheduling policies and flow control, shared
//! by the subcommands that start a supervisor.

use std::time::Duration;

use clap::ValueEnum;
use procvisor::Config;
use procvisor::{Policy, RateLimit, RetryPolicy};

/// How the next job is chosen.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PolicyArg {
    /// Most urgent first, FIFO within a priority.
    Priority,
    /// Drawn with probability weight / total weight.
    Weighted,
    /// Every queued job equally likely.
    Uniform,
    /// By weight among the most urgent priority.
    PriorityWeighted,
}

impl PolicyArg {
    /// The library's policy.
    pub fn policy(self) -> Policy {
        match self {
            PolicyArg::Priority => Policy::Priority,
            PolicyArg::Weighted => Policy::WeightedRandom,
            PolicyArg::Uniform => Policy::Uniform,
            PolicyArg::PriorityWeighted => Policy::PriorityWeighted,
        }
    }
}

/// Scheduling options.
#[derive(clap::Args, Debug, Clone)]
pub struct SchedArgs {
    /// Selection policy.
    #[arg(long, value_enum, default_value_t = PolicyArg::Priority)]
    policy: PolicyArg,
    /// Avoid starting a kind among the last K started when another waits.
    #[arg(long, value_name = "K", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024))]
    exclusion_window: u16,
    /// Start at most this many jobs per second (token bucket; 0.001 to 1e9).
    #[arg(long, value_name = "PER_SEC", value_parser = super::num::rate)]
    rate: Option<f64>,
    /// Burst of the --rate token bucket (1 to 1000000).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "rate", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    burst: u32,
    /// At most N jobs of KIND at once (repeatable), e.g. --kind-limit sleep=2.
    #[arg(long, value_name = "KIND=N", value_parser = parse_kind_limit)]
    kind_limit: Vec<(String, usize)>,
    /// Rate limit for one kind (repeatable), e.g. --kind-rate echo=10 or echo=10:5 (rate:burst).
    #[arg(long, value_name = "KIND=RATE[:BURST]", value_parser = parse_kind_rate)]
    kind_rate: Vec<(String, RateLimit)>,
    /// Most jobs waiting; a full queue makes submitters wait.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    capacity: Option<u64>,
    /// With --capacity: a more urgent job pushes out the least urgent waiting one.
    #[arg(long, requires = "capacity")]
    push_out: bool,
    /// Retries after a failure, timeout or crash (attempts = retries + 1;
    /// 0 to 9999).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=9999))]
    retries: u32,
    /// First retry backoff in seconds (doubles, full jitter; 0 to a day).
    #[arg(long, value_name = "SECS", default_value = "0.1", value_parser = super::num::secs)]
    backoff: Duration,
    /// Longest retry backoff in seconds (0 to a day).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = super::num::secs)]
    backoff_cap: Duration,
    /// Seed for random choices, for reproducible runs.
    #[arg(long)]
    seed: Option<u64>,
}

fn parse_kind_limit(s: &str) -> Result<(String, usize), String> {
    let (kind, n) = s.split_once('=').ok_or("expected KIND=N, e.g. sleep=2")?;
    let n: usize = n
        .parse()
        .map_err(|_| format!("{n:?} is not a whole number"))?;
    if n == 0 {
        return Err("a kind limit must be at least 1".into());
    }
    Ok((kind.to_string(), n))
}

fn parse_kind_rate(s: &str) -> Result<(String, RateLimit), String> {
    let (kind, spec) = s
        .split_once('=')
        .ok_or("expected KIND=RATE or KIND=RATE:BURST, e.g. echo=10:5")?;
    let (rate, burst) = match spec.split_once(':') {
        Some((r, b)) => (
            r,
            b.parse::<u32>()
                .map_err(|_| format!("burst {b:?} is not a whole number"))?,
        ),
        None => (spec, 1),
    };
    let rate: f64 = rate
        .parse()
        .map_err(|_| format!("rate {rate:?} is not a number"))?;
    let limit = RateLimit::new(rate, burst);
    if !limit.is_valid() {
        return Err("the rate must be positive and the burst at least 1".into());
    }
    Ok((kind.to_string(), limit))
}

impl SchedArgs {
    /// Apply these options to `cfg`.
    pub fn apply(&self, mut cfg: Config) -> Result<Config, String> {
        cfg = cfg.policy(self.policy.policy());
        cfg = cfg.exclusion_window(self.exclusion_window.into());
        if let Some(rate) = self.rate {
            cfg = cfg.rate_limit(RateLimit::new(rate, self.burst));
        }
        for (kind, n) in &self.kind_limit {
            cfg = cfg.kind_limit(kind, *n);
        }
        for (kind, limit) in &self.kind_rate {
            cfg = cfg.kind_rate_limit(kind, *limit);
        }
        let capacity = self
            .capacity
            .map(|c| usize::try_from(c).unwrap_or(usize::MAX));
        cfg = cfg.capacity(capacity).push_out(self.push_out);
        cfg = cfg.retry(RetryPolicy::attempts(
            self.retries.saturating_add(1),
            self.backoff,
            self.backoff_cap,
        ));
        if let Some(seed) = self.seed {
            cfg = cfg.seed(seed);
        }
        Ok(cfg)
    }
}
