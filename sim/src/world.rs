//! The simulated city: dealer stores, competitors, repair shops, premium places and charging
//! stations around a centre, and a far city for long trips. Shanghai by default.

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_195.0;

/// A point `north_m` and `east_m` from `(lat, lon)`.
pub fn offset(lat: f64, lon: f64, north_m: f64, east_m: f64) -> (f64, f64) {
    (
        lat + north_m / M_PER_DEG,
        lon + east_m / (M_PER_DEG * lat.to_radians().cos()),
    )
}

/// A place the dealer configures.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Registry id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// `own_store`, `competitor_dealer`, `independent_repair`, `premium` or `charging`.
    pub kind: &'static str,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
}

/// The city.
#[derive(Debug, Clone)]
pub struct World {
    /// Centre.
    pub centre: (f64, f64),
    /// The city's name.
    pub city: &'static str,
    /// The dealer group's stores.
    pub stores: Vec<Site>,
    /// Other points of interest.
    pub pois: Vec<Site>,
    /// A city about 170 km away, for long trips.
    pub far_city: (f64, f64),
}

impl World {
    /// Shanghai with three stores of ours and the places around them.
    pub fn shanghai() -> World {
        let centre = (31.2304, 121.4737);
        let site = |id, name: &str, kind, north_km: f64, east_km: f64| {
            let (lat, lon) = offset(centre.0, centre.1, north_km * 1000.0, east_km * 1000.0);
            Site {
                id,
                name: name.to_owned(),
                kind,
                lat,
                lon,
            }
        };
        World {
            centre,
            city: "Shanghai",
            stores: vec![
                site(1, "drivetag 4S Jing'an", "own_store", 3.0, -2.0),
                site(2, "drivetag 4S Pudong", "own_store", -1.0, 8.0),
                site(3, "drivetag 4S Minhang", "own_store", -12.0, -6.0),
            ],
            pois: vec![
                site(101, "Rival Motors Xuhui", "competitor_dealer", -6.0, -3.0),
                site(102, "Rival Motors Baoshan", "competitor_dealer", 14.0, 2.0),
                site(201, "QuickFix Tyres", "independent_repair", 6.0, 6.0),
                site(301, "IFC Mall", "premium", 0.5, 3.0),
                site(302, "Lakeside Golf Club", "premium", -15.0, 12.0),
                site(303, "Hongqiao Airport", "premium", -2.0, -14.0),
                site(401, "Charging Hub Zhangjiang", "charging", -4.0, 14.0),
            ],
            far_city: offset(centre.0, centre.1, 30_000.0, -165_000.0),
        }
    }

    /// The site with `id`.
    pub fn site(&self, id: i64) -> Option<&Site> {
        self.stores.iter().chain(&self.pois).find(|s| s.id == id)
    }

    /// The store nearest to a point.
    pub fn nearest_store(&self, at: (f64, f64)) -> &Site {
        self.stores
            .iter()
            .min_by(|a, b| {
                let d = |s: &Site| (s.lat - at.0).powi(2) + (s.lon - at.1).powi(2);
                d(a).total_cmp(&d(b))
            })
            .expect("the world has stores")
    }
}
