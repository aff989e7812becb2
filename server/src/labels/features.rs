//! The features labels are computed from, one set per vehicle: [`Inputs`] gathers a vehicle's
//! registry facts and its history row by row, and [`Inputs::features`] computes them as of a
//! day. A relabel keeps them with the vehicle's labels ([`encode`]), where its page and its
//! labels' evidence read them. A test holds them to the SQL drivetag computed them with before
//! (`PROFILES_SQL` in the assign test's oracle).

/// One feature rules may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// Its name in rules.
    pub name: &'static str,
    /// Whether it is text (else a number).
    pub text: bool,
    /// What it means, with its unit.
    pub description: &'static str,
}

const fn number(name: &'static str, description: &'static str) -> Feature {
    Feature {
        name,
        text: false,
        description,
    }
}

/// Every feature, in the order of the features a relabel keeps ([`encode`]).
pub const FEATURES: [Feature; 44] = [
    Feature {
        name: "energy",
        text: true,
        description: "power train: 'ice', 'hev', 'phev' or 'ev'",
    },
    number(
        "price_class_rank",
        "price class: 0 economy, 1 mid, 2 premium, 3 luxury",
    ),
    number("vehicle_age_years", "this year minus the model year"),
    number("is_ev", "1 for a battery-electric vehicle, else 0"),
    number(
        "is_electrified",
        "1 for a hybrid, plug-in hybrid or electric vehicle, else 0",
    ),
    number(
        "days_since_purchase",
        "days since the purchase date; NULL if unknown",
    ),
    number(
        "warranty_days_left",
        "days until the warranty ends (negative: ended); NULL if unknown",
    ),
    number(
        "service_visits_total",
        "workshop visits at our stores, ever",
    ),
    number(
        "service_visits_12m",
        "workshop visits in the last 12 months",
    ),
    number(
        "months_since_service",
        "months since the last workshop visit; NULL if never",
    ),
    number(
        "spend_12m",
        "after-sales spend in the last 12 months, currency units",
    ),
    number("spend_total", "after-sales spend, ever, currency units"),
    number(
        "care_spend_12m",
        "accessories and detailing spend in the last 12 months",
    ),
    number(
        "odometer_km",
        "latest odometer reading known (agent, day summaries, workshop)",
    ),
    number(
        "km_since_service",
        "km driven since the last service (or purchase)",
    ),
    number(
        "service_interval_km",
        "the vehicle's service interval by distance, km",
    ),
    number(
        "service_interval_months",
        "the vehicle's service interval by time, months",
    ),
    number(
        "days_to_service_due",
        "days until service is due, whichever of distance (projected from km_per_day) and time comes first; negative: overdue",
    ),
    number("birthday_month", "the customer's birthday month, 1-12"),
    number("referrals", "customers this customer referred"),
    number("campaigns_sent", "campaigns sent to the customer"),
    number("campaigns_responded", "campaigns the customer responded to"),
    number(
        "campaign_response_rate",
        "campaigns_responded / campaigns_sent; NULL if none sent",
    ),
    number(
        "telematics",
        "1 if the vehicle reported driving in the last 90 days, else 0",
    ),
    number(
        "days_since_seen",
        "days since the last day summary in the last 90 days",
    ),
    number("km_30d", "km driven in the last 30 days"),
    number(
        "km_per_day",
        "average km per day over the last 90 days of reporting",
    ),
    number("trips_30d", "trips in the last 30 days"),
    number(
        "days_driven_30d",
        "days with at least one trip in the last 30 days",
    ),
    number("long_trips_90d", "trips over 100 km in the last 90 days"),
    number(
        "night_share_30d",
        "share of driving time between 22 h and 6 h, last 30 days, 0-1",
    ),
    number(
        "weekend_share_30d",
        "share of km driven on Saturday and Sunday, last 30 days, 0-1",
    ),
    number(
        "commute_trips_30d",
        "trips between home and work, last 30 days",
    ),
    number("commute_share_30d", "commute_trips_30d / trips_30d"),
    number(
        "driving_hours_per_day",
        "hours in trips per day, last 30 days",
    ),
    number(
        "driving_score",
        "distance-weighted driving score of the last 90 days, 0-100, higher is smoother",
    ),
    number(
        "harsh_per_100km",
        "harsh accelerations, brakings and cornerings per 100 km, last 90 days",
    ),
    number(
        "overspeed_share",
        "share of moving time above the speed limit, last 90 days, 0-1",
    ),
    number(
        "home_store_distance_km",
        "distance from home (a coarse cell) to the vehicle's store, km",
    ),
    number(
        "competitor_visits_90d",
        "stays at competitor dealers, last 90 days",
    ),
    number(
        "repair_shop_visits_90d",
        "stays at independent repair shops, last 90 days",
    ),
    number("own_store_visits_90d", "stays at our stores, last 90 days"),
    number(
        "premium_visits_90d",
        "stays at premium places (malls, golf, airports), last 90 days",
    ),
    number(
        "charging_visits_90d",
        "stays at charging stations, last 90 days",
    ),
];

