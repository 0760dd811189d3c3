//! Human durations for TTLs and `max_ttl`: `90s`, `15m`, `8h`, `7d`, and sums such
//! as `1h30m`.
//!
//! ```
//! use pgwarden_core::duration::Ttl;
//! let ttl: Ttl = "1h30m".parse().unwrap();
//! assert_eq!(ttl.as_secs(), 5400);
//! assert_eq!(ttl.to_string(), "1h30m");
//! let max: Ttl = "7d".parse().unwrap();
//! assert!("8d".parse::<Ttl>().unwrap().check_within(max).is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest TTL pgwarden accepts anywhere: ten years, beyond which PostgreSQL's
/// `VALID UNTIL` still works but access is no longer "just in time".
pub const MAX_TTL_CEILING: Ttl = Ttl(3650 * 86_400);

/// A whole number of seconds, at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ttl(u64);

/// Why a duration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Not of the form `<number><unit>[<number><unit>...]`.
    #[error(
        "invalid duration \"{value}\": use a number followed by s, m, h or d, e.g. 90s, 15m, 8h, 7d or 1h30m"
    )]
    Syntax {
        /// The rejected text.
        value: String,
    },
    /// Zero.
    #[error("invalid duration \"{value}\": must be longer than zero")]
    Zero {
        /// The rejected text.
        value: String,
    },
    /// Longer than the allowed maximum.
    #[error("duration {value} is longer than the maximum {max}")]
    TooLong {
        /// The rejected duration.
        value: Ttl,
        /// The bound it exceeds.
        max: Ttl,
    },
}

impl Ttl {
    /// A TTL of `secs` seconds; `None` for zero.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Option<Ttl> {
        if secs == 0 { None } else { Some(Ttl(secs)) }
    }

    /// The length in seconds.
    #[must_use]
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// The length as a [`Duration`].
    #[must_use]
    pub const fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }

    /// Errors when longer than `max`.
    pub fn check_within(self, max: Ttl) -> Result<Ttl, DurationError> {
        if self > max {
            Err(DurationError::TooLong { value: self, max })
        } else {
            Ok(self)
        }
    }
}

impl FromStr for Ttl {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || DurationError::Syntax {
            value: s.to_owned(),
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(syntax());
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        let mut last_unit = u64::MAX;
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(syntax()),
            };
            // Units must shrink (1d2h, not 2h1d or 1h1h) so each text has one meaning.
            if digits.is_empty() || unit >= last_unit {
                return Err(syntax());
            }
            let n: u64 = digits.parse().map_err(|_| syntax())?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(syntax)?;
            digits.clear();
            last_unit = unit;
        }
        if !digits.is_empty() {
            return Err(syntax());
        }
        let ttl = Ttl::from_secs(total).ok_or_else(|| DurationError::Zero {
            value: s.to_owned(),
        })?;
        ttl.check_within(MAX_TTL_CEILING)
    }
}

impl fmt::Display for Ttl {
    /// The shortest canonical text, largest unit first (`5400` seconds is `1h30m`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        for (unit, suffix) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
            if rest >= unit {
                write!(f, "{}{suffix}", rest / unit)?;
                rest %= unit;
            }
        }
        Ok(())
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("90s", 90),
            ("15m", 900),
            ("8h", 28_800),
            ("7d", 604_800),
            ("1h30m", 5400),
            ("1d2h3m4s", 93_784),
            (" 45s ", 45),
            ("3650d", 315_360_000),
        ];
        for (s, secs) in ok {
            assert_eq!(s.parse::<Ttl>().unwrap().as_secs(), secs, "{s}");
        }
        let bad = [
            ("", "invalid duration"),
            ("10", "invalid duration"),
            ("h", "invalid duration"),
            ("1w", "invalid duration"),
            ("-5m", "invalid duration"),
            ("1.5h", "invalid duration"),
            ("2h1d", "invalid duration"),
            ("1h1h", "invalid duration"),
            ("0s", "longer than zero"),
            ("0h0m", "longer than zero"),
            ("3651d", "longer than the maximum"),
            ("99999999999999999999d", "invalid duration"),
        ];
        for (s, msg) in bad {
            let err = s.parse::<Ttl>().unwrap_err().to_string();
            assert!(err.contains(msg), "{s:?}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for secs in [
            1, 59, 60, 61, 3599, 3600, 5400, 86_399, 86_400, 90_061, 604_800,
        ] {
            let ttl = Ttl::from_secs(secs).unwrap();
            assert_eq!(ttl.to_string().parse::<Ttl>().unwrap(), ttl);
        }
        assert_eq!(Ttl::from_secs(604_800).unwrap().to_string(), "7d");
    }

    #[test]
    fn bounds() {
        let max: Ttl = "7d".parse().unwrap();
        assert!("7d".parse::<Ttl>().unwrap().check_within(max).is_ok());
        let err = "7d1s"
            .parse::<Ttl>()
            .unwrap()
            .check_within(max)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "duration 7d1s is longer than the maximum 7d"
        );
    }
}
