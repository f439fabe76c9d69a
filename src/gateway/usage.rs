//! `GET /api/v1/usage?by=person|channel|provider|model|day&since=…`: token use and cost,
//! grouped, from the node's usage book (see `troupe_actors::usage`). For the owner's token
//! only.
//!
//! `since` is unix seconds, an RFC 3339 time (`2026-12-01T08:00:00Z`), a UTC date
//! (`2026-12-01`), `today` (the default: since 00:00 UTC), or a span back from now (`90m`,
//! `24h`, `7d`). It is rounded down to the hour.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use troupe_actors::message::unix_now;
use troupe_actors::usage::Grouping;

use super::AppState;
use super::error::{ApiCode, ApiError};

const DAY: u64 = 86_400;

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageQuery {
    #[serde(default)]
    by: Option<Grouping>,
    #[serde(default)]
    since: Option<String>,
}

/// Why `since` means no moment.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "since: `{0}` is not a moment: use unix seconds, an RFC 3339 time, a date (YYYY-MM-DD), `today`, or a span back from now such as 90m, 24h or 7d"
)]
pub(crate) struct NotAMoment(String);

/// `since` as unix seconds, at unix second `now`.
pub(crate) fn since(text: &str, now: u64) -> Result<u64, NotAMoment> {
    let text = text.trim();
    let refused = || NotAMoment(text.to_owned());
    if text == "today" {
        return Ok(now - now % DAY);
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    if let Some(span) = span_seconds(text) {
        return Ok(now.saturating_sub(span));
    }
    if let Ok(moment) = text.parse::<jiff::Timestamp>() {
        return u64::try_from(moment.as_second()).map_err(|_| refused());
    }
    let date = text.parse::<jiff::civil::Date>().map_err(|_| refused())?;
    let midnight = jiff::tz::TimeZone::UTC
        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|_| refused())?;
    u64::try_from(midnight.as_second()).map_err(|_| refused())
}

/// `90m`, `24h`, `7d` in seconds.
fn span_seconds(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        'm' => 60,
        'h' => 3600,
        'd' => DAY,
        _ => return None,
    };
    let count: u64 = text[..text.len() - 1].parse().ok()?;
    count.checked_mul(unit)
}

/// `GET /api/v1/usage`.
pub(crate) async fn report(
    State(state): State<AppState>,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiCode::InvalidQuery,
            "use ?by=person|channel|provider|model|day&since=…",
        )
        .into_response();
    };
    let now = unix_now();
    let since = match since(query.since.as_deref().unwrap_or("today"), now) {
        Ok(since) => since,
        Err(error) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiCode::InvalidQuery,
                error.to_string(),
            )
            .into_response();
        }
    };
    // Summing many hours of many people is CPU work: on the blocking pool.
    let (book, by) = (
        Arc::clone(&state.usage),
        query.by.unwrap_or(Grouping::Person),
    );
    match tokio::task::spawn_blocking(move || book.report(by, since)).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiCode::Internal,
            format!("the report could not be made: {error}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 10:30:00 UTC.
    const NOW: u64 = 1_796_639_400;

    #[test]
    fn since_reads_every_form_it_documents() {
        assert_eq!(since("today", NOW), Ok(1_796_601_600));
        assert_eq!(since("1700000000", NOW), Ok(1_700_000_000));
        assert_eq!(since("90m", NOW), Ok(NOW - 5400));
        assert_eq!(since("7d", NOW), Ok(NOW - 7 * DAY));
        assert_eq!(since("2026-12-07T08:00:00Z", NOW), Ok(1_796_630_400));
        assert_eq!(since("2026-12-06", NOW), Ok(1_796_601_600 - DAY));
    }

    #[test]
    fn since_refuses_what_is_no_moment() {
        for text in ["yesterday", "7w", "-5", "", "99999999999999999999d"] {
            let error = since(text, NOW).unwrap_err();
            assert!(error.to_string().starts_with("since: `"), "{error}");
        }
    }
}