/// Values known at labelling time that rules may use like features.
pub const CONTEXT: [(&str, &str); 3] = [
    ("today", "the labelling day, days since 1970-01-01"),
    ("current_month", "the labelling month, 1-12"),
    ("current_year", "the labelling year"),
];

/// The feature named `name`.
pub fn feature(name: &str) -> Option<&'static Feature> {
    FEATURES.iter().find(|f| f.name == name)
}

/// What one vehicle's features are computed from: the registry's facts about it, and running
/// sums over its workshop visits, day summaries, store distances and POI visits, fed row by row
/// (the vehicle's facts first, then its visits, then its days: the km since its last service
/// count from the last visit). [`Inputs::features`] gives what the SQL drivetag used before
/// gives (`PROFILES_SQL`, kept in the assign test), value for value; a test holds the two to
/// each other.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// `ice`, `hev`, `phev` or `ev`.
    pub energy: String,
    /// economy, mid, premium or luxury.
    pub price_class: String,
    /// The model year.
    pub model_year: i64,
    /// Days since 1970-01-01.
    pub purchase_day: Option<i64>,
    /// Days since 1970-01-01.
    pub warranty_end_day: Option<i64>,
    /// The vehicle's own service intervals.
    pub service_interval_km: Option<i64>,
    /// See above.
    pub service_interval_months: Option<i64>,
    /// The customer's birthday month.
    pub birthday_month: Option<i64>,
    /// Customers the customer referred.
    pub referrals: i64,
    /// What the agent said of the vehicle's places and odometer.
    pub places: Places,
    visits_total: i64,
    visits_12m: i64,
    last_visit: Option<i64>,
    spend_12m: i64,
    spend_total: i64,
    care_12m: i64,
    last_odometer_km: Option<i64>,
    days: Option<DaySums>,
    km_since_base_m: Option<i64>,
}

/// The part of a vehicle's inputs that come from its agent's vehicle and places summaries,
/// gathered apart from the rest (a relabel reads them while it reads the days).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Places {
    /// The odometer the agent reported with the vehicle's details, metres.
    pub reported_odometer_m: Option<i64>,
    /// The latest store-distance summary's day, and the home distance to the vehicle's store
    /// in it (if that store is in it).
    store_distance: Option<(i64, Option<i64>)>,
    poi: [i64; 5],
}

/// Sums over the day summaries of the last 90 days.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct DaySums {
    m30: i64,
    trips30: i64,
    days_driven30: i64,
    m90: i64,
    long90: i64,
    night30: i64,
    driving30: i64,
    weekend_m30: i64,
    commute30: i64,
    score_weighted: i64,
    harsh90: i64,
    overspeed90: i64,
    moving90: i64,
    first_day: i64,
    last_day: i64,
    odometer_m: Option<i64>,
}

/// One day summary, as [`Inputs::day`] reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DayRow {
    /// The local day.
    pub local_day: i64,
    /// Metres driven.
    pub distance_m: i64,
    /// Trips.
    pub trips: i64,
    /// Trips over 100 km.
    pub long_trips: i64,
    /// Seconds in trips.
    pub driving_s: i64,
    /// Seconds moving.
    pub moving_s: i64,
    /// Share of driving time at night, percent.
    pub night_pct: i64,
    /// Trips between home and work.
    pub commute_trips: i64,
    /// Harsh accelerations, brakings and cornerings.
    pub harsh: i64,
    /// Seconds above the speed limit.
    pub overspeed_s: i64,
    /// The day's driving score.
    pub score: i64,
    /// The odometer at the day's end, metres.
    pub odometer_m: Option<i64>,
}

