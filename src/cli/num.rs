//! Numbers on the command line: every flag that takes one is parsed here
//! or by clap's ranged parsers, so a value out of range is an error that
//! names the flag and the range, before anything starts.

use std::time::Duration;

/// The longest time any flag accepts: a day.
const DAY: f64 = 86_400.0;

fn seconds(s: &str, zero_ok: bool) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
    if !(v.is_finite() && low_ok && v <= DAY) {
        let low = if zero_ok { "0" } else { "more than 0" };
        return Err(format!(
            "{v} s is out of range: use {low} to {DAY} seconds (a day)"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A number of seconds, more than 0 and at most a day.
pub fn positive_secs(s: &str) -> Result<Duration, String> {
    seconds(s, false)
}

/// A number of seconds from 0 to a day.
pub fn secs(s: &str) -> Result<Duration, String> {
    seconds(s, true)
}

/// A delay: a number of seconds from 0 to 10 years.
pub fn delay(s: &str) -> Result<Duration, String> {
    const TEN_YEARS: f64 = 10.0 * 365.0 * 86_400.0;
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && (0.0..=TEN_YEARS).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!(
            "{v} is out of range: use 0 to {TEN_YEARS} seconds (10 years)"
        ))
    }
}

/// A finite number from `lo` (exclusive) to `hi`.
fn number_in(s: &str, lo: f64, hi: f64, what: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v > lo && v <= hi {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: {what}"))
    }
}

/// A start rate per second.
pub fn rate(s: &str) -> Result<f64, String> {
    number_in(s, 0.0009999, 1e9, "use 0.001 to 1e9 per second")
}

/// A job's weight for the random policies.
pub fn weight(s: &str) -> Result<f64, String> {
    number_in(s, 0.0, 1e6, "use a positive number up to 1000000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_in_range_parse_and_others_say_the_range() {
        assert_eq!(positive_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        for bad in ["0", "-1", "1e30", "inf", "NaN", "x", "86401"] {
            let e = positive_secs(bad).unwrap_err();
            assert!(
                e.contains("range") || e.contains("not a number"),
                "{bad}: {e}"
            );
        }
        assert!(secs("-0.1").unwrap_err().contains("use 0 to"));
        assert!(rate("0").is_err() && rate("0.001").is_ok() && rate("2e9").is_err());
        assert!(weight("0").is_err() && weight("1e6").is_ok() && weight("1e7").is_err());
    }
}
