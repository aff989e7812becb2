//! Driving a route: a speed profile along a polyline, sampled once a second like a GNSS
//! receiver, with position noise.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::world::offset;

/// How someone drives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    /// Cruising speed in town, km/h.
    pub city_kmh: f64,
    /// Cruising speed on the ring road and highways, km/h.
    pub highway_kmh: f64,
    /// Acceleration, m/s².
    pub accel_mps2: f64,
    /// Braking, m/s².
    pub brake_mps2: f64,
    /// Share of city junctions with a red light.
    pub stop_share: f64,
    /// Share of stops made late and hard, at [`LATE_BRAKE_MPS2`] (an amber light, a car
    /// cutting in): what separates an ordinary driver from a smooth one.
    pub late_brake_share: f64,
}

/// Deceleration of a late stop, m/s²: above the 2.7 m/s² at which a GNSS tracker counts harsh
/// braking.
pub const LATE_BRAKE_MPS2: f64 = 3.6;

impl Style {
    /// Calm, anticipating driving.
    pub const GENTLE: Style = Style {
        city_kmh: 45.0,
        highway_kmh: 95.0,
        accel_mps2: 1.1,
        brake_mps2: 1.3,
        stop_share: 0.4,
        late_brake_share: 0.0,
    };
    /// Ordinary driving.
    pub const NORMAL: Style = Style {
        city_kmh: 52.0,
        highway_kmh: 110.0,
        accel_mps2: 2.0,
        brake_mps2: 2.4,
        stop_share: 0.5,
        late_brake_share: 0.08,
    };
    /// Sporty but within limits: quick starts, firm braking, a hard stop now and then.
    pub const BRISK: Style = Style {
        city_kmh: 55.0,
        highway_kmh: 116.0,
        accel_mps2: 2.3,
        brake_mps2: 2.5,
        stop_share: 0.5,
        late_brake_share: 0.06,
    };
    /// Hard on the pedals, fast on the ring road.
    pub const AGGRESSIVE: Style = Style {
        city_kmh: 62.0,
        highway_kmh: 142.0,
        accel_mps2: 3.6,
        brake_mps2: 4.8,
        stop_share: 0.6,
        late_brake_share: 0.3,
    };
}

/// One 1 Hz sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the trip started.
    pub t_s: u32,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Speed, m/s.
    pub speed_mps: f64,
    /// Course, degrees.
    pub course_deg: f64,
}

/// A route leg: a straight line at a road class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leg {
    /// Start.
    pub from: (f64, f64),
    /// End.
    pub to: (f64, f64),
    /// Highway (no junctions) or city.
    pub highway: bool,
}

/// Legs from `a` to `b` along a street grid: east-west, then north-south, then the rest, with
/// a highway in the middle for long distances.
pub fn route(a: (f64, f64), b: (f64, f64)) -> Vec<Leg> {
    let corner = (a.0, b.1);
    let metres = |p: (f64, f64), q: (f64, f64)| {
        let north = (q.0 - p.0) * 111_195.0;
        let east = (q.1 - p.1) * 111_195.0 * p.0.to_radians().cos();
        (north * north + east * east).sqrt()
    };
    let long = metres(a, b) > 8_000.0;
    if long {
        // City streets out, the ring road or highway across, city streets in.
        let out = offset(
            a.0,
            a.1,
            0.0,
            (b.1 - a.1).signum() * 1_500.0 * a.0.to_radians().cos().recip().min(1.5),
        );
        let into = offset(b.0, b.1, (a.0 - b.0).signum() * 1_500.0, 0.0);
        vec![
            Leg {
                from: a,
                to: out,
                highway: false,
            },
            Leg {
                from: out,
                to: into,
                highway: true,
            },
            Leg {
                from: into,
                to: b,
                highway: false,
            },
        ]
    } else {
        vec![
            Leg {
                from: a,
                to: corner,
                highway: false,
            },
            Leg {
                from: corner,
                to: b,
                highway: false,
            },
        ]
    }
}

fn leg_length(leg: &Leg) -> f64 {
    let north = (leg.to.0 - leg.from.0) * 111_195.0;
    let east = (leg.to.1 - leg.from.1) * 111_195.0 * leg.from.0.to_radians().cos();
    (north * north + east * east).sqrt()
}

