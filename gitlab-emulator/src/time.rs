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
    let now = OffsetDateTime::now_utc();
    let ms = now.millisecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        ms
    )
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
