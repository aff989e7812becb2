//! One summary per local calendar day.
//!
//! A trip belongs to the day it started on. A day is finished once no trip that started on it
//! can still be open; days with samples but no trip are reported too, so the server can tell a
//! car left standing from a head unit that went silent.

use std::collections::BTreeMap;

use super::local_time::LocalTime;
use super::score::{Score, StyleTotals};
use super::trip::Trip;
use crate::sample::Signal;

/// A trip longer than this is a long trip, metres (DOMAIN.md: trips > 100 km).
pub const LONG_TRIP_M: f64 = 100_000.0;
/// A fuel level that rises by more than this between readings is a refuel, litres.
const REFUEL_L: f32 = 2.0;
/// A state of charge that rises by more than this is a charge, percent.
const CHARGE_PCT: f32 = 2.0;

/// One finished day.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    /// Days since 1970-01-01, local.
    pub local_day: i32,
    /// The zone's offset from UTC that day, minutes.
    pub utc_offset_min: i16,
    /// Monday = 0 … Sunday = 6.
    pub weekday: u8,
    /// Distance of the trips that started this day, metres.
    pub distance_m: f64,
    /// Trips that started this day.
    pub trips: u32,
    /// Of which longer than 100 km.
    pub long_trips: u32,
    /// Time in trips, seconds.
    pub driving_s: f64,
    /// Time moving, seconds.
    pub moving_s: f64,
    /// Driving time between 22 h and 6 h, seconds.
    pub night_s: f64,
    /// Driving time per local hour, seconds.
    pub driving_s_by_local_hour: [f64; 24],
    /// Trips between home and work.
    pub commute_trips: u32,
    /// Highest speed, m/s.
    pub max_speed_mps: f64,
    /// Harsh events and speeding, and the day's distance-weighted score.
    pub style: StyleTotals,
    /// Odometer at the last reading of the day, metres.
    pub odometer_m: Option<f64>,
    /// Fuel burned, litres, when the car reports its tank.
    pub fuel_used_l: Option<f64>,
    /// State of charge used, percent, when the car reports it.
    pub soc_used_pct: Option<f64>,
}

impl Day {
    fn new(local: &LocalTime) -> Day {
        Day {
            local_day: local.day,
            utc_offset_min: local.offset_min,
            weekday: local.weekday,
            distance_m: 0.0,
            trips: 0,
            long_trips: 0,
            driving_s: 0.0,
            moving_s: 0.0,
            night_s: 0.0,
            driving_s_by_local_hour: [0.0; 24],
            commute_trips: 0,
            max_speed_mps: 0.0,
            style: StyleTotals::default(),
            odometer_m: None,
            fuel_used_l: None,
            soc_used_pct: None,
        }
    }

    /// Saturday or Sunday.
    pub fn is_weekend(&self) -> bool {
        self.weekday >= 5
    }

    /// The day's distance-weighted driving score, if it had trips.
    pub fn score(&self) -> Option<Score> {
        self.style.score()
    }
}

/// Days still open, and the last tank and battery readings.
#[derive(Debug, Clone, Default)]
pub struct DayBook {
    open: BTreeMap<i32, Day>,
    last_fuel_l: Option<f32>,
    last_soc_pct: Option<f32>,
}

impl DayBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    fn day(&mut self, local: &LocalTime) -> &mut Day {
        self.open
            .entry(local.day)
            .or_insert_with(|| Day::new(local))
    }

    /// Notes that the car reported something on this day.
    pub fn touch(&mut self, local: &LocalTime) {
        self.day(local);
    }

    /// Adds a finished trip to the day it started.
    pub fn add_trip(&mut self, trip: &Trip, commute: bool) {
        let day = self.day(&trip.start_local);
        day.trips += 1;
        day.distance_m += trip.distance_m;
        if trip.distance_m > LONG_TRIP_M {
            day.long_trips += 1;
        }
        day.driving_s += trip.duration_s();
        day.moving_s += trip.moving_s;
        day.night_s += trip.night_s;
        for (sum, add) in day
            .driving_s_by_local_hour
            .iter_mut()
            .zip(trip.driving_s_by_local_hour)
        {
            *sum += add;
        }
        day.commute_trips += u32::from(commute);
        day.max_speed_mps = day.max_speed_mps.max(trip.max_speed_mps);
        day.style.add(&trip.style, &trip.score);
        if let Some(odometer) = trip.odometer_end_m {
            day.odometer_m = Some(day.odometer_m.map_or(odometer, |day| day.max(odometer)));
        }
    }

    /// Adds a vehicle reading: odometer, fuel and charge used.
    pub fn add_signal(&mut self, signal: &Signal, local: &LocalTime) {
        let (last_fuel, last_soc) = (self.last_fuel_l, self.last_soc_pct);
        if signal.fuel_l.is_some() {
            self.last_fuel_l = signal.fuel_l;
        }
        if signal.soc_pct.is_some() {
            self.last_soc_pct = signal.soc_pct;
        }
        let day = self.day(local);
        if let Some(odometer) = signal.odometer_m {
            day.odometer_m = Some(odometer);
        }
        if let Some(fuel) = signal.fuel_l {
            let used = last_fuel.map_or(0.0, |last| used_since(last, fuel, REFUEL_L));
            *day.fuel_used_l.get_or_insert(0.0) += f64::from(used);
        }
        if let Some(soc) = signal.soc_pct {
            let used = last_soc.map_or(0.0, |last| used_since(last, soc, CHARGE_PCT));
            *day.soc_used_pct.get_or_insert(0.0) += f64::from(used);
        }
    }

    /// Finishes every day before `day`.
    pub fn close_before(&mut self, day: i32, out: &mut impl FnMut(Day)) {
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= day {
                break;
            }
            out(entry.remove());
        }
    }

    /// Finishes every open day.
    pub fn close_all(&mut self, out: &mut impl FnMut(Day)) {
        self.close_before(i32::MAX, out);
    }
}

/// Fuel or charge used between two readings: drops count, a rise beyond `refill` is a refill
/// and counts nothing, and a small rise is sensor noise that the next drop cancels.
fn used_since(last: f32, now: f32, refill: f32) -> f32 {
    if now > last + refill {
        0.0
    } else {
        (last - now).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::local_time::LocalClock;

    #[test]
    fn fuel_used_ignores_refuels() {
        let mut book = DayBook::new();
        let mut clock = LocalClock::utc();
        let local = clock.at(0);
        for (t, fuel) in [(0, 40.0), (1, 39.5), (2, 39.0), (3, 60.0), (4, 59.0)] {
            book.add_signal(
                &Signal {
                    t_ms: t,
                    fuel_l: Some(fuel),
                    odometer_m: Some(1000.0 + t as f64),
                    ..Signal::default()
                },
                &local,
            );
        }
        let mut days = Vec::new();
        book.close_all(&mut |day| days.push(day));
        assert_eq!(days.len(), 1);
        assert!((days[0].fuel_used_l.unwrap() - 2.0).abs() < 1e-6);
        assert_eq!(days[0].odometer_m, Some(1004.0));
        assert_eq!(days[0].soc_used_pct, None);
    }

    #[test]
    fn days_close_in_order_up_to_the_given_day() {
        let mut book = DayBook::new();
        let mut clock = LocalClock::utc();
        for day in [3, 1, 2] {
            book.touch(&clock.at(day * 86_400_000));
        }
        let mut closed = Vec::new();
        book.close_before(3, &mut |day| closed.push(day.local_day));
        assert_eq!(closed, [1, 2]);
        book.close_all(&mut |day| closed.push(day.local_day));
        assert_eq!(closed, [1, 2, 3]);
    }
}
