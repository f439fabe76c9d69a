//! `time`: the current date and time in any IANA time zone, and conversions between zones.
//! The zone database is compiled in (jiff's bundled tzdb), so it works on any host.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use serde_json::{Value, json};
use troupe_actors::skill::{Skill, SkillCall, SkillError, SkillManifest};

use super::{text_argument, tool};

pub(super) struct TimeSkill;

/// A time zone by IANA name (`Europe/Paris`), or UTC when none is given.
pub(super) fn zone(name: Option<&str>) -> Result<TimeZone, SkillError> {
    match name {
        None | Some("" | "UTC" | "utc" | "Z") => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|_| {
            SkillError::invalid(format!(
                "unknown time zone `{name}`; use an IANA name such as Europe/Paris"
            ))
        }),
    }
}

/// Reads a moment: RFC 3339 with an offset (`2026-11-27T10:00:00Z`), a zoned time
/// (`…[Europe/Paris]`), or a wall-clock date and time (`2026-11-27 10:00`, or a date alone
/// for midnight) in `zone`.
pub(super) fn parse_moment(text: &str, zone: &TimeZone) -> Result<ZonedDateTime, SkillError> {
    let text = text.trim();
    if let Ok(zoned) = text.parse::<ZonedDateTime>() {
        return Ok(zoned);
    }
    if let Ok(instant) = text.parse::<Timestamp>() {
        return Ok(instant.to_zoned_datetime(zone.clone()));
    }
    let civil = text
        .parse::<DateTime>()
        .or_else(|_| text.parse::<Date>().map(|date| date.to_datetime(jiff::civil::time(0, 0, 0, 0))))
        .map_err(|_| {
            SkillError::invalid(format!(
                "`{text}` is not a date and time (use e.g. 2026-11-27T10:00:00Z or 2026-11-27 10:00)"
            ))
        })?;
    civil
        .to_zoned_datetime(zone.clone())
        .map_err(|error| SkillError::invalid(format!("`{text}` does not exist there: {error}")))
}

/// How a moment is shown to the model.
pub(super) fn describe(zoned: &ZonedDateTime) -> Value {
    json!({
        "datetime": zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        "date": zoned.date().to_string(),
        "time": zoned.strftime("%H:%M:%S").to_string(),
        "weekday": zoned.strftime("%A").to_string(),
        "timezone": zoned.time_zone().iana_name().unwrap_or("UTC"),
        "utc_offset": zoned.offset().to_string(),
        "unix": zoned.timestamp().as_second(),
    })
}

#[async_trait::async_trait]
impl Skill for TimeSkill {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        Ok(SkillManifest {
            name: "time".into(),
            description: "The current date and time, in any time zone.".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            tools: vec![
                tool(
                    "now",
                    "The current date, time and weekday. Give an IANA time zone (e.g. Asia/Tokyo); UTC if omitted.",
                    json!({"type": "object", "properties": {
                        "timezone": {"type": "string", "description": "IANA time zone name"}},
                        "additionalProperties": false}),
                ),
                tool(
                    "convert",
                    "Converts a date and time from one time zone to another.",
                    json!({"type": "object", "properties": {
                        "datetime": {"type": "string", "description": "e.g. 2026-11-27 10:00 or 2026-11-27T10:00:00Z"},
                        "from_timezone": {"type": "string", "description": "zone of a wall-clock datetime; UTC if omitted"},
                        "to_timezone": {"type": "string"}},
                        "required": ["datetime", "to_timezone"], "additionalProperties": false}),
                ),
            ],
            permissions: Default::default(),
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        let arguments = &call.arguments;
        match call.action.as_str() {
            "now" => {
                let zone = zone(arguments["timezone"].as_str())?;
                Ok(describe(&Timestamp::now().to_zoned_datetime(zone)))
            }
            "convert" => {
                let from = zone(arguments["from_timezone"].as_str())?;
                let to = zone(Some(text_argument(arguments, "to_timezone")?))?;
                let moment = parse_moment(text_argument(arguments, "datetime")?, &from)?;
                Ok(describe(&moment.with_time_zone(to)))
            }
            other => Err(SkillError::invalid(format!("no tool `{other}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(action: &str, arguments: Value) -> SkillCall {
        SkillCall {
            call_id: "c".into(),
            action: action.into(),
            arguments,
            session: Default::default(),
        }
    }

    #[tokio::test]
    async fn now_is_now_in_the_asked_zone() {
        let before = Timestamp::now().as_second();
        let answer = TimeSkill
            .execute(call("now", json!({"timezone": "Asia/Tokyo"})))
            .await
            .unwrap();
        let unix = answer["unix"].as_i64().unwrap();
        assert!((before..=before + 5).contains(&unix));
        assert_eq!(answer["timezone"], "Asia/Tokyo");
        assert_eq!(answer["utc_offset"], "+09");
        let error = TimeSkill
            .execute(call("now", json!({"timezone": "Mars/Olympus"})))
            .await
            .unwrap_err();
        assert!(error.message.contains("unknown time zone"));
    }

    #[tokio::test]
    async fn converts_across_zones_and_daylight_saving() {
        let answer = TimeSkill
            .execute(call(
                "convert",
                json!({"datetime": "2026-07-01 09:30",
                "from_timezone": "Europe/Paris", "to_timezone": "America/New_York"}),
            ))
            .await
            .unwrap();
        assert_eq!(answer["datetime"], "2026-07-01T03:30:00-04:00");
        assert_eq!(answer["weekday"], "Wednesday");
        let winter = TimeSkill
            .execute(call(
                "convert",
                json!({"datetime": "2026-12-01T12:00:00Z",
                "to_timezone": "Europe/Paris"}),
            ))
            .await
            .unwrap();
        assert_eq!(winter["time"], "13:00:00");
        let bad = TimeSkill
            .execute(call(
                "convert",
                json!({"datetime": "tomorrowish", "to_timezone": "UTC"}),
            ))
            .await
            .unwrap_err();
        assert!(bad.message.contains("not a date"));
    }
}
