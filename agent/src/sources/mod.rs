//! Sources: where samples come from.
//!
//! Every reader turns bytes into [`Sample`](crate::sample::Sample)s and reports each line it
//! cannot use as a [`BadLine`] with its line number; it never stops on bad input.
//!
//! * [`nmea`]: NMEA 0183 text (RMC, GGA, VTG from any talker) from a file, stdin or a serial
//!   device.
//! * [`gpx`]: GPX 1.0 and 1.1 tracks.
//! * [`gpsd`]: gpsd's JSON `TPV` reports, from a log or a live gpsd socket.
//! * [`signals`]: the vehicle-signal CSV.
//! * [`merge`]: joins GPS and signals into one stream ordered by time.
//! * [`replay`]: paces a recorded stream at its own speed, N× faster, or not at all.
//! * [`detect`]: tells the formats apart by their content; [`open`] opens an input by name.

pub mod detect;
pub mod gpsd;
pub mod gpx;
pub mod merge;
pub mod nmea;
pub mod open;
pub mod replay;
pub mod signals;

use std::collections::BTreeMap;
use std::fmt;

/// Why a line or record was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BadReason {
    /// The `*hh` checksum does not match the sentence.
    Checksum,
    /// A sentence we need has no `*hh` checksum.
    MissingChecksum,
    /// Not a sentence, record or comment of the expected format.
    Garbage,
    /// Non-ASCII bytes inside a sentence.
    NonAscii,
    /// The right kind of record, but a field does not parse.
    Unparseable,
    /// A field parses but cannot be true (latitude 95°, a date in 1970...).
    ImpossibleValue,
    /// A fix without the time or date needed to place it.
    MissingTime,
}

impl BadReason {
    /// The snake-case name used in reports and the agent's health.
    pub const fn as_str(self) -> &'static str {
        match self {
            BadReason::Checksum => "checksum",
            BadReason::MissingChecksum => "missing_checksum",
            BadReason::Garbage => "garbage",
            BadReason::NonAscii => "non_ascii",
            BadReason::Unparseable => "unparseable",
            BadReason::ImpossibleValue => "impossible_value",
            BadReason::MissingTime => "missing_time",
        }
    }
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One skipped line, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in its input (the point index for GPX).
    pub line: u64,
    /// Why it was skipped.
    pub reason: BadReason,
    /// What exactly was wrong, for a human.
    pub detail: String,
}

/// How many examples of bad lines a report keeps per reason.
pub const EXAMPLES_PER_REASON: usize = 5;

/// Counts of skipped input per reason, with the first few line numbers of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadInput {
    counts: BTreeMap<BadReason, u64>,
    examples: BTreeMap<BadReason, Vec<(String, BadLine)>>,
}

impl BadInput {
    /// Records a bad line of input `source` (a file name or "stdin").
    pub fn record(&mut self, source: &str, bad: BadLine) {
        *self.counts.entry(bad.reason).or_default() += 1;
        let examples = self.examples.entry(bad.reason).or_default();
        if examples.len() < EXAMPLES_PER_REASON {
            examples.push((source.to_owned(), bad));
        }
    }

    /// Lines skipped in all.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Lines skipped per reason.
    pub fn counts(&self) -> impl Iterator<Item = (BadReason, u64)> + '_ {
        self.counts.iter().map(|(reason, count)| (*reason, *count))
    }

    /// How many lines were skipped for `reason`.
    pub fn count(&self, reason: BadReason) -> u64 {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    /// The first few bad lines of each reason, with their source.
    pub fn examples(&self) -> impl Iterator<Item = &(String, BadLine)> + '_ {
        self.examples.values().flatten()
    }
}