/// POI kinds counted by the `*_visits_90d` features, in their order.
pub const POI_KINDS: [&str; 5] = [
    "competitor_dealer",
    "independent_repair",
    "own_store",
    "premium",
    "charging",
];

impl Places {
    /// A row of a store-distance summary: from `from_day`, home was `distance_m` from store
    /// `store`; `own_store` is the vehicle's. Only the latest summary counts.
    pub fn store_distance(
        &mut self,
        from_day: i64,
        store: i64,
        distance_m: i64,
        own_store: Option<i64>,
    ) {
        let own = (Some(store) == own_store).then_some(distance_m);
        match &mut self.store_distance {
            Some((day, _)) if *day > from_day => {}
            Some((day, found)) if *day == from_day => *found = found.or(own),
            slot => *slot = Some((from_day, own)),
        }
    }

    /// Visits to a point of interest of `kind`, the last on `last_day`.
    pub fn poi(&mut self, today: i64, kind: &str, visits: i64, last_day: i64) {
        if last_day <= today - 90 {
            return;
        }
        if let Some(k) = POI_KINDS.iter().position(|p| *p == kind) {
            self.poi[k] += visits;
        }
    }
}

fn real(v: i64) -> f64 {
    v as f64
}

impl Inputs {
    /// A workshop visit.
    pub fn visit(
        &mut self,
        today: i64,
        day: i64,
        spend_cents: i64,
        kind: &str,
        odometer_km: Option<i64>,
    ) {
        if day > today {
            return;
        }
        let recent = day > today - 365;
        self.visits_total += 1;
        self.visits_12m += i64::from(recent);
        self.last_visit = Some(self.last_visit.map_or(day, |d| d.max(day)));
        self.spend_total += spend_cents;
        if recent {
            self.spend_12m += spend_cents;
            if kind == "accessories" || kind == "detailing" {
                self.care_12m += spend_cents;
            }
        }
        if let Some(km) = odometer_km {
            self.last_odometer_km = Some(self.last_odometer_km.map_or(km, |o| o.max(km)));
        }
    }

    /// A day summary (after every visit).
    pub fn day(&mut self, today: i64, row: &DayRow) {
        if row.local_day > today {
            return;
        }
        let base = self.last_visit.or(self.purchase_day).unwrap_or(today - 90);
        if row.local_day > base {
            self.km_since_base_m = Some(self.km_since_base_m.unwrap_or(0) + row.distance_m);
        }
        if row.local_day <= today - 90 {
            return;
        }
        let sums = self.days.get_or_insert(DaySums {
            first_day: row.local_day,
            last_day: row.local_day,
            ..DaySums::default()
        });
        let recent = row.local_day > today - 30;
        if recent {
            sums.m30 += row.distance_m;
            sums.trips30 += row.trips;
            sums.days_driven30 += i64::from(row.trips > 0);
            sums.night30 += row.night_pct * row.driving_s;
            sums.driving30 += row.driving_s;
            if (row.local_day + 3) % 7 >= 5 {
                sums.weekend_m30 += row.distance_m;
            }
            sums.commute30 += row.commute_trips;
        }
        sums.m90 += row.distance_m;
        sums.long90 += row.long_trips;
        sums.score_weighted += row.score * row.distance_m;
        sums.harsh90 += row.harsh;
        sums.overspeed90 += row.overspeed_s;
        sums.moving90 += row.moving_s;
        sums.first_day = sums.first_day.min(row.local_day);
        sums.last_day = sums.last_day.max(row.local_day);
        if let Some(odometer) = row.odometer_m {
            sums.odometer_m = Some(sums.odometer_m.map_or(odometer, |o| o.max(odometer)));
        }
    }

