//! Transforms: the pure heart of the agent, from samples to summaries.
//!
//! **Architecture Invariant:** no I/O and no clock reads here; time arrives inside the samples.
//! Every transform is a state machine fed one item at a time, so memory stays flat however
//! long the input is.
//!
//! * [`clean`]: drops invalid, repeated and impossible fixes, fills in missing speed.
//! * [`segment`]: cuts the cleaned stream into trips at stops, gaps and ignition off.
//! * [`trip`]: per-trip features: distance, speeds, harsh events, acceleration percentiles.
//! * [`kinematics`]: smoothing, differentiation, event runs and histograms used by [`trip`].
//! * [`stays`]: stay points (trackintel's sliding rule).
//! * [`places`]: frequent places, home and work, store distances and POI visits.
//! * [`days`]: one summary per local day.
//! * [`score`]: the driving-style score and its terms.
//! * [`local_time`]: local hour, day and weekday in the configured zone.

pub mod clean;
pub mod days;
pub mod kinematics;
pub mod local_time;
pub mod places;
pub mod score;
pub mod segment;
pub mod stays;
pub mod trip;

use crate::sample::{Fix, distance_m};

/// Whether `b` lies `radius_m` or farther from `a`: the same answer as
/// `distance_m(a, b) >= radius_m`, where `cos_lat_a` is the cosine of `a`'s latitude.
///
/// The stay and stop detectors ask this of every fix against their anchor, and haversine's
/// trigonometry was most of the pipeline's time. Two bounds need none: the great-circle
/// distance is at least the distance between the two parallels, and at most the way along
/// `a`'s parallel and then along `b`'s meridian. Only a fix within a hair of the radius
/// (`SLACK`, far above rounding and the sphere radius's last digits) costs the haversine.
pub(crate) fn at_least_m(a: &Fix, cos_lat_a: f64, b: &Fix, radius_m: f64) -> bool {
    /// Haversine's sphere (`geo`'s GRS80 mean radius), metres.
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    const SLACK: f64 = 1e-6;
    let d_lat = (b.lat - a.lat).abs().to_radians();
    let lower = EARTH_RADIUS_M * d_lat;
    if lower >= radius_m * (1.0 + SLACK) {
        return true;
    }
    let d_lon = (b.lon - a.lon).abs();
    let d_lon = if d_lon > 180.0 { 360.0 - d_lon } else { d_lon };
    let upper = EARTH_RADIUS_M * (d_lat + cos_lat_a * d_lon.to_radians());
    if upper <= radius_m * (1.0 - SLACK) {
        return false;
    }
    distance_m(a, b) >= radius_m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_decide_as_the_haversine_does() {
        // Pairs at 0-2x the radius in every direction, at several latitudes and across the
        // antimeridian, including points on the radius itself.
        let mut disagreements = Vec::new();
        let mut checked = 0;
        for (lat, lon) in [
            (0.0, 0.0),
            (48.1, 11.6),
            (-33.9, 151.2),
            (64.1, -179.9999),
            (89.9, 0.0),
        ] {
            let a = Fix::at(0, lat, lon);
            let cos_lat = f64::to_radians(lat).cos();
            for step in 0..=400 {
                let metres = step as f64 * 0.75;
                for bearing in 0..36 {
                    let angle = f64::from(bearing * 10).to_radians();
                    let north = metres * angle.cos() / 111_195.0;
                    let east = metres * angle.sin() / (111_195.0 * cos_lat.max(1e-3));
                    let mut b_lon = lon + east;
                    if b_lon > 180.0 {
                        b_lon -= 360.0;
                    }
                    let b = Fix::at(0, lat + north, b_lon);
                    // The radius exactly at the pair's distance is the hardest case.
                    for radius in [100.0, 150.0, distance_m(&a, &b)] {
                        checked += 1;
                        if at_least_m(&a, cos_lat, &b, radius) != (distance_m(&a, &b) >= radius) {
                            disagreements.push((lat, lon, metres, bearing, radius));
                        }
                    }
                }
            }
        }
        assert_eq!(disagreements, [], "of {checked} pairs");
    }
}
