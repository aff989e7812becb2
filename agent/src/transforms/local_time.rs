//! Local calendar time in the agent's configured zone, for features that depend on the hour or
//! the weekday. Only this module reads the time zone database.

use crate::sample::Millis;

const BUCKET_MS: Millis = 15 * 60 * 1000;
const DAY_MS: Millis = 86_400_000;

/// A moment in local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Days since 1970-01-01, local.
    pub day: i32,
    /// Hour of the day, 0–23.
    pub hour: u8,
    /// Day of the week, Monday = 0 … Sunday = 6.
    pub weekday: u8,
    /// Milliseconds since local midnight.
    pub ms_of_day: Millis,
    /// The zone's offset from UTC, minutes.
    pub offset_min: i16,
}

impl LocalTime {
    /// Saturday or Sunday.
    pub fn is_weekend(&self) -> bool {
        self.weekday >= 5
    }

    /// Between 22:00 and 06:00.
    pub fn is_night(&self) -> bool {
        self.hour >= 22 || self.hour < 6
    }
}

/// Converts UTC milliseconds to local time, caching the zone's offset for 15-minute spans
/// (every zone in use changes its offset only on such a boundary), so the hot path costs a few
/// integer operations instead of a time-zone lookup.
#[derive(Debug, Clone)]
pub struct LocalClock {
    zone: jiff::tz::TimeZone,
    cache: Option<(Millis, Millis)>,
}

/// The configured zone does not exist.
#[derive(Debug, thiserror::Error)]
#[error("time zone {name:?} is unknown: {source}")]
pub struct UnknownZone {
    name: String,
    source: jiff::Error,
}

impl LocalClock {
    /// A clock for the IANA zone `name`, e.g. "Asia/Shanghai" or "UTC".
    pub fn new(name: &str) -> Result<Self, UnknownZone> {
        let zone = jiff::tz::TimeZone::get(name).map_err(|source| UnknownZone {
            name: name.to_owned(),
            source,
        })?;
        Ok(LocalClock { zone, cache: None })
    }

    /// A clock in UTC.
    pub fn utc() -> Self {
        LocalClock {
            zone: jiff::tz::TimeZone::UTC,
            cache: None,
        }
    }

    /// The local time at `t_ms`.
    pub fn at(&mut self, t_ms: Millis) -> LocalTime {
        let bucket = t_ms.div_euclid(BUCKET_MS);
        let offset_ms = match self.cache {
            Some((cached, offset_ms)) if cached == bucket => offset_ms,
            _ => {
                let offset_ms = jiff::Timestamp::from_millisecond(t_ms)
                    .map(|timestamp| i64::from(self.zone.to_offset(timestamp).seconds()) * 1000)
                    .unwrap_or(0);
                self.cache = Some((bucket, offset_ms));
                offset_ms
            }
        };
        let local = t_ms + offset_ms;
        let day = local.div_euclid(DAY_MS);
        let ms_of_day = local.rem_euclid(DAY_MS);
        LocalTime {
            day: day as i32,
            hour: (ms_of_day / 3_600_000) as u8,
            // 1970-01-01 was a Thursday.
            weekday: (day + 3).rem_euclid(7) as u8,
            ms_of_day,
            offset_min: (offset_ms / 60_000) as i16,
        }
    }

    /// UTC milliseconds of the local midnight that starts local day `day`.
    pub fn midnight(&mut self, day: i32) -> Millis {
        // Guess with the offset at UTC midnight, then correct once for a change that day.
        let utc_midnight = Millis::from(day) * DAY_MS;
        let guess = utc_midnight - i64::from(self.at(utc_midnight).offset_min) * 60_000;
        utc_midnight - i64::from(self.at(guess).offset_min) * 60_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_is_eight_hours_ahead() {
        let mut clock = LocalClock::new("Asia/Shanghai").unwrap();
        // 2024-05-01T23:30:00Z is Thursday 2 May, 07:30 in Shanghai.
        let local = clock.at(1_714_606_200_000);
        assert_eq!((local.hour, local.weekday, local.offset_min), (7, 3, 480));
        assert_eq!(local.day, 19_845);
        assert!(!local.is_weekend() && !local.is_night());
        assert_eq!(clock.midnight(19_845), 1_714_579_200_000);
    }

    #[test]
    fn daylight_saving_time_moves_the_hour() {
        let mut clock = LocalClock::new("Europe/Berlin").unwrap();
        // 2024-03-31T00:30Z is 01:30 CET; 01:30Z is 03:30 CEST.
        assert_eq!(clock.at(1_711_845_000_000).hour, 1);
        assert_eq!(clock.at(1_711_848_600_000).hour, 3);
        assert_eq!(clock.at(1_711_848_600_000).offset_min, 120);
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(LocalClock::new("Mars/Olympus_Mons").is_err());
    }

    #[test]
    fn utc_weekdays() {
        let mut clock = LocalClock::utc();
        assert_eq!(clock.at(0).weekday, 3); // Thursday
        assert_eq!(clock.at(4 * DAY_MS).weekday, 0); // Monday
        assert!(clock.at(4 * DAY_MS + 5 * 86_400_000).is_weekend());
        assert_eq!(clock.at(-1).day, -1);
    }
}