    /// The features, in the order of [`FEATURES`] (`energy`, the text one, as NULL: it is
    /// [`Inputs::energy`]), as of `today` (a day number) in `year`, with the rules' default
    /// service intervals and the customer's campaigns (sent up to the day, answered).
    pub fn features(
        &self,
        today: i64,
        year: i64,
        interval_km: f64,
        interval_months: f64,
        campaigns: (i64, i64),
    ) -> Vec<Option<f64>> {
        let d = self.days.as_ref();
        let sum = |f: fn(&DaySums) -> i64| d.map_or(0, f);
        let (m30, m90, trips30, driving30) = (
            sum(|d| d.m30),
            sum(|d| d.m90),
            sum(|d| d.trips30),
            sum(|d| d.driving30),
        );
        let ratio = |num: i64, den: i64| (den != 0).then(|| real(num) / real(den));
        let day_odometer = d.and_then(|d| d.odometer_m);
        let odometer_km = match (day_odometer, self.places.reported_odometer_m) {
            (Some(day), reported) if reported.is_none_or(|r| day >= r) => Some(real(day) / 1000.0),
            (_, Some(reported)) if reported > 0 => Some(real(reported) / 1000.0),
            _ => self.last_odometer_km.map(real),
        };
        let km_since_service = match (self.last_odometer_km, day_odometer) {
            (Some(service), Some(day)) => Some(real(day) / 1000.0 - real(service)),
            _ => self.km_since_base_m.map(|m| real(m) / 1000.0),
        };
        let km_per_day = d.map(|d| real(d.m90) / 1000.0 / real(today - d.first_day + 1));
        let service_km = self.service_interval_km.map_or(interval_km, real);
        let service_months = self.service_interval_months.map_or(interval_months, real);
        let days_by_time = self
            .last_visit
            .or(self.purchase_day)
            .map(|base| real(base) + service_months * 30.44 - real(today));
        let days_by_km = match (km_since_service, km_per_day) {
            (Some(km), Some(per_day)) if per_day > 0.0 => Some((service_km - km) / per_day),
            _ => None,
        };
        let days_to_service_due = match (days_by_km, days_by_time) {
            (None, time) => time,
            (km, None) => km,
            (Some(km), Some(time)) => Some(if km < time { km } else { time }),
        };
        let electrified = ["hev", "phev", "ev"].contains(&self.energy.as_str());
        let (sent, responded) = campaigns;
        let values: [Option<f64>; 44] = [
            None,
            match self.price_class.as_str() {
                "economy" => Some(0.0),
                "mid" => Some(1.0),
                "premium" => Some(2.0),
                "luxury" => Some(3.0),
                _ => None,
            },
            Some(real(year - self.model_year)),
            Some(if self.energy == "ev" { 1.0 } else { 0.0 }),
            Some(if electrified { 1.0 } else { 0.0 }),
            self.purchase_day.map(|p| real(today - p)),
            self.warranty_end_day.map(|w| real(w - today)),
            Some(real(self.visits_total)),
            Some(real(self.visits_12m)),
            self.last_visit.map(|l| real(today - l) / 30.44),
            Some(real(self.spend_12m) / 100.0),
            Some(real(self.spend_total) / 100.0),
            Some(real(self.care_12m) / 100.0),
            odometer_km,
            km_since_service,
            Some(service_km),
            Some(service_months),
            days_to_service_due,
            self.birthday_month.map(real),
            Some(real(self.referrals)),
            Some(real(sent)),
            Some(real(responded)),
            ratio(responded, sent),
            Some(if m90 > 0 { 1.0 } else { 0.0 }),
            d.map(|d| real(today - d.last_day)),
            Some(real(m30) / 1000.0),
            km_per_day,
            Some(real(trips30)),
            Some(real(sum(|d| d.days_driven30))),
            Some(real(sum(|d| d.long90))),
            (driving30 != 0).then(|| real(sum(|d| d.night30)) / 100.0 / real(driving30)),
            ratio(sum(|d| d.weekend_m30), m30),
            Some(real(sum(|d| d.commute30))),
            ratio(sum(|d| d.commute30), trips30),
            Some(real(driving30) / 30.0 / 3600.0),
            ratio(sum(|d| d.score_weighted), m90),
            (m90 != 0).then(|| real(sum(|d| d.harsh90)) * 100000.0 / real(m90)),
            ratio(sum(|d| d.overspeed90), sum(|d| d.moving90)),
            self.places
                .store_distance
                .and_then(|(_, own)| own)
                .map(|m| real(m) / 1000.0),
            Some(real(self.places.poi[0])),
            Some(real(self.places.poi[1])),
            Some(real(self.places.poi[2])),
            Some(real(self.places.poi[3])),
            Some(real(self.places.poi[4])),
        ];
        values.to_vec()
    }
}

/// Features by name as JSON (`values` in the order of [`FEATURES`]); `energy`, the text
/// feature, is the vehicle's own. What a vehicle's page shows, and what explanations read.
pub fn to_json(values: &[Option<f64>], energy: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    for (feature, value) in FEATURES.iter().zip(values) {
        let json = if feature.text {
            serde_json::Value::from(energy)
        } else {
            value
                .and_then(serde_json::Number::from_f64)
                .map_or(serde_json::Value::Null, serde_json::Value::Number)
        };
        map.insert(feature.name.to_owned(), json);
    }
    map
}

