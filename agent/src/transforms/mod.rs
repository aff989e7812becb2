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
