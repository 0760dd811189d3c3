//! Timeframes: days of the week, a time window, a time zone from the bundled IANA
//! database (so evaluation does not depend on the host's `/usr/share/zoneinfo`).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use jiff::tz::{TimeZone, TimeZoneDatabase};
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use super::Timeframe;

words! {
    /// A day of the week.
    Weekday {
        /// Monday.
        Monday = "monday",
        /// Tuesday.
        Tuesday = "tuesday",
        /// Wednesday.
        Wednesday = "wednesday",
        /// Thursday.
        Thursday = "thursday",
        /// Friday.
        Friday = "friday",
        /// Saturday.
        Saturday = "saturday",
        /// Sunday.
        Sunday = "sunday",
    }
}

impl Weekday {
    fn from_jiff(day: jiff::civil::Weekday) -> Self {
        Weekday::ALL[usize::from(day.to_monday_zero_offset().unsigned_abs())]
    }

    fn previous(self) -> Self {
        let i = Weekday::ALL.iter().position(|d| *d == self).unwrap_or(0);
        Weekday::ALL[(i + 6) % 7]
    }
}

/// A time of day in whole minutes, written `HH:MM` (`00:00` to `24:00`, the latter
/// only as an end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Midnight at the end of the day, `24:00`.
    pub const END_OF_DAY: TimeOfDay = TimeOfDay(24 * 60);

    /// The time `hour:minute`; `None` past `24:00`.
    #[must_use]
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        let m = u16::from(hour) * 60 + u16::from(minute);
        (minute < 60 && m <= 24 * 60).then_some(TimeOfDay(m))
    }

    /// Minutes since midnight.
    #[must_use]
    pub const fn minutes(self) -> u16 {
        self.0
    }
}

impl FromStr for TimeOfDay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("\"{s}\" is not a time: write HH:MM, from 00:00 to 24:00");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        let digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(m) {
            return Err(bad());
        }
        let h: u8 = h.parse().map_err(|_| bad())?;
        let m: u8 = m.parse().map_err(|_| bad())?;
        TimeOfDay::new(h, m).ok_or_else(bad)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The IANA database compiled into this crate.
fn zones() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// The zone called `name` (any case), or what to fix.
pub(super) fn zone(name: &str) -> Result<TimeZone, String> {
    zones().get(name).map_err(|_| {
        format!("\"{name}\" is not an IANA time zone: write one such as Europe/Paris or UTC")
    })
}

/// Where a timeframe stands at an instant.
pub(super) struct Local {
    /// The day and time in the timeframe's zone, `friday 20:15`.
    pub(super) now: String,
    /// Whether the window is open.
    pub(super) open: bool,
}

impl Timeframe {
    /// Whether requests are accepted at `at`, and the local day and time there.
    pub(super) fn local(&self, at: OffsetDateTime) -> Local {
        let Ok(tz) = zone(&self.time_zone) else {
            // Validation checked the zone; a hand-built flow with a bad one is closed.
            return Local {
                now: format!("unknown time zone {}", self.time_zone),
                open: false,
            };
        };
        let nanos = at.unix_timestamp_nanos();
        let zoned = jiff::Timestamp::from_nanosecond(nanos)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned_datetime(tz);
        let day = Weekday::from_jiff(zoned.weekday());
        let minutes = u16::try_from(zoned.hour()).unwrap_or(0) * 60
            + u16::try_from(zoned.minute()).unwrap_or(0);
        let now = TimeOfDay(minutes);
        let on = |d: Weekday| self.days_of_week.contains(&d);
        let (start, end) = (self.start_time, self.end_time);
        let open = if start < end {
            on(day) && start <= now && now < end
        } else {
            // Overnight: the evening of an open day, or the morning after one.
            (on(day) && now >= start) || (on(day.previous()) && now < end)
        };
        Local {
            now: format!("{day} {now}"),
            open,
        }
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = self.days_of_week.iter().map(|d| d.as_str()).collect();
        let days = if self.days_of_week.len() == 7 {
            "every day".to_owned()
        } else {
            days.join(", ")
        };
        write!(
            f,
            "{days}, {}-{} ({})",
            self.start_time, self.end_time, self.time_zone
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn frame(days: &[Weekday], start: &str, end: &str, tz: &str) -> Timeframe {
        Timeframe {
            days_of_week: days.to_vec(),
            start_time: start.parse().unwrap(),
            end_time: end.parse().unwrap(),
            time_zone: tz.into(),
        }
    }

    #[test]
    fn times() {
        assert_eq!("09:05".parse::<TimeOfDay>().unwrap().minutes(), 545);
        assert_eq!("24:00".parse::<TimeOfDay>().unwrap(), TimeOfDay::END_OF_DAY);
        for bad in ["9:00", "24:01", "12:60", "noon", "12-00", "+1:00"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
        assert_eq!(TimeOfDay::new(7, 30).unwrap().to_string(), "07:30");
    }

    #[test]
    fn zones_are_bundled() {
        assert!(zone("Europe/Paris").is_ok());
        assert!(zone("america/new_york").is_ok());
        assert!(zone("Mars/Olympus").is_err());
    }

    #[test]
    fn window_in_a_zone() {
        use Weekday::*;
        let f = frame(
            &[Monday, Tuesday, Wednesday, Thursday, Friday],
            "09:00",
            "18:00",
            "Europe/Paris",
        );
        // 2025-01-06 is a Monday; Paris is UTC+1 in winter.
        let l = f.local(datetime!(2025-01-06 08:30 UTC));
        assert!(l.open);
        assert_eq!(l.now, "monday 09:30");
        assert!(!f.local(datetime!(2025-01-06 07:59 UTC)).open);
        assert!(!f.local(datetime!(2025-01-06 17:00 UTC)).open);
        // Saturday.
        assert!(!f.local(datetime!(2025-01-11 10:00 UTC)).open);
        // Summer time: UTC+2.
        assert!(f.local(datetime!(2025-07-07 07:00 UTC)).open);
        assert!(!f.local(datetime!(2025-07-07 06:59 UTC)).open);
    }

    #[test]
    fn overnight_window() {
        let f = frame(&[Weekday::Friday], "22:00", "06:00", "UTC");
        assert!(f.local(datetime!(2025-01-10 23:00 UTC)).open); // Friday night
        assert!(f.local(datetime!(2025-01-11 05:59 UTC)).open); // Saturday morning
        assert!(!f.local(datetime!(2025-01-11 06:00 UTC)).open);
        assert!(!f.local(datetime!(2025-01-10 05:00 UTC)).open); // Friday morning
        let to_midnight = frame(&[Weekday::Friday], "20:00", "24:00", "UTC");
        assert!(to_midnight.local(datetime!(2025-01-10 23:59 UTC)).open);
        assert!(!to_midnight.local(datetime!(2025-01-11 00:00 UTC)).open);
    }
}
