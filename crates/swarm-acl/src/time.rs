//! Calendar rendering of [`Timestamp`]s: UTC date and time, RFC 3339 text.
//!
//! Pure arithmetic on the proleptic Gregorian calendar (no clock, no time zone database):
//! messages meant for people carry `2026-11-30T12:34:56.789Z` rather than Unix
//! milliseconds.

use std::fmt;

use crate::Timestamp;

const MS_PER_DAY: i64 = 86_400_000;

/// A [`Timestamp`] as a UTC calendar date and time of day, in the proleptic Gregorian
/// calendar (leap seconds are not counted, as in Unix time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UtcDateTime {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    millisecond: u16,
}

impl UtcDateTime {
    /// The year (astronomical numbering: year 0 is 1 BC).
    pub fn year(&self) -> i64 {
        self.year
    }
    /// The month, 1-12.
    pub fn month(&self) -> u8 {
        self.month
    }
    /// The day of the month, 1-31.
    pub fn day(&self) -> u8 {
        self.day
    }
    /// The hour, 0-23.
    pub fn hour(&self) -> u8 {
        self.hour
    }
    /// The minute, 0-59.
    pub fn minute(&self) -> u8 {
        self.minute
    }
    /// The second, 0-59.
    pub fn second(&self) -> u8 {
        self.second
    }
    /// The millisecond, 0-999.
    pub fn millisecond(&self) -> u16 {
        self.millisecond
    }
}

/// RFC 3339 text of a [`Timestamp`] (from [`Timestamp::rfc3339`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(UtcDateTime);

impl fmt::Display for Rfc3339 {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`. Years outside 0000-9999, which RFC 3339 cannot write,
    /// get a sign and as many digits as they need (ISO 8601's expanded form, `+10000-…`,
    /// `-0001-…`), so the text never lies about the time.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        if (0..=9999).contains(&t.year) {
            write!(f, "{:04}", t.year)?;
        } else {
            write!(f, "{:+05}", t.year)?;
        }
        write!(
            f,
            "-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.month, t.day, t.hour, t.minute, t.second, t.millisecond
        )
    }
}

impl Timestamp {
    /// The UTC calendar date and time of day.
    pub fn to_utc(self) -> UtcDateTime {
        let ms = self.as_millis();
        let days = ms.div_euclid(MS_PER_DAY);
        let in_day = ms.rem_euclid(MS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        // in_day < 86 400 000, so every part fits its type.
        let secs = in_day / 1000;
        UtcDateTime {
            year,
            month,
            day,
            hour: u8::try_from(secs / 3600).unwrap_or(0),
            minute: u8::try_from(secs % 3600 / 60).unwrap_or(0),
            second: u8::try_from(secs % 60).unwrap_or(0),
            millisecond: u16::try_from(in_day % 1000).unwrap_or(0),
        }
    }

    /// RFC 3339 text in UTC with milliseconds, for messages meant for people:
    /// `Timestamp::from_millis(0).rfc3339().to_string() == "1970-01-01T00:00:00.000Z"`.
    pub fn rfc3339(self) -> Rfc3339 {
        Rfc3339(self.to_utc())
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`). Exact for every `i64` day count a `Timestamp` can produce.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    // Count from 0000-03-01 so the leap day is the last day of the (shifted) year; eras
    // are the 146 097-day cycles of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, u8::try_from(month).unwrap_or(1), u8::try_from(day).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ms: i64) -> String {
        Timestamp::from_millis(ms).rfc3339().to_string()
    }

    #[test]
    fn known_instants_render_as_rfc3339() {
        assert_eq!(text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(text(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(text(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(text(951_782_400_000), "2000-02-29T00:00:00.000Z", "400-year leap day");
        assert_eq!(text(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(text(4_107_456_000_000), "2100-02-28T00:00:00.000Z");
        assert_eq!(text(4_107_542_400_000), "2100-03-01T00:00:00.000Z", "2100 has no Feb 29");
        assert_eq!(text(1_767_225_599_999), "2025-12-31T23:59:59.999Z");
        assert_eq!(text(1_796_117_251_012), "2026-12-01T09:27:31.012Z");
        assert_eq!(text(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(text(-62_167_219_200_000), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn years_rfc3339_cannot_write_get_the_expanded_form() {
        assert_eq!(text(253_402_300_800_000), "+10000-01-01T00:00:00.000Z");
        assert_eq!(text(-62_167_219_200_001), "-0001-12-31T23:59:59.999Z");
        // The extremes neither panic nor overflow.
        assert_eq!(text(i64::MAX), "+292278994-08-17T07:12:55.807Z");
        assert_eq!(text(i64::MIN), "-292275055-05-16T16:47:04.192Z");
    }

    /// Walks day by day across four centuries against a plain calendar model.
    #[test]
    fn every_day_of_four_centuries_matches_a_simple_calendar() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_len = |y: i64, m: u8| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        // Start at 1900-01-01 (day -25 567) and walk to 2300.
        let (mut y, mut m, mut d) = (1900_i64, 1_u8, 1_u8);
        for days in -25_567..(-25_567 + 146_097) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!((y, m, d), (2300, 1, 1));
    }

    #[test]
    fn parts_are_exposed() {
        let t = Timestamp::from_millis(1_796_117_251_012).to_utc();
        assert_eq!(
            (t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second(), t.millisecond()),
            (2026, 12, 1, 9, 27, 31, 12)
        );
    }
}
