//! The arithmetic of periodic schedules, free of IO: a five-field cron
//! expression read in an IANA time zone, and which fire is due at a given
//! instant. The store's schedules ([`super::schedules`]) call it with the
//! supervisor's clock; tests call it with any instant they like.
//!
//! Wall-clock rules across daylight-saving changes (the `croner` crate's,
//! which follow Vixie cron): a fixed time that a spring-forward skips fires
//! at the first minute after the gap, the same day; a fixed time that a
//! fall-back repeats fires once, at its first occurrence; a wildcard or
//! stepped hour fires every real hour, so a repeated hour fires twice.
//!
//! **Missed fires.** A fire is due when its time has passed and it is later
//! than the schedule's last fire (or than its creation, before the first).
//! When several fires passed unseen (no supervisor ran), only the latest is
//! enqueued, once: a schedule catches up with one run, not a burst.

use croner::parser::{CronParser, Seconds};
use jiff::{tz::TimeZone, Timestamp, Zoned};

use super::StoreError;

/// Longest cron expression accepted.
const MAX_EXPR_LEN: usize = 200;
/// How many missed fires [`CronSpec::due`] walks before it jumps straight
/// to the latest one.
const MAX_WALK: usize = 1_000;

/// A parsed cron expression in a time zone.
///
/// ```
/// use procvisor::store::CronSpec;
///
/// let nightly = CronSpec::parse("30 2 * * *", "Europe/Paris").unwrap();
/// let now: jiff::Timestamp = "2030-06-01T12:00:00Z".parse().unwrap();
/// // 02:30 in Paris in summer is 00:30 UTC.
/// assert_eq!(nightly.next_after(now).unwrap().to_string(), "2030-06-02T00:30:00Z");
/// assert!(CronSpec::parse("61 * * * *", "UTC").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: croner::Cron,
    zone: TimeZone,
}

impl CronSpec {
    /// Read `expr` (five fields: minute, hour, day of month, month, day of
    /// week; names like `MON` and shorthands like `@daily` work) in the
    /// IANA time zone `zone` (for example `America/New_York`, or `UTC`).
    pub fn parse(expr: &str, zone: &str) -> Result<CronSpec, StoreError> {
        let spec = CronSpec::read(expr, zone)?;
        // A pattern that never matches (say, 30 February) is refused now,
        // not found out at every evaluation.
        if spec.next_after(Timestamp::now()).is_none() {
            return Err(StoreError::Invalid(format!(
                "the cron expression {expr:?} never fires: check its day and month fields"
            )));
        }
        Ok(spec)
    }

