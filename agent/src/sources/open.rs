//! Opening a GPS input by name: a recorded file, a serial device, stdin or a gpsd socket.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::detect::{Format, detect};
use super::gpsd::{self, GpsdReader};
use super::nmea::NmeaReader;
use super::{BadLine, gpx};
use crate::sample::Fix;

/// A stream of fixes and bad lines.
pub type FixStream = Box<dyn Iterator<Item = Result<Fix, BadLine>> + Send>;

/// Where GPS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpsInput {
    /// A running gpsd, `host:port`.
    Gpsd(String),
    /// Standard input.
    Stdin,
    /// A file or a device.
    Path(PathBuf),
}

impl GpsInput {
    /// Reads `gpsd://host:port`, `-` or a path.
    pub fn parse(text: &str) -> GpsInput {
        if let Some(address) = text.strip_prefix("gpsd://") {
            let address = address.trim_end_matches('/');
            if address.contains(':') {
                GpsInput::Gpsd(address.to_owned())
            } else {
                GpsInput::Gpsd(format!("{address}:{}", gpsd::DEFAULT_PORT))
            }
        } else if text == "-" {
            GpsInput::Stdin
        } else {
            GpsInput::Path(PathBuf::from(text))
        }
    }

    /// For a regular file, an identity that changes when the file does (path, size and
    /// modification time); `None` for live inputs, which cannot be read twice.
    pub fn replay_identity(&self) -> Option<String> {
        let GpsInput::Path(path) = self else {
            return None;
        };
        let metadata = std::fs::metadata(path).ok()?;
        if !metadata.is_file() {
            return None;
        }
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        Some(format!("{} {} {modified}", path.display(), metadata.len()))
    }

    /// A name for messages.
    pub fn name(&self) -> String {
        match self {
            GpsInput::Gpsd(address) => format!("gpsd://{address}"),
            GpsInput::Stdin => "stdin".into(),
            GpsInput::Path(path) => path.display().to_string(),
        }
    }
}

/// Why an input cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file, device or socket cannot be opened.
    #[error("{name}: {source}")]
    Io {
        /// The input.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// A GPX document is broken as a whole.
    #[error("{name}: {source}")]
    Gpx {
        /// The input.
        name: String,
        /// Why.
        source: gpx::GpxError,
    },
}

/// Opens a GPS input and detects its format from its first bytes.
pub fn open(input: &GpsInput) -> Result<(Format, FixStream), OpenError> {
    let name = input.name();
    let io = |source| OpenError::Io {
        name: name.clone(),
        source,
    };
    match input {
        GpsInput::Gpsd(address) => {
            Ok((Format::Gpsd, Box::new(gpsd::connect(address).map_err(io)?)))
        }
        GpsInput::Stdin => from_reader(name.clone(), Box::new(std::io::stdin())),
        GpsInput::Path(path) => from_reader(name.clone(), Box::new(File::open(path).map_err(io)?)),
    }
}

/// Opens a path; a convenience for tools and tests.
pub fn open_path(path: &Path) -> Result<(Format, FixStream), OpenError> {
    open(&GpsInput::Path(path.to_owned()))
}

/// Reads a stream whose format is detected from its first bytes; `name` is used in errors.
pub fn from_reader(
    name: String,
    input: Box<dyn Read + Send>,
) -> Result<(Format, FixStream), OpenError> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let head = input.fill_buf().map_err(|source| OpenError::Io {
        name: name.clone(),
        source,
    })?;
    let format = detect(&head[..head.len().min(4096)]);
    let stream: FixStream = match format {
        Format::Nmea => Box::new(NmeaReader::new(input)),
        Format::Gpsd => Box::new(GpsdReader::new(input)),
        Format::Gpx => Box::new(
            gpx::read(input)
                .map_err(|source| OpenError::Gpx { name, source })?
                .into_iter(),
        ),
    };
    Ok((format, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_parse() {
        assert_eq!(
            GpsInput::parse("gpsd://127.0.0.1:2947"),
            GpsInput::Gpsd("127.0.0.1:2947".into())
        );
        assert_eq!(
            GpsInput::parse("gpsd://localhost"),
            GpsInput::Gpsd("localhost:2947".into())
        );
        assert_eq!(GpsInput::parse("-"), GpsInput::Stdin);
        assert_eq!(
            GpsInput::parse("/dev/ttyUSB0"),
            GpsInput::Path("/dev/ttyUSB0".into())
        );
        assert_eq!(GpsInput::Path("/dev/null".into()).replay_identity(), None);
        assert_eq!(GpsInput::Stdin.replay_identity(), None);
    }
}
