//! Coarse grid cells: the only form in which a place leaves the car.
//!
//! A cell is the index of a square of the latitude/longitude grid at one of a few fixed sizes.
//! Indices are small integers, so a cell costs 5 to 7 bytes in postcard, and a server can
//! compare cells without knowing where inside them the car really was.

use serde::{Deserialize, Serialize};

/// The edge of a grid cell in degrees. The metre names give the north–south edge
/// (1° of latitude ≈ 111 km); east–west edges shrink with the cosine of the latitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(proptest_derive::Arbitrary))]
pub enum CellSize {
    /// 0.001°, about 110 m.
    M100,
    /// 0.002°, about 220 m.
    M200,
    /// 0.005°, about 550 m.
    M500,
    /// 0.01°, about 1.1 km.
    Km1,
    /// 0.02°, about 2.2 km.
    Km2,
    /// 0.05°, about 5.5 km.
    Km5,
    /// 0.1°, about 11 km.
    Km10,
}

impl CellSize {
    /// The edge in micro-degrees.
    pub const fn step_udeg(self) -> i64 {
        match self {
            CellSize::M100 => 1_000,
            CellSize::M200 => 2_000,
            CellSize::M500 => 5_000,
            CellSize::Km1 => 10_000,
            CellSize::Km2 => 20_000,
            CellSize::Km5 => 50_000,
            CellSize::Km10 => 100_000,
        }
    }

    /// The approximate north–south edge in metres.
    pub const fn edge_m(self) -> u32 {
        (self.step_udeg() as u32 * 111) / 1000
    }

    /// All sizes, finest first.
    pub const ALL: [CellSize; 7] = [
        CellSize::M100,
        CellSize::M200,
        CellSize::M500,
        CellSize::Km1,
        CellSize::Km2,
        CellSize::Km5,
        CellSize::Km10,
    ];

    /// The finest size whose edge is at least `metres`, or the coarsest size.
    pub fn at_least_m(metres: u32) -> CellSize {
        Self::ALL
            .into_iter()
            .find(|size| size.edge_m() >= metres)
            .unwrap_or(CellSize::Km10)
    }
}

/// One square of the grid: `lat_idx = floor(lat / step)`, `lon_idx = floor(lon / step)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawCell", into = "RawCell")]
pub struct Cell {
    size: CellSize,
    lat_idx: i32,
    lon_idx: i32,
}

/// A cell as it is on the wire, before its indices are checked.
#[derive(Serialize, Deserialize)]
struct RawCell {
    size: CellSize,
    lat_idx: i32,
    lon_idx: i32,
}

/// Why a cell is not on the globe.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CellError {
    /// The latitude index lies outside −90°..90°.
    #[error("cell latitude index {lat_idx} is outside -90..90 degrees at {size:?}")]
    Latitude {
        /// The cell size.
        size: CellSize,
        /// The offending index.
        lat_idx: i32,
    },
    /// The longitude index lies outside −180°..180°.
    #[error("cell longitude index {lon_idx} is outside -180..180 degrees at {size:?}")]
    Longitude {
        /// The cell size.
        size: CellSize,
        /// The offending index.
        lon_idx: i32,
    },
    /// The coordinate is not a finite number in range.
    #[error("position ({lat}, {lon}) is not on the globe")]
    Position {
        /// Latitude in degrees.
        lat: f64,
        /// Longitude in degrees.
        lon: f64,
    },
}

