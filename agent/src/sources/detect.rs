//! Telling input formats apart by their content, not their file name.

/// The formats the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// NMEA 0183 sentences.
    Nmea,
    /// A GPX document.
    Gpx,
    /// gpsd JSON reports.
    Gpsd,
}

impl Format {
    /// The name used in messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Nmea => "NMEA 0183",
            Format::Gpx => "GPX",
            Format::Gpsd => "gpsd JSON",
        }
    }
}

/// Guesses the format from the first bytes of an input (a few kilobytes are plenty).
///
/// XML is GPX (the GPX reader says so if it is another XML); lines that start with `{"class"` are gpsd; anything else is
/// read as NMEA, whose reader reports every line it cannot use.
pub fn detect(head: &[u8]) -> Format {
    let text = String::from_utf8_lossy(head);
    let mut first_line = text
        .lines()
        .map(|line| line.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}' || c == '\0'))
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let first = first_line.next().unwrap_or("");
    if first.starts_with("<?xml") || first.starts_with("<gpx") {
        return Format::Gpx;
    }
    if first.starts_with('{') && first.contains("\"class\"") {
        return Format::Gpsd;
    }
    Format::Nmea
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_content() {
        assert_eq!(
            detect(b"<?xml version=\"1.0\"?>\n<gpx version=\"1.1\">"),
            Format::Gpx
        );
        assert_eq!(detect(b"\xef\xbb\xbf<gpx version=\"1.0\">"), Format::Gpx);
        assert_eq!(
            detect(b"# gpsd log\n{\"class\":\"VERSION\"}\n"),
            Format::Gpsd
        );
        assert_eq!(detect(b"\0$PSRFTXT,Version*68\r\n$GPRMC,"), Format::Nmea);
        assert_eq!(detect(b"# Name: munich\n$GPGSA,A,3"), Format::Nmea);
        assert_eq!(detect(b""), Format::Nmea);
    }
}
