//! Wall-clock helpers producing timestamps in the formats GitLab's entities use.

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Current time as GitLab renders `created_at` (`2025-01-31T12:00:00.123Z`).
pub(crate) fn now_iso() -> String {
    iso_from_ms(now_ms())
}

/// Today's date plus `days`, as `YYYY-MM-DD`.
pub(crate) fn date_in_days(days: i64) -> String {
    let d = OffsetDateTime::now_utc().date() + time::Duration::days(days);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Whether `s` is a valid `YYYY-MM-DD` date.
pub(crate) fn is_valid_date(s: &str) -> bool {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, fmt).is_ok()
}

/// RFC 2616 date for a Unix time in seconds (used by `RateLimit-ResetTime`).
pub(crate) fn http_date(unix_secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs))
}

/// A Unix time in milliseconds as GitLab renders timestamps (`…T12:00:00.123Z`).
pub(crate) fn iso_from_ms(ms: u64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub(crate) fn today() -> String {
    date_in_days(0)
}

/// Parses a Grape `DateTime` parameter (`YYYY-MM-DD` or RFC 3339) into an
/// entity timestamp and Unix milliseconds.
pub(crate) fn parse_datetime(s: &str) -> Option<(String, u64)> {
    let s = s.trim();
    let at = if let Ok(d) =
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
    {
        d.midnight().assume_utc()
    } else {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?
    };
    let ms = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
    Some((iso_from_ms(ms), ms))
}
