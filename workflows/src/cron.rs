//! Cron patterns read in a time zone. Parsing and matching are `croner`'s, including its
//! documented daylight-saving rules (the Open Cron Pattern Specification, as Vixie cron):
//!
//! - a fixed time that does not exist on a spring-forward day (02:30 in Europe/Berlin on
//!   the last Sunday of March) fires once, at the first moment after the gap (03:00);
//! - a fixed time that happens twice on a fall-back day fires once, at its first
//!   occurrence;
//! - wildcard and step fields (`*/15`) skip times inside a gap and fire in both passes of
//!   a repeated hour.
//!
//! Time zones come from jiff's bundled database, the one the rest of Troupe uses: croner is
//! given jiff's zoned times through [`CronDateTime`].

use std::cmp::Ordering;
use std::str::FromStr;

use croner::errors::CronError;
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ZonedDateTime};

/// A validated cron pattern and the zone it is read in.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    zone: TimeZone,
}

/// Why a pattern or zone was refused.
#[derive(Debug, thiserror::Error)]
pub enum CronScheduleError {
    #[error("not a cron pattern: {0}")]
    Pattern(#[source] CronError),
    #[error("unknown time zone: {0}")]
    Zone(#[source] jiff::Error),
}

impl CronSchedule {
    /// Parses `pattern` (five fields, or six with seconds first) in the IANA zone `zone`.
    pub fn new(pattern: &str, zone: &str) -> Result<Self, CronScheduleError> {
        let cron = Cron::from_str(pattern).map_err(CronScheduleError::Pattern)?;
        let zone = TimeZone::get(zone).map_err(CronScheduleError::Zone)?;
        Ok(Self { cron, zone })
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = Wall(after.to_zoned_datetime(self.zone.clone()));
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|wall| wall.0.timestamp())
    }
}

/// A jiff zoned time as croner sees it.
#[derive(Clone, Debug)]
struct Wall(ZonedDateTime);

fn to_civil(datetime: DateTime) -> CivilDateTime {
    CivilDateTime::new(
        CivilDate::from_parts_unchecked(
            i32::from(datetime.year()),
            u32::from(datetime.month().unsigned_abs()),
            u32::from(datetime.day().unsigned_abs()),
        ),
        CivilTime::from_parts_unchecked(
            u32::from(datetime.hour().unsigned_abs()),
            u32::from(datetime.minute().unsigned_abs()),
            u32::from(datetime.second().unsigned_abs()),
        ),
    )
}

fn part(value: u32) -> Result<i8, CronError> {
    i8::try_from(value).map_err(|_| CronError::InvalidDate)
}

fn to_jiff(civil: CivilDateTime) -> Result<DateTime, CronError> {
    let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
    DateTime::new(
        year,
        part(civil.month())?,
        part(civil.day())?,
        part(civil.hour())?,
        part(civil.minute())?,
        part(civil.second())?,
        0,
    )
    .map_err(|_| CronError::InvalidDate)
}

impl CronDateTime for Wall {
    fn to_civil(&self) -> CivilDateTime {
        to_civil(self.0.datetime())
    }

    fn civil_weekday(&self) -> Weekday {
        Weekday::from_days_from_sunday(u32::from(
            self.0.weekday().to_sunday_zero_offset().unsigned_abs(),
        ))
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        let ambiguous = self
            .0
            .time_zone()
            .to_ambiguous_zoned_datetime(to_jiff(civil)?);
        let invalid = |_| CronError::InvalidTime;
        Ok(match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => {
                Resolution::Single(Wall(ambiguous.unambiguous().map_err(invalid)?))
            }
            AmbiguousOffset::Fold { .. } => Resolution::Ambiguous(
                Wall(ambiguous.clone().earlier().map_err(invalid)?),
                Wall(ambiguous.later().map_err(invalid)?),
            ),
            AmbiguousOffset::Gap { .. } => Resolution::Gap,
        })
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
            .map(Wall)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.timestamp().cmp(&other.0.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn firings(schedule: &CronSchedule, from: &str, count: usize) -> Vec<String> {
        let mut now = at(from);
        (0..count)
            .map(|_| {
                now = schedule.next_after(now).unwrap();
                now.to_string()
            })
            .collect()
    }

    #[test]
    fn a_daily_job_follows_its_zone() {
        let schedule = CronSchedule::new("0 7 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            firings(&schedule, "2026-12-07T12:00:00Z", 2),
            ["2026-12-08T06:00:00Z", "2026-12-09T06:00:00Z"]
        );
    }

    #[test]
    fn half_past_two_on_the_spring_forward_day_fires_once_right_after_the_gap() {
        // 2026-03-29: Berlin's clocks go from 02:00 CET straight to 03:00 CEST.
        let schedule = CronSchedule::new("30 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            firings(&schedule, "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, the first moment after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
    }

    #[test]
    fn half_past_two_on_the_fall_back_day_fires_once_at_its_first_occurrence() {
        // 2026-10-25: Berlin's 02:00–03:00 happens twice (CEST, then CET).
        let schedule = CronSchedule::new("30 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            firings(&schedule, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn bad_patterns_and_zones_are_refused() {
        assert!(matches!(
            CronSchedule::new("61 * * * *", "UTC"),
            Err(CronScheduleError::Pattern(_))
        ));
        assert!(matches!(
            CronSchedule::new("0 7 * * *", "Mars/Olympus"),
            Err(CronScheduleError::Zone(_))
        ));
    }
}
