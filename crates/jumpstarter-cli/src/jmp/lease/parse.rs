//! What the lease commands parse: durations, date-times, tags and selector terms.

use std::collections::HashMap;
use std::time::Duration;

/// A duration none of the accepted forms reads (the text as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a valid duration (e.g., '30m', '3h30m', '1d', '1d3h40m', 'PT1H30M', '01:30:00')"
)]
pub struct BadDuration(pub String);

/// A date-time that is not ISO 8601 (the text as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid datetime")]
pub struct BadDatetime(pub String);

/// A `--tag` without `=` (the text as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid tag format: '{0}' (expected key=value)")]
pub struct BadTag(pub String);

/// A duration as upstream accepts it: seconds, `HH:MM:SS` (optionally `N days, ` first),
/// ISO 8601 (`PT1H30M`), or units (`30m`, `3h30m`, `1d3h40m`, `2 hours`).
pub fn parse_duration(s: &str) -> Result<Duration, BadDuration> {
    let bad = || BadDuration(s.to_string());
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    if t.contains(':') {
        let (days, clock) = match t.split_once(',') {
            Some((d, c)) => {
                let d = d.trim();
                let n = d
                    .strip_suffix("days")
                    .or_else(|| d.strip_suffix("day"))
                    .ok_or_else(bad)?;
                (n.trim().parse::<u64>().map_err(|_| bad())?, c.trim())
            }
            None => (0, t),
        };
        let parts: Vec<&str> = clock.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let mut secs = 0f64;
        for p in &parts {
            let v: f64 = p.parse().map_err(|_| bad())?;
            if v < 0.0 || !v.is_finite() {
                return Err(bad());
            }
            secs = secs * 60.0 + v;
        }
        if parts.len() == 2 {
            secs *= 60.0; // H:MM
        }
        return Ok(Duration::from_secs_f64(secs + days as f64 * 86400.0));
    }
    let span: jiff::Span = t.parse().map_err(|_| bad())?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    Duration::try_from(d).map_err(|_| bad())
}

/// An ISO 8601 date-time; without an offset it is local time (as upstream).
pub fn parse_datetime(s: &str) -> Result<jiff::Timestamp, BadDatetime> {
    let bad = || BadDatetime(s.to_string());
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let dt: jiff::civil::DateTime = s.parse().map_err(|_| bad())?;
    dt.to_zoned(jiff::tz::TimeZone::system())
        .map(|z| z.timestamp())
        .map_err(|_| bad())
}

pub fn parse_tags(tags: &[String]) -> Result<HashMap<String, String>, BadTag> {
    let mut out = HashMap::new();
    for t in tags {
        let (k, v) = t.split_once('=').ok_or_else(|| BadTag(t.clone()))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The terms of a selector (`a=b,c in (x,y)`), split at top-level commas, `==` as `=`.
fn selector_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| {
            t.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace("==", "=")
                .replace(" = ", "=")
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether every term of `filter` is one of the lease selector's terms.
pub fn selector_contains(selector: &str, filter: &str) -> bool {
    let have = selector_terms(selector);
    selector_terms(filter).iter().all(|t| have.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_upstream() {
        let s = |x| parse_duration(x).unwrap().as_secs();
        assert_eq!(s("90"), 90);
        assert_eq!(s("30m"), 1800);
        assert_eq!(s("3h30m"), 12600);
        assert_eq!(s("1d"), 86400);
        assert_eq!(s("1d3h40m"), 86400 + 3 * 3600 + 40 * 60);
        assert_eq!(s("PT1H30M"), 5400);
        assert_eq!(s("01:30:00"), 5400);
        assert_eq!(s("2 days, 01:30:00"), 2 * 86400 + 5400);
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .to_string()
                .contains("is not a valid duration")
        );
    }

    #[test]
    fn selector_containment() {
        assert!(selector_contains("board=rpi,arch=arm", "arch==arm"));
        assert!(selector_contains("a in (x,y),b=c", "a in (x,y)"));
        assert!(!selector_contains("board=rpi", "board=x86"));
        assert!(selector_contains("board=rpi", ""));
    }
}