/// Drives `legs` in `style`, appending 1 Hz samples (noise ±3 m) to `out`.
pub fn drive(legs: &[Leg], style: Style, rng: &mut ChaCha8Rng, out: &mut Vec<Sample>) {
    let mut t_s: u32 = out.last().map_or(0, |s| s.t_s + 1);
    let mut speed = 0.0f64;
    for leg in legs {
        let length = leg_length(leg);
        if length < 1.0 {
            continue;
        }
        let course = ((leg.to.1 - leg.from.1) * leg.from.0.to_radians().cos())
            .atan2(leg.to.0 - leg.from.0)
            .to_degrees()
            .rem_euclid(360.0);
        let cruise = if leg.highway {
            style.highway_kmh
        } else {
            style.city_kmh
        } / 3.6;
        // Junctions every 400-800 m in town; a red light at some.
        let mut stops: Vec<f64> = Vec::new();
        if !leg.highway {
            let mut at = rng.random_range(400.0..800.0);
            while at < length - 100.0 {
                if rng.random_bool(style.stop_share) {
                    stops.push(at);
                }
                at += rng.random_range(400.0..800.0);
            }
        }
        stops.push(length); // The end of a leg is a turn: slow to a stop-like crawl.
        let mut done = 0.0f64;
        let mut wait = 0u32;
        let mut next_stop = 0;
        let mut braking = false;
        let mut late = rng.random_bool(style.late_brake_share);
        while done < length - 0.5 {
            let target_stop = stops[next_stop.min(stops.len() - 1)];
            let to_stop = (target_stop - done).max(0.0);
            // The deceleration that stops the car at the stop line: drivers start braking
            // when it reaches three quarters of their usual braking and keep it to the end,
            // so the usual braking is rarely exceeded.
            let needed = if to_stop > 0.1 {
                speed * speed / (2.0 * to_stop)
            } else {
                f64::INFINITY
            };
            let jitter = rng.random_range(-0.6..0.6);
            let brake = if late {
                LATE_BRAKE_MPS2.max(style.brake_mps2)
            } else {
                style.brake_mps2
            };
            if wait > 0 {
                speed = 0.0;
                wait -= 1;
            } else if speed > 0.0 && (braking || needed >= 0.75 * brake) {
                braking = true;
                speed = (speed - needed.min(brake)).max(0.0);
                if speed < 0.5 || to_stop < 1.0 {
                    speed = 0.0;
                    braking = false;
                    late = rng.random_bool(style.late_brake_share);
                    done = target_stop;
                    next_stop += 1;
                    if target_stop < length {
                        wait = rng.random_range(15..45);
                    }
                }
            } else {
                speed = (speed + style.accel_mps2).min(cruise + jitter);
            }
            done = (done + speed).min(target_stop).min(length);
            let share = done / length;
            let lat = leg.from.0 + (leg.to.0 - leg.from.0) * share;
            let lon = leg.from.1 + (leg.to.1 - leg.from.1) * share;
            let (lat, lon) = offset(
                lat,
                lon,
                rng.random_range(-3.0..3.0),
                rng.random_range(-3.0..3.0),
            );
            out.push(Sample {
                t_s,
                lat,
                lon,
                speed_mps: (speed + rng.random_range(-0.15..0.15)).max(0.0),
                course_deg: course,
            });
            t_s += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_drive_covers_its_route_at_plausible_speeds() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = (31.2304, 121.4737);
        let b = offset(a.0, a.1, 6_000.0, 4_000.0);
        let mut samples = Vec::new();
        drive(&route(a, b), Style::NORMAL, &mut rng, &mut samples);
        let last = samples.last().unwrap();
        assert!((last.lat - b.0).abs() < 1e-4 && (last.lon - b.1).abs() < 1e-4);
        let top = samples.iter().map(|s| s.speed_mps).fold(0.0, f64::max) * 3.6;
        assert!((45.0..60.0).contains(&top), "{top} km/h");
        // About 10 km at an average of 20-45 km/h with lights.
        let minutes = f64::from(last.t_s) / 60.0;
        assert!((12.0..35.0).contains(&minutes), "{minutes} min");
    }

    #[test]
    fn aggressive_driving_brakes_harder() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let a = (31.2304, 121.4737);
        let b = offset(a.0, a.1, 3_000.0, 3_000.0);
        let mut decel = |style| {
            let mut samples = Vec::new();
            drive(&route(a, b), style, &mut rng, &mut samples);
            samples
                .windows(2)
                .map(|w| w[0].speed_mps - w[1].speed_mps)
                .fold(0.0, f64::max)
        };
        assert!(decel(Style::AGGRESSIVE) > decel(Style::GENTLE) + 2.0);
    }
}
