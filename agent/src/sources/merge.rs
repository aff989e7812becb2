//! Joins the GPS stream and the vehicle-signal stream into one stream ordered by time.

use std::iter::Peekable;

use super::BadLine;
use crate::sample::{Fix, Sample, Signal};

/// One item of merged input: a sample, or a bad line of one of the inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A sample, in time order with the other stream.
    Sample(Sample),
    /// A bad line of the GPS input.
    BadGps(BadLine),
    /// A bad line of the signal input.
    BadSignal(BadLine),
}

/// Merges two time-ordered streams; on equal times the fix comes first. Bad lines pass through
/// as soon as they are read.
pub struct Merge<F: Iterator, S: Iterator> {
    gps: Peekable<F>,
    signals: Peekable<S>,
}

impl<F, S> Merge<F, S>
where
    F: Iterator<Item = Result<Fix, BadLine>>,
    S: Iterator<Item = Result<Signal, BadLine>>,
{
    /// Merges `gps` with `signals`.
    pub fn new(gps: F, signals: S) -> Self {
        Merge {
            gps: gps.peekable(),
            signals: signals.peekable(),
        }
    }
}

impl<F, S> Iterator for Merge<F, S>
where
    F: Iterator<Item = Result<Fix, BadLine>>,
    S: Iterator<Item = Result<Signal, BadLine>>,
{
    type Item = Input;

    fn next(&mut self) -> Option<Input> {
        if let Some(Err(_)) = self.gps.peek() {
            return self.gps.next()?.err().map(Input::BadGps);
        }
        if let Some(Err(_)) = self.signals.peek() {
            return self.signals.next()?.err().map(Input::BadSignal);
        }
        let take_gps = match (self.gps.peek(), self.signals.peek()) {
            (Some(Ok(fix)), Some(Ok(signal))) => fix.t_ms <= signal.t_ms,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            _ => return None,
        };
        if take_gps {
            self.gps
                .next()?
                .ok()
                .map(|fix| Input::Sample(Sample::Fix(fix)))
        } else {
            self.signals
                .next()?
                .ok()
                .map(|signal| Input::Sample(Sample::Signal(signal)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::BadReason;

    #[test]
    fn samples_come_out_in_time_order() {
        let fixes = vec![Ok(Fix::at(1000, 0.0, 0.0)), Ok(Fix::at(3000, 0.0, 0.0))];
        let signals = vec![
            Ok(Signal {
                t_ms: 1000,
                ..Signal::default()
            }),
            Err(BadLine {
                line: 2,
                reason: BadReason::Garbage,
                detail: String::new(),
            }),
            Ok(Signal {
                t_ms: 2000,
                ..Signal::default()
            }),
            Ok(Signal {
                t_ms: 4000,
                ..Signal::default()
            }),
        ];
        let merged: Vec<String> = Merge::new(fixes.into_iter(), signals.into_iter())
            .map(|input| match input {
                Input::Sample(Sample::Fix(fix)) => format!("fix {}", fix.t_ms),
                Input::Sample(Sample::Signal(signal)) => format!("signal {}", signal.t_ms),
                Input::BadGps(bad) | Input::BadSignal(bad) => format!("bad {}", bad.line),
            })
            .collect();
        assert_eq!(
            merged,
            [
                "fix 1000",
                "signal 1000",
                "bad 2",
                "signal 2000",
                "fix 3000",
                "signal 4000"
            ]
        );
    }
}