/// Features as a vehicle's labels keep them (`vehicle_labels.features`), in the order of
/// [`FEATURES`], one tag byte each: 0 NULL (as for `energy`, the text one, which is the
/// vehicle's own), 1 zero, 2 a whole number as a zigzag LEB128 varint, 3 any other value as an
/// 8-byte little-endian float. Most features are counts, days or zero: about 150 bytes a
/// vehicle instead of 352, read back bit for bit.
pub fn encode(features: &[Option<f64>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * features.len() + 64);
    for feature in features {
        match *feature {
            None => out.push(0),
            Some(v) if v == 0.0 && v.is_sign_positive() => out.push(1),
            // Whole and well inside i64: exactly representable either way.
            Some(v) if v != 0.0 && v.fract() == 0.0 && v.abs() < 9.0e15 => {
                out.push(2);
                let n = v as i64;
                let mut z = ((n << 1) ^ (n >> 63)) as u64;
                loop {
                    let byte = (z & 0x7f) as u8;
                    z >>= 7;
                    if z == 0 {
                        out.push(byte);
                        break;
                    }
                    out.push(byte | 0x80);
                }
            }
            Some(v) => {
                out.push(3);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// Reads back what [`encode`] wrote; features past the end or after a malformed byte are NULL.
pub fn decode(bytes: &[u8]) -> Vec<Option<f64>> {
    let mut features = Vec::with_capacity(FEATURES.len());
    let mut at = 0;
    while features.len() < FEATURES.len() && at < bytes.len() {
        let tag = bytes[at];
        at += 1;
        let value = match tag {
            0 => None,
            1 => Some(0.0),
            2 => {
                let (mut z, mut shift) = (0_u64, 0);
                loop {
                    let Some(&byte) = bytes.get(at) else {
                        return pad(features);
                    };
                    at += 1;
                    z |= u64::from(byte & 0x7f) << shift;
                    shift += 7;
                    if byte & 0x80 == 0 || shift >= 64 {
                        break;
                    }
                }
                let n = ((z >> 1) as i64) ^ -((z & 1) as i64);
                Some(n as f64)
            }
            3 => {
                let Some(raw) = bytes.get(at..at + 8) else {
                    return pad(features);
                };
                at += 8;
                let mut le = [0; 8];
                le.copy_from_slice(raw);
                Some(f64::from_le_bytes(le))
            }
            _ => return pad(features),
        };
        features.push(value);
    }
    pad(features)
}

fn pad(mut features: Vec<Option<f64>>) -> Vec<Option<f64>> {
    features.resize(FEATURES.len(), None);
    features
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_features_read_back_bit_for_bit() {
        let mut features: Vec<Option<f64>> = (0..FEATURES.len())
            .map(|i| (i % 3 != 0).then(|| i as f64 / 7.0 - 2.0))
            .collect();
        features[1] = Some(0.0);
        features[2] = Some(-0.0);
        features[4] = Some(-12_345.0);
        features[5] = Some(1e300);
        features[7] = Some(8.9e15);
        let bytes = encode(&features);
        let back = decode(&bytes);
        for (a, b) in features.iter().zip(&back) {
            assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
        }
        // Whole numbers take a byte or three, not eight.
        assert_eq!(encode(&[Some(3.0)]), [2, 6]);
        assert_eq!(encode(&[Some(0.0), None]), [1, 0]);
        assert_eq!(decode(&bytes[..5]).len(), FEATURES.len());
        assert_eq!(decode(&[]), vec![None; FEATURES.len()]);
        assert_eq!(decode(&[9, 9, 9]), vec![None; FEATURES.len()]);
    }

    proptest! {
        /// Any features read back bit for bit; any bytes decode without a panic.
        #[test]
        fn any_features_round_trip(values in prop::collection::vec(prop::option::of(any::<f64>().prop_filter("not NaN", |v| !v.is_nan())), FEATURES.len())) {
            let back = decode(&encode(&values));
            prop_assert_eq!(back.iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>(), values.iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>());
        }

        #[test]
        fn any_bytes_decode(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            prop_assert_eq!(decode(&bytes).len(), FEATURES.len());
        }
    }
}
