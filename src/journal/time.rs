//! Journal timestamps: unix milliseconds in the store, RFC 3339 UTC for people and headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in unix epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// Howard Hinnant's days-from-civil, valid for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Last millisecond humantime formats (the end of year 9999).
const LAST_FORMATTED_MS: i64 = 253_402_300_799_999;

/// `2026-11-25T16:32:10.123Z` for a unix millisecond timestamp (clamped to 1970..=9999, the
/// years RFC 3339 can write without a sign, so a corrupt value cannot panic the formatter).
pub fn rfc3339(ms: i64) -> String {
    let ms = u64::try_from(ms.clamp(0, LAST_FORMATTED_MS)).unwrap_or(0);
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Parses `2026-11-25T16:32:10Z` (fraction and `+hh:mm` offset allowed, or a bare date) into unix
/// ms. Written out because humantime's parser takes neither offsets nor bare dates.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let mut ms = days_from_civil(y, m as u32, d as u32) * 86_400_000;
    if let Some(time) = time {
        let (clock, offset_ms) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else {
            let at = time.rfind(['+', '-'])?;
            let (c, off) = time.split_at(at);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':')?;
            (c, sign * (num(oh)? * 3_600_000 + num(om)? * 60_000))
        };
        let (hms, frac) = match clock.split_once('.') {
            Some((hms, f)) => (hms, Some(f)),
            None => (clock, None),
        };
        let mut hms = hms.splitn(3, ':');
        let (h, mi, s) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        ms += h * 3_600_000 + mi * 60_000 + s * 1000 - offset_ms;
        if let Some(f) = frac {
            let digits: String = f.chars().take(3).collect();
            let scale = 10_i64.pow(3 - digits.len() as u32);
            num(f)?;
            ms += num(&digits)? * scale;
        }
    }
    Some(ms)
}

/// A `--since` value: RFC 3339 time, or an age like `90s`, `15m`, `2h`, `7d` (humantime's
/// durations) before `now_ms`.
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(age) = humantime::parse_duration(text) {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        return Ok(now_ms.saturating_sub(age_ms));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!("{text:?}: use an RFC 3339 time (2026-11-25T16:00:00Z) or an age (15m, 2h, 7d)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_624_330_000), "2026-11-25T16:32:10.000Z");
        // Out of range is clamped, never a panic.
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for ms in [0, 951_782_400_123, 1_795_624_330_999, 4_102_444_799_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-11-25T17:32:10+01:00"),
            Some(1_795_624_330_000)
        );
        assert_eq!(parse_rfc3339("2026-11-25"), Some(1_795_564_800_000));
        for bad in [
            "",
            "2026-13-01",
            "x",
            "2026-11-25T25:00:00Z",
            "2026-11-25T10:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn since_accepts_ages() {
        assert_eq!(parse_since("15m", 1_000_000), Ok(100_000));
        assert_eq!(parse_since("2h", 10_000_000), Ok(2_800_000));
        assert_eq!(parse_since("90s", 100_000), Ok(10_000));
        assert_eq!(parse_since("7d", 0), Ok(-604_800_000));
        assert!(parse_since("soon", 0).is_err());
        assert_eq!(parse_since("1970-01-01T00:00:01Z", 0), Ok(1000));
    }
}
