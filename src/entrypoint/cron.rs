//! [`CronSchedule`]: a timer's cron expression in its time zone, and the
//! next occurrence after a given time.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use chrono_tz::Tz;

/// A parsed cron expression and time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    timezone: Tz,
}

impl CronSchedule {
    /// Parses `expression` (six or seven fields, seconds first) read in the
    /// IANA time zone `timezone`. The error ([`Error::Invalid`]) is one
    /// line saying what is wrong.
    ///
    /// ```
    /// use enoki::entrypoint::cron::CronSchedule;
    ///
    /// assert!(CronSchedule::parse("0 */5 * * * *", "UTC").is_ok());
    /// let err = CronSchedule::parse("*/5 * * * *", "UTC").unwrap_err().to_string();
    /// assert!(err.contains("6 or 7 fields"), "{err}");
    /// assert!(CronSchedule::parse("0 0 * * * *", "Mars/Olympus").is_err());
    /// ```
    pub fn parse(expression: &str, timezone: &str) -> Result<CronSchedule> {
        let fields = expression.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(Error::Invalid(format!(
                "cron expression {expression:?} has {fields} fields; expected 6 or 7 fields: \
                 sec min hour day-of-month month day-of-week [year]"
            )));
        }
        let schedule = cron::Schedule::from_str(expression).map_err(|err| {
            let detail = err.to_string();
            let reason = detail
                .lines()
                .map(str::trim)
                .rfind(|line| !line.is_empty() && !line.chars().all(|c| c == '^'))
                .unwrap_or("it does not parse")
                .to_owned();
            Error::Invalid(format!(
                "cron expression {expression:?} does not parse: {reason}"
            ))
        })?;
        let timezone = Tz::from_str(timezone).map_err(|_| {
            Error::Invalid(format!(
                "unknown time zone {timezone:?} (expected an IANA name such as UTC or Europe/Paris)"
            ))
        })?;
        Ok(CronSchedule { schedule, timezone })
    }

    /// The first occurrence strictly after `time`, if the schedule has one.
    pub fn next_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = time.with_timezone(&self.timezone);
        self.schedule
            .after(&local)
            .next()
            .map(|at| at.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn occurrences_in_utc_and_in_a_zone() {
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 8, 41, 30).unwrap();
        let every_five = CronSchedule::parse("0 */5 * * * *", "UTC").unwrap();
        assert_eq!(
            every_five.next_after(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 3, 8, 45, 0).unwrap())
        );
        // 02:00 in Paris (UTC+1 in December) is 01:00 UTC.
        let nightly = CronSchedule::parse("0 0 2 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            nightly.next_after(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 1, 0, 0).unwrap())
        );
        // Strictly after.
        let on_the_dot = Utc.with_ymd_and_hms(2026, 12, 3, 8, 45, 0).unwrap();
        assert_eq!(
            every_five.next_after(on_the_dot),
            Some(Utc.with_ymd_and_hms(2026, 12, 3, 8, 50, 0).unwrap())
        );
        // A year in the past has no occurrence left.
        let past = CronSchedule::parse("0 0 0 1 1 * 2020", "UTC").unwrap();
        assert_eq!(past.next_after(at), None);
    }

    #[test]
    fn bad_expressions_say_why_in_one_line() {
        let err = CronSchedule::parse("0 61 * * * *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Minutes must be less than"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = CronSchedule::parse("", "UTC").unwrap_err().to_string();
        assert!(err.contains("0 fields"), "{err}");
        let err = CronSchedule::parse("0 0 * * * *", "Nowhere")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown time zone \"Nowhere\""), "{err}");
    }
}