    /// [`parse`](Self::parse) without the search for a first fire: for a
    /// schedule the store holds, which was checked when it was added.
    pub(crate) fn read(expr: &str, zone: &str) -> Result<CronSpec, StoreError> {
        if expr.trim().is_empty() || expr.len() > MAX_EXPR_LEN {
            return Err(StoreError::Invalid(format!(
                "a cron expression must be 1 to {MAX_EXPR_LEN} bytes long, not {}",
                expr.len()
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| {
                StoreError::Invalid(format!(
                    "the cron expression {expr:?} is not valid ({e}): write five fields, \
                     minute hour day-of-month month day-of-week, for example \"30 2 * * *\" \
                     for 02:30 every day or \"*/15 * * * MON-FRI\" for every quarter hour on weekdays"
                ))
            })?;
        let zone = TimeZone::get(zone).map_err(|_| {
            StoreError::Invalid(format!(
                "{zone:?} is not a time zone this machine knows: give an IANA name such as \
                 \"UTC\", \"Europe/Berlin\" or \"America/New_York\""
            ))
        })?;
        Ok(CronSpec { cron, zone })
    }

    /// The first fire strictly after `t`, if the expression has one.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let at = t.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|z: Zoned| z.timestamp())
    }

    /// The fire due at `now` for a schedule whose last fire (or creation)
    /// was `since`: the latest fire in `(since, now]`, or none.
    pub fn due(&self, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let mut fire = self.next_after(since).filter(|t| *t <= now)?;
        for _ in 0..MAX_WALK {
            match self.next_after(fire) {
                Some(next) if next <= now => fire = next,
                _ => return Some(fire),
            }
        }
        // Long missed: jump to the latest fire at or before now.
        let at = now.to_zoned(self.zone.clone());
        match self.cron.find_previous_occurrence(&at, true) {
            Ok(z) if z.timestamp() > fire => Some(z.timestamp()),
            _ => Some(fire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Every fire a clock stepping a minute at a time would enqueue from
    /// `from` to `to`.
    fn fires(spec: &CronSpec, from: &str, to: &str) -> Vec<String> {
        let (mut last, end) = (ts(from), ts(to));
        let mut now = last;
        let mut out = Vec::new();
        while now <= end {
            if let Some(f) = spec.due(last, now) {
                out.push(f.to_zoned(spec.zone.clone()).to_string());
                last = f;
            }
            now += jiff::SignedDuration::from_secs(60);
        }
        out
    }

    #[test]
    fn a_time_skipped_by_spring_forward_fires_once_after_the_gap() {
        // New York, 2030-03-10: 02:00 EST jumps to 03:00 EDT.
        let spec = CronSpec::parse("30 2 * * *", "America/New_York").unwrap();
        let got = fires(&spec, "2030-03-09T12:00:00Z", "2030-03-11T12:00:00Z");
        assert_eq!(
            got,
            vec![
                "2030-03-10T03:00:00-04:00[America/New_York]".to_string(),
                "2030-03-11T02:30:00-04:00[America/New_York]".to_string(),
            ]
        );
    }

    #[test]
    fn a_time_repeated_by_fall_back_fires_once() {
        // New York, 2030-11-03: 02:00 EDT falls back to 01:00 EST.
        let spec = CronSpec::parse("30 1 * * *", "America/New_York").unwrap();
        let got = fires(&spec, "2030-11-02T12:00:00Z", "2030-11-04T12:00:00Z");
        assert_eq!(
            got,
            vec![
                "2030-11-03T01:30:00-04:00[America/New_York]".to_string(),
                "2030-11-04T01:30:00-05:00[America/New_York]".to_string(),
            ]
        );
    }

    #[test]
    fn an_hourly_schedule_fires_every_real_hour_across_fall_back() {
        let spec = CronSpec::parse("0 * * * *", "America/New_York").unwrap();
        // Local midnight to midnight on the day with 25 hours.
        let got = fires(&spec, "2030-11-03T04:00:00Z", "2030-11-04T05:00:00Z");
        assert_eq!(got.len(), 25, "{got:#?}");
        assert_eq!(got.iter().filter(|f| f.contains("T01:00:00")).count(), 2);
    }

    #[test]
    fn missed_fires_are_caught_up_with_one_run_the_latest() {
        let spec = CronSpec::parse("*/5 * * * *", "UTC").unwrap();
        let since = ts("2030-01-01T00:00:00Z");
        assert_eq!(spec.due(since, ts("2030-01-01T00:04:59Z")), None);
        assert_eq!(
            spec.due(since, ts("2030-01-01T00:05:00Z")),
            Some(ts("2030-01-01T00:05:00Z"))
        );
        assert_eq!(
            spec.due(since, ts("2030-01-01T03:17:00Z")),
            Some(ts("2030-01-01T03:15:00Z"))
        );
        // Longer than the walk: a year of five-minute fires.
        assert_eq!(
            spec.due(since, ts("2031-01-01T00:02:00Z")),
            Some(ts("2031-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_to_write() {
        for (expr, zone, says) in [
            ("", "UTC", "1 to 200 bytes"),
            ("* * * *", "UTC", "five fields"),
            ("0 0 * * * *", "UTC", "five fields"),
            ("61 * * * *", "UTC", "five fields"),
            ("0 0 30 2 *", "UTC", "never fires"),
            ("0 0 * * *", "Mars/Olympus", "IANA name"),
        ] {
            let e = CronSpec::parse(expr, zone).unwrap_err().to_string();
            assert!(e.contains(says), "{expr:?} in {zone}: {e}");
        }
        assert!(CronSpec::parse("@daily", "Europe/Berlin").is_ok());
        assert!(CronSpec::parse("0 9 * * MON-FRI", "Asia/Tokyo").is_ok());
    }
}
