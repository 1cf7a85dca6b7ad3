//! The only module that reads clocks.
//!
//! Every duration the harness reports comes from [`Stamp`]s taken here (a monotonic
//! clock), and every wall-clock date (report directory names, stamps in plans) from
//! [`wall_time`]. Keeping clock reads in one place makes the timed regions easy to
//! audit and lets a tidy test enforce that nothing else times itself.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A point on the monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(Instant);

impl Stamp {
    pub fn elapsed(self) -> Duration {
        self.0.elapsed()
    }

    pub fn duration_since(self, earlier: Stamp) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }
}

pub fn now() -> Stamp {
    Stamp(Instant::now())
}

/// Seconds since the Unix epoch, from the system clock.
pub fn wall_time() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

/// A civil UTC date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl DateTime {
    /// Converts Unix seconds to a UTC date with the days-to-civil algorithm
    /// (Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms").
    pub fn from_unix(seconds: u64) -> DateTime {
        let days = (seconds / 86_400) as i64;
        let second_of_day = seconds % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
        let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        DateTime {
            year,
            month,
            day,
            hour: (second_of_day / 3600) as u32,
            minute: (second_of_day / 60 % 60) as u32,
            second: (second_of_day % 60) as u32,
        }
    }

    /// `2026-11-21`
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `2026-11-21T09:05:03Z`
    pub fn rfc3339(&self) -> String {
        format!("{}T{:02}:{:02}:{:02}Z", self.date(), self.hour, self.minute, self.second)
    }

    /// `2026-11-21T090503Z`, safe in file names.
    pub fn compact(&self) -> String {
        format!("{}T{:02}{:02}{:02}Z", self.date(), self.hour, self.minute, self.second)
    }
}

/// Parses `YYYY-MM-DD` into `(year, month, day)`, checking the day exists. Only that
/// zero-padded form is a date: waivers compare dates as strings.
pub fn parse_date(text: &str) -> Option<(i64, u32, u32)> {
    let shape = text.len() == 10
        && text.bytes().enumerate().all(|(index, byte)| match index {
            4 | 7 => byte == b'-',
            _ => byte.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let mut parts = text.split('-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || text.len() != 10 || !(1..=12).contains(&month) {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month as usize - 1];
    (1..=days_in_month).contains(&day).then_some((year, month, day))
}

#[cfg(test)]
mod tests {
    use super::{DateTime, parse_date};

    #[test]
    fn dates_parse() {
        assert_eq!(parse_date("2026-02-28"), Some((2026, 2, 28)));
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("26-1-1"), None);
        // Ten characters, but not zero-padded: as strings they would sort wrongly.
        assert_eq!(parse_date("9-001-0001"), None);
        assert_eq!(parse_date("2026-9-001"), None);
        assert_eq!(parse_date("+026-01-01"), None);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(DateTime::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(DateTime::from_unix(951_782_400).rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(DateTime::from_unix(1_795_296_303).rfc3339(), "2026-11-21T21:25:03Z");
    }
}
