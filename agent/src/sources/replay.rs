//! Pacing a recorded stream: at its recorded speed, N× faster, or as fast as it can be read.

use std::time::Duration;

use crate::sample::Millis;

/// How fast to replay a recording.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as possible (batch).
    Max,
    /// This many seconds of recording per second of wall time (1.0 = recorded speed).
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;

    /// `max`, or a factor such as `1`, `10` or `60x`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        let factor: f64 = text.trim_end_matches(['x', 'X']).parse().map_err(|_| {
            format!("replay speed {text:?} is neither `max` nor a factor like `10`")
        })?;
        if factor.is_finite() && factor > 0.0 {
            Ok(Speed::Factor(factor))
        } else {
            Err(format!("replay speed {text:?} must be above 0"))
        }
    }
}

/// Decides how long to wait before handing on each sample.
#[derive(Debug, Clone)]
pub struct Pacer {
    speed: Speed,
    origin: Option<(Millis, Duration)>,
}

impl Pacer {
    /// A pacer at `speed`.
    pub fn new(speed: Speed) -> Self {
        Pacer {
            speed,
            origin: None,
        }
    }

    /// How long to wait before the sample taken at `t_ms`, given the wall time `elapsed` since
    /// the replay started. The first sample never waits; a recording that steps back in time
    /// never makes the pacer wait for it.
    pub fn wait(&mut self, t_ms: Millis, elapsed: Duration) -> Duration {
        let Speed::Factor(factor) = self.speed else {
            return Duration::ZERO;
        };
        let (t0, wall0) = *self.origin.get_or_insert((t_ms, elapsed));
        let due = wall0 + Duration::from_secs_f64((t_ms - t0).max(0) as f64 / 1000.0 / factor);
        due.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("10x".parse::<Speed>(), Ok(Speed::Factor(10.0)));
        assert_eq!("1".parse::<Speed>(), Ok(Speed::Factor(1.0)));
        assert!("0".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
    }

    #[test]
    fn ten_times_faster_waits_a_tenth() {
        let mut pacer = Pacer::new(Speed::Factor(10.0));
        assert_eq!(pacer.wait(50_000, Duration::from_secs(3)), Duration::ZERO);
        assert_eq!(
            pacer.wait(60_000, Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        // Already late: no wait.
        assert_eq!(pacer.wait(61_000, Duration::from_secs(5)), Duration::ZERO);
        // Time stepping back never waits.
        assert_eq!(pacer.wait(40_000, Duration::from_secs(5)), Duration::ZERO);
    }

    #[test]
    fn batch_never_waits() {
        let mut pacer = Pacer::new(Speed::Max);
        assert_eq!(pacer.wait(0, Duration::ZERO), Duration::ZERO);
        assert_eq!(pacer.wait(3_600_000, Duration::ZERO), Duration::ZERO);
    }
}