impl Cell {
    /// The cell of `size` that contains the point `(lat, lon)` in degrees (WGS 84).
    pub fn containing(lat: f64, lon: f64, size: CellSize) -> Result<Cell, CellError> {
        let on_globe = lat.is_finite()
            && lon.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon);
        if !on_globe {
            return Err(CellError::Position { lat, lon });
        }
        let step = size.step_udeg();
        let index = |udeg: i64| udeg.div_euclid(step) as i32;
        // The north pole belongs to the last row of cells.
        let lat_udeg = ((lat * 1e6).round() as i64).min(89_999_999);
        // 180° east is the same meridian as 180° west; keep one index for it.
        let lon_udeg = (lon * 1e6).round() as i64;
        let lon_udeg = if lon_udeg >= 180_000_000 {
            -180_000_000
        } else {
            lon_udeg
        };
        Cell::new(size, index(lat_udeg), index(lon_udeg))
    }

    /// A cell from its indices, checked to lie on the globe.
    pub fn new(size: CellSize, lat_idx: i32, lon_idx: i32) -> Result<Cell, CellError> {
        let step = size.step_udeg();
        let (lat_lo, lat_hi) = (-90_000_000 / step, 90_000_000 / step);
        let (lon_lo, lon_hi) = (-180_000_000 / step, 180_000_000 / step);
        if !(lat_lo..lat_hi).contains(&i64::from(lat_idx)) {
            return Err(CellError::Latitude { size, lat_idx });
        }
        if !(lon_lo..lon_hi).contains(&i64::from(lon_idx)) {
            return Err(CellError::Longitude { size, lon_idx });
        }
        Ok(Cell {
            size,
            lat_idx,
            lon_idx,
        })
    }

    /// The grid size.
    pub fn size(&self) -> CellSize {
        self.size
    }

    /// The latitude index.
    pub fn lat_idx(&self) -> i32 {
        self.lat_idx
    }

    /// The longitude index.
    pub fn lon_idx(&self) -> i32 {
        self.lon_idx
    }

    /// The centre of the cell as `(lat, lon)` in degrees.
    pub fn centre(&self) -> (f64, f64) {
        let step = self.size.step_udeg() as f64;
        (
            (f64::from(self.lat_idx) + 0.5) * step / 1e6,
            (f64::from(self.lon_idx) + 0.5) * step / 1e6,
        )
    }

    /// The same place on a coarser (or equal) grid; `None` if `size` is finer than this cell.
    pub fn coarsen(&self, size: CellSize) -> Option<Cell> {
        if size < self.size {
            return None;
        }
        let (lat, lon) = self.centre();
        Cell::containing(lat, lon, size).ok()
    }
}

impl TryFrom<RawCell> for Cell {
    type Error = CellError;
    fn try_from(raw: RawCell) -> Result<Self, Self::Error> {
        Cell::new(raw.size, raw.lat_idx, raw.lon_idx)
    }
}

impl From<Cell> for RawCell {
    fn from(cell: Cell) -> Self {
        RawCell {
            size: cell.size,
            lat_idx: cell.lat_idx,
            lon_idx: cell.lon_idx,
        }
    }
}

#[cfg(any(test, feature = "proptest"))]
impl proptest::arbitrary::Arbitrary for Cell {
    type Parameters = ();
    type Strategy = proptest::strategy::BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        use proptest::prelude::*;
        (any::<CellSize>(), -90.0f64..90.0, -180.0f64..180.0)
            .prop_map(|(size, lat, lon)| {
                Cell::containing(lat, lon, size).expect("the ranges are on the globe")
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn munich_at_one_kilometre() {
        let cell = Cell::containing(48.1431, 11.5579, CellSize::Km1).unwrap();
        assert_eq!((cell.lat_idx(), cell.lon_idx()), (4814, 1155));
        let (lat, lon) = cell.centre();
        assert!((lat - 48.145).abs() < 1e-9 && (lon - 11.555).abs() < 1e-9);
    }

    #[test]
    fn negative_coordinates_floor_towards_minus_infinity() {
        let cell = Cell::containing(-0.0001, -79.2083, CellSize::M100).unwrap();
        assert_eq!((cell.lat_idx(), cell.lon_idx()), (-1, -79209));
    }

    #[test]
    fn poles_and_antimeridian_stay_on_the_globe() {
        for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0), (89.99999, 179.99999)] {
            for size in CellSize::ALL {
                let cell = Cell::containing(lat, lon, size).unwrap();
                assert_eq!(Cell::new(size, cell.lat_idx(), cell.lon_idx()), Ok(cell));
            }
        }
        assert!(Cell::containing(f64::NAN, 0.0, CellSize::Km1).is_err());
        assert!(Cell::containing(91.0, 0.0, CellSize::Km1).is_err());
        assert!(Cell::new(CellSize::Km10, 900, 0).is_err());
        assert!(Cell::new(CellSize::Km10, 0, 1800).is_err());
    }

    #[test]
    fn coarsening_keeps_the_point_inside() {
        let fine = Cell::containing(44.30187, -79.20830, CellSize::M100).unwrap();
        let coarse = fine.coarsen(CellSize::Km5).unwrap();
        assert_eq!(
            coarse,
            Cell::containing(44.30187, -79.20830, CellSize::Km5).unwrap()
        );
        assert_eq!(coarse.coarsen(CellSize::M100), None);
    }

    #[test]
    fn size_from_metres() {
        assert_eq!(CellSize::at_least_m(0), CellSize::M100);
        assert_eq!(CellSize::at_least_m(500), CellSize::M500);
        assert_eq!(CellSize::at_least_m(1000), CellSize::Km1);
        assert_eq!(CellSize::at_least_m(50_000), CellSize::Km10);
    }
}
