//! The simulated fleet: who drives what, where they live and work, when they drive, and what
//! the dealer's systems know about them (customers, vehicles, service history, campaigns).
//!
//! Everything follows from the seed: the same [`FleetSpec`] gives the same fleet, the same
//! plans and the same CSV files, byte for byte.

use std::fmt::Write as _;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::drive::Style;
use crate::persona::Persona;
use crate::world::{World, offset};

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    /// How many vehicles.
    pub vehicles: usize,
    /// How many days of driving, ending with `last_day`.
    pub days: u32,
    /// The seed every random choice follows.
    pub seed: u64,
    /// The last simulated day (local): usually yesterday, so every day is complete.
    pub last_day: Date,
    /// IANA time zone of the plans (the city's).
    pub time_zone: String,
    /// Prepended to device ids, VINs' serials and customer ids, so that several simulated
    /// fleets can share a broker or a database.
    pub prefix: String,
}

/// Why a fleet cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The time zone is not in the database.
    #[error("unknown time zone {name:?}: {source}")]
    TimeZone {
        /// The name given.
        name: String,
        /// Why.
        source: jiff::Error,
    },
    /// A day or time cannot be represented.
    #[error("date arithmetic: {0}")]
    Date(#[from] jiff::Error),
    /// The prefix would make invalid device ids.
    #[error("prefix {0:?} may hold only ASCII letters, digits, '-', '_' and '.', at most 16")]
    Prefix(String),
}

/// A trip someone intends to make: leave at `depart_s` (or as soon as they arrive from the
/// previous one) for `to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedTrip {
    /// Departure, Unix seconds.
    pub depart_s: i64,
    /// Destination.
    pub to: (f64, f64),
    /// Whether the destination is a charging station (an EV charges there).
    pub charges: bool,
}

/// One simulated vehicle with its driver.
#[derive(Debug, Clone, PartialEq)]
pub struct SimVehicle {
    /// Position in the fleet.
    pub index: usize,
    /// The driver's persona.
    pub persona: Persona,
    /// The head unit's id.
    pub device_id: String,
    /// Vehicle identification number.
    pub vin: String,
    /// The customer (driver or owner).
    pub customer_id: String,
    /// The customer's name.
    pub customer_name: String,
    /// The fleet the vehicle belongs to, if any.
    pub fleet_id: Option<String>,
    /// The store nearest home, which sold and services the car.
    pub store_id: i64,
    /// Manufacturer.
    pub make: &'static str,
    /// Model.
    pub model: &'static str,
    /// Model year.
    pub model_year: i16,
    /// `ice`, `hev`, `phev` or `ev`.
    pub energy: &'static str,
    /// `economy`, `mid`, `premium` or `luxury`.
    pub price_class: &'static str,
    /// When the car was bought.
    pub purchase: Date,
    /// The maker's service interval (km, months), when it is not the dealer's default.
    pub service_interval: Option<(u32, u32)>,
    /// Home.
    pub home: (f64, f64),
    /// Work.
    pub work: (f64, f64),
    /// How the driver drives.
    pub style: Style,
    /// The odometer when the simulation starts, km.
    pub start_odometer_km: f64,
    /// The trips, in order.
    pub trips: Vec<PlannedTrip>,
    /// Seed of the driving noise.
    pub drive_seed: u64,
}

/// A service visit in the dealer's records.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceVisit {
    /// The day.
    pub date: Date,
    /// Spend, currency units.
    pub spend: f64,
    /// maintenance, repair, tyres, brakes, insurance, accessories, detailing...
    pub kind: &'static str,
    /// The odometer at the visit, km.
    pub odometer_km: f64,
}

/// The simulated fleet and its world.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// What was asked for.
    pub spec: FleetSpec,
    /// The city.
    pub world: World,
    /// The vehicles.
    pub vehicles: Vec<SimVehicle>,
    /// The first simulated day.
    pub first_day: Date,
    /// Service visits per vehicle (same order as `vehicles`).
    pub visits: Vec<Vec<ServiceVisit>>,
    /// Campaign history per vehicle's customer: (campaign, channel, sent, responded).
    pub campaigns: Vec<Vec<(&'static str, &'static str, Date, bool)>>,
    /// Opt-in channels per customer.
    pub opt_ins: Vec<&'static str>,
    /// Referrals per customer.
    pub referrals: Vec<u32>,
    /// Birthday month per customer.
    pub birthdays: Vec<i8>,
}

/// The fleets ride-hailing cars belong to: (id, name).
pub const FLEETS: [(&str, &str); 2] = [
    ("ride-co", "Shanghai Ride Co."),
    ("pudong-cabs", "Pudong Cabs"),
];

const SURNAMES: [&str; 16] = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma",
    "Zhu", "Hu", "Guo",
];
const GIVEN: [&str; 16] = [
    "Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yang", "Jun", "Jie", "Tao", "Ming", "Chao", "Xiu",
    "Hua", "Ping", "Gang",
];

fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let north = (b.0 - a.0) * 111_195.0;
    let east = (b.1 - a.1) * 111_195.0 * a.0.to_radians().cos();
    (north * north + east * east).sqrt()
}

/// Typical kilometres a day, to place the odometer at past service visits.
fn km_per_day(persona: Persona) -> f64 {
    match persona {
        Persona::RideHailing => 150.0,
        Persona::LongDistance => 55.0,
        Persona::Lost | Persona::Aggressive => 35.0,
        Persona::NightDriver => 25.0,
        _ => 30.0,
    }
}

impl Fleet {
    /// Makes the fleet `spec` describes in `world`.
    pub fn new(spec: FleetSpec, world: World) -> Result<Fleet, FleetError> {
        let valid_prefix = spec.prefix.len() <= 16
            && spec
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_prefix {
            return Err(FleetError::Prefix(spec.prefix.clone()));
        }
        let zone = TimeZone::get(&spec.time_zone).map_err(|source| FleetError::TimeZone {
            name: spec.time_zone.clone(),
            source,
        })?;
        let first_day = spec
            .last_day
            .checked_sub(jiff::Span::new().days(i64::from(spec.days.max(1)) - 1))?;
        let mut fleet = Fleet {
            first_day,
            world,
            vehicles: Vec::with_capacity(spec.vehicles),
            visits: Vec::with_capacity(spec.vehicles),
            campaigns: Vec::with_capacity(spec.vehicles),
            opt_ins: Vec::with_capacity(spec.vehicles),
            referrals: Vec::with_capacity(spec.vehicles),
            birthdays: Vec::with_capacity(spec.vehicles),
            spec,
        };
        for index in 0..fleet.spec.vehicles {
            fleet.add(index, &zone)?;
        }
        Ok(fleet)
    }

    fn rng(&self, index: usize, stream: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.spec.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        rng.set_stream(stream);
        rng
    }

    /// A point between `min_m` and `max_m` from `around`, at least 500 m from every site.
    fn point(
        &self,
        rng: &mut ChaCha8Rng,
        around: (f64, f64),
        min_m: f64,
        max_m: f64,
    ) -> (f64, f64) {
        loop {
            let bearing = rng.random_range(0.0..std::f64::consts::TAU);
            let distance = rng.random_range(min_m..max_m);
            let p = offset(
                around.0,
                around.1,
                distance * bearing.cos(),
                distance * bearing.sin(),
            );
            let clear = self
                .world
                .stores
                .iter()
                .chain(&self.world.pois)
                .all(|s| metres(p, (s.lat, s.lon)) > 500.0);
            if clear {
                return p;
            }
        }
    }

    /// A parking spot at a site: within 40 m of it.
    fn at_site(rng: &mut ChaCha8Rng, world: &World, id: i64) -> (f64, f64) {
        let site = world.site(id).map_or(world.centre, |s| (s.lat, s.lon));
        offset(
            site.0,
            site.1,
            rng.random_range(-40.0..40.0),
            rng.random_range(-40.0..40.0),
        )
    }

    fn add(&mut self, index: usize, zone: &TimeZone) -> Result<(), FleetError> {
        let persona = Persona::ALL[index % Persona::ALL.len()];
        let mut rng = self.rng(index, 1);
        let centre = self.world.centre;
        let home = self.point(&mut rng, centre, 4_000.0, 14_000.0);
        let work = loop {
            let work = self.point(&mut rng, centre, 0.0, 8_000.0);
            if metres(home, work) >= 6_000.0 {
                break work;
            }
        };
        let store_id = self.world.nearest_store(home).id;
        let today = self.spec.last_day.checked_add(jiff::Span::new().days(1))?;
        let days_ago = |days: i64| today.checked_sub(jiff::Span::new().days(days));
        let window = i64::from(self.spec.days.max(1));
        let vary = |rng: &mut ChaCha8Rng, x: f64| x * rng.random_range(0.95..1.05);
        let base = match persona {
            Persona::Aggressive => Style::AGGRESSIVE,
            Persona::NightDriver | Persona::EvOwner | Persona::LongDistance => Style::GENTLE,
            Persona::PremiumShopper | Persona::NewCarOwner => Style::BRISK,
            _ => Style::NORMAL,
        };
        let style = Style {
            city_kmh: vary(&mut rng, base.city_kmh),
            highway_kmh: base.highway_kmh.min(vary(&mut rng, base.highway_kmh)),
            accel_mps2: vary(&mut rng, base.accel_mps2),
            brake_mps2: vary(&mut rng, base.brake_mps2),
            stop_share: base.stop_share,
            late_brake_share: base.late_brake_share,
        };
        let (make, model, energy, price_class) = match persona {
            Persona::PremiumShopper => [
                ("Mercedes-Benz", "S-Class", "ice", "luxury"),
                ("BMW", "7 Series", "phev", "luxury"),
            ][index % 2],
            Persona::NewCarOwner => [
                ("BMW", "5 Series", "ice", "luxury"),
                ("Audi", "A6L", "ice", "luxury"),
            ][index % 2],
            Persona::EvOwner => [
                ("BYD", "Seal", "ev", "mid"),
                ("Tesla", "Model 3", "ev", "premium"),
            ][index % 2],
            // Touring cars with the long service intervals their makers specify.
            Persona::LongDistance => [
                ("Volvo", "XC60", "ice", "premium"),
                ("Toyota", "Highlander", "hev", "mid"),
            ][index % 2],
            Persona::RideHailing => [
                ("Toyota", "Corolla", "hev", "economy"),
                ("BYD", "Qin Plus", "phev", "economy"),
            ][index % 2],
            _ => [
                ("Volkswagen", "Lavida", "ice", "mid"),
                ("Geely", "Emgrand", "ice", "economy"),
                ("Toyota", "Camry", "hev", "mid"),
                ("Buick", "GL8", "ice", "premium"),
            ][rng.random_range(0..4)],
        };
        let purchase_days_ago = match persona {
            Persona::NewCarOwner => 45.max(window + 5),
            Persona::Lost => rng.random_range(5 * 365..6 * 365),
            _ => rng.random_range(400..1_100),
        };
        let purchase = days_ago(purchase_days_ago)?;
        let model_year = purchase.year() + i16::from(persona == Persona::NewCarOwner);
        let start_odometer_km = match persona {
            Persona::NewCarOwner => 30.0 + (purchase_days_ago - window) as f64 * 30.0,
            _ => purchase_days_ago as f64 * km_per_day(persona) * rng.random_range(0.8..1.2),
        };

        // Service history: the last visit shapes the service-due and lifecycle labels.
        let last_service_days = match persona {
            Persona::Commuter => Some(167.max(window + 3)),
            Persona::RideHailing => Some(62.max(window + 3)),
            Persona::Lost => Some(609),
            Persona::NewCarOwner => None,
            _ => Some(window + rng.random_range(3..15)),
        };
        let mut visits = Vec::new();
        if let Some(last) = last_service_days {
            let mut ago = last;
            while ago < purchase_days_ago - 30 {
                let odometer_km = (start_odometer_km
                    - (ago - window).max(0) as f64 * km_per_day(persona))
                .max(0.0);
                let (kind, spend) =
                    if persona == Persona::PremiumShopper && ago < 365 && visits.len() % 2 == 0 {
                        ("detailing", rng.random_range(1_200.0..2_800.0))
                    } else {
                        match rng.random_range(0..10) {
                            0 => ("tyres", rng.random_range(1_800.0..4_000.0)),
                            1 => ("brakes", rng.random_range(800.0..2_000.0)),
                            2 => ("insurance", rng.random_range(3_000.0..6_000.0)),
                            _ => ("maintenance", rng.random_range(600.0..1_500.0)),
                        }
                    };
                visits.push(ServiceVisit {
                    date: days_ago(ago)?,
                    spend: (spend * 100.0f64).round() / 100.0,
                    kind,
                    odometer_km: odometer_km.round(),
                });
                ago += if persona == Persona::PremiumShopper && ago < 365 {
                    60
                } else {
                    182
                };
            }
        }
        visits.reverse();

        let mut campaigns = Vec::new();
        let respond = if persona == Persona::PremiumShopper {
            0.6
        } else {
            0.3
        };
        for _ in 0..rng.random_range(0..5) {
            let campaign = [
                "spring_maintenance",
                "summer_ac_check",
                "winter_tyres",
                "national_day",
            ][rng.random_range(0..4)];
            let channel = ["wechat", "sms", "push"][rng.random_range(0..3)];
            campaigns.push((
                campaign,
                channel,
                days_ago(rng.random_range(window.max(30) + 30..400))?,
                rng.random_bool(respond),
            ));
        }
        campaigns.sort_by_key(|c| c.2);

        let fleet_id =
            (persona == Persona::RideHailing).then(|| FLEETS[(index / 9) % 2].0.to_owned());
        let prefix = &self.spec.prefix;
        let vehicle = SimVehicle {
            index,
            persona,
            device_id: format!("{prefix}sim-{index:05}"),
            vin: format!(
                "LDTSX{:012}",
                (self.spec.seed % 10_000) * 100_000_000 + index as u64
            ),
            customer_id: format!("{prefix}c-{index:05}"),
            customer_name: format!(
                "{} {}",
                SURNAMES[rng.random_range(0..16)],
                GIVEN[rng.random_range(0..16)]
            ),
            fleet_id,
            store_id,
            make,
            model,
            model_year,
            energy,
            price_class,
            purchase,
            service_interval: (persona == Persona::LongDistance).then_some((10_000, 12)),
            home,
            work,
            style,
            start_odometer_km: start_odometer_km.round(),
            trips: Vec::new(),
            drive_seed: self
                .spec
                .seed
                .wrapping_add(index as u64)
                .wrapping_mul(0xD134_2543_DE82_EF95),
        };
        let mut vehicle = vehicle;
        vehicle.trips = self.plan(&vehicle, zone, &mut self.rng(index, 2))?;
        self.opt_ins.push(match rng.random_range(0..4) {
            0 => "push;wechat;sms;email;phone",
            1 => "push;wechat;sms",
            2 => "wechat;sms;phone",
            _ => "push;wechat;email",
        });
        self.referrals
            .push(if persona == Persona::Commuter && index % 4 == 0 {
                3
            } else {
                rng.random_range(0..3)
            });
        self.birthdays.push(rng.random_range(1..=12));
        self.visits.push(visits);
        self.campaigns.push(campaigns);
        self.vehicles.push(vehicle);
        Ok(())
    }

    /// Every trip of the simulated days, in order.
    fn plan(
        &self,
        v: &SimVehicle,
        zone: &TimeZone,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<PlannedTrip>, FleetError> {
        let mut trips = Vec::new();
        let mut weekend_trips = 0;
        let mut day = self.first_day;
        while day <= self.spec.last_day {
            let weekend = matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
            let at = |minute: i32,
                      to: (f64, f64),
                      charges: bool,
                      trips: &mut Vec<PlannedTrip>|
             -> Result<(), FleetError> {
                let minute = minute.clamp(0, 24 * 60 - 1);
                let local = day.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
                let depart_s = local
                    .to_zoned_datetime(zone.clone())?
                    .timestamp()
                    .as_second();
                trips.push(PlannedTrip {
                    depart_s,
                    to,
                    charges,
                });
                Ok(())
            };
            let j = |rng: &mut ChaCha8Rng, minute: i32, spread: i32| {
                minute + rng.random_range(-spread..=spread)
            };
            let errand = |rng: &mut ChaCha8Rng| self.point(rng, v.home, 2_000.0, 6_000.0);
            let commute = |rng: &mut ChaCha8Rng,
                           trips: &mut Vec<PlannedTrip>,
                           home_at: i32|
             -> Result<(), FleetError> {
                at(j(rng, 7 * 60 + 30, 25), v.work, false, trips)?;
                at(j(rng, home_at, 30), v.home, false, trips)
            };
            match v.persona {
                Persona::Commuter | Persona::Aggressive | Persona::NewCarOwner => {
                    if weekend {
                        if rng.random_bool(0.6) {
                            at(j(rng, 10 * 60, 60), errand(rng), false, &mut trips)?;
                            at(j(rng, 12 * 60 + 30, 30), v.home, false, &mut trips)?;
                        }
                    } else {
                        commute(rng, &mut trips, 17 * 60 + 50)?;
                        let evening = if v.persona == Persona::Aggressive {
                            0.5
                        } else {
                            0.25
                        };
                        if rng.random_bool(evening) {
                            at(j(rng, 19 * 60 + 40, 20), errand(rng), false, &mut trips)?;
                            at(j(rng, 21 * 60, 20), v.home, false, &mut trips)?;
                        }
                    }
                }
                Persona::LongDistance => {
                    if !weekend {
                        commute(rng, &mut trips, 17 * 60 + 40)?;
                    } else if day.weekday() == Weekday::Saturday
                        && (weekend_trips == 0 || rng.random_bool(0.8))
                    {
                        weekend_trips += 1;
                        let far = self.world.far_city;
                        let there = self.point(rng, far, 500.0, 3_000.0);
                        at(j(rng, 8 * 60 + 30, 30), there, false, &mut trips)?;
                        // Back on Sunday afternoon (a plan on Saturday for the next day).
                        let sunday = day.checked_add(jiff::Span::new().days(1))?;
                        if sunday <= self.spec.last_day {
                            let local = sunday.at(15, rng.random_range(0..59), 0, 0);
                            let depart_s = local
                                .to_zoned_datetime(zone.clone())?
                                .timestamp()
                                .as_second();
                            trips.push(PlannedTrip {
                                depart_s,
                                to: v.home,
                                charges: false,
                            });
                        }
                    }
                }
                Persona::NightDriver => {
                    if !weekend {
                        at(j(rng, 5 * 60 + 10, 10), v.home, false, &mut trips)?;
                        at(j(rng, 22 * 60 + 30, 15), v.work, false, &mut trips)?;
                    } else if day.weekday() == Weekday::Saturday {
                        at(j(rng, 5 * 60 + 10, 10), v.home, false, &mut trips)?;
                    }
                    if weekend && rng.random_bool(0.5) {
                        at(j(rng, 15 * 60, 40), errand(rng), false, &mut trips)?;
                        at(j(rng, 17 * 60, 30), v.home, false, &mut trips)?;
                    }
                }
                Persona::RideHailing => {
                    let day_off =
                        (v.index / 9 + day.weekday().to_monday_zero_offset() as usize) % 7 == 0;
                    if !day_off {
                        let mut minute = j(rng, 7 * 60 + 15, 15);
                        let mut driven_min = 0.0;
                        let mut here = v.home;
                        let mut lunch = false;
                        while minute < 21 * 60 + 30 && driven_min < 360.0 {
                            let to = self.point(rng, self.world.centre, 0.0, 16_000.0);
                            if metres(here, to) < 2_000.0 {
                                continue;
                            }
                            at(minute, to, false, &mut trips)?;
                            let km = metres(here, to) * 1.3 / 1000.0;
                            // City streets with lights, or the ring road for longer fares.
                            let duration = km / if km > 8.0 { 60.0 } else { 25.0 } * 60.0;
                            driven_min += duration;
                            minute += duration as i32 + rng.random_range(2..5);
                            if !lunch && minute > 12 * 60 {
                                lunch = true;
                                minute += 45;
                            }
                            here = to;
                        }
                        at(minute + 3, v.home, false, &mut trips)?;
                    }
                }
                Persona::PremiumShopper => {
                    let mall = Self::at_site(rng, &self.world, 301);
                    match day.weekday() {
                        Weekday::Saturday => {
                            at(
                                j(rng, 9 * 60, 20),
                                Self::at_site(rng, &self.world, 302),
                                false,
                                &mut trips,
                            )?;
                            at(j(rng, 14 * 60, 30), v.home, false, &mut trips)?;
                        }
                        Weekday::Sunday => {
                            at(j(rng, 15 * 60, 30), mall, false, &mut trips)?;
                            at(j(rng, 18 * 60, 20), v.home, false, &mut trips)?;
                        }
                        Weekday::Tuesday | Weekday::Thursday => {
                            at(j(rng, 8 * 60 + 30, 20), v.work, false, &mut trips)?;
                            at(j(rng, 17 * 60 + 30, 20), mall, false, &mut trips)?;
                            at(j(rng, 20 * 60, 20), v.home, false, &mut trips)?;
                        }
                        _ => commute(rng, &mut trips, 18 * 60 + 30)?,
                    }
                }
                Persona::Lost => {
                    if weekend {
                        if day.weekday() == Weekday::Saturday {
                            // Alternates between a rival dealer and a tyre shop.
                            let weeks = (day - self.first_day).get_days() / 7;
                            let site = [101, 201, 102][weeks as usize % 3];
                            at(
                                j(rng, 10 * 60, 30),
                                Self::at_site(rng, &self.world, site),
                                false,
                                &mut trips,
                            )?;
                            at(j(rng, 11 * 60 + 45, 20), v.home, false, &mut trips)?;
                        } else if rng.random_bool(0.6) {
                            at(j(rng, 11 * 60, 60), errand(rng), false, &mut trips)?;
                            at(j(rng, 14 * 60, 30), v.home, false, &mut trips)?;
                        }
                    } else {
                        commute(rng, &mut trips, 18 * 60)?;
                    }
                }
                Persona::EvOwner => {
                    let hub = Self::at_site(rng, &self.world, 401);
                    match day.weekday() {
                        Weekday::Wednesday => {
                            at(j(rng, 7 * 60 + 30, 25), v.work, false, &mut trips)?;
                            at(j(rng, 17 * 60 + 50, 20), hub, false, &mut trips)?;
                            at(j(rng, 18 * 60 + 50, 10), v.home, true, &mut trips)?;
                        }
                        Weekday::Saturday => {
                            at(j(rng, 10 * 60, 30), hub, false, &mut trips)?;
                            at(j(rng, 11 * 60, 10), v.home, true, &mut trips)?;
                        }
                        Weekday::Sunday => {
                            if rng.random_bool(0.5) {
                                at(j(rng, 10 * 60, 60), errand(rng), false, &mut trips)?;
                                at(j(rng, 12 * 60 + 30, 30), v.home, false, &mut trips)?;
                            }
                        }
                        _ => commute(rng, &mut trips, 17 * 60 + 45)?,
                    }
                }
            }
            day = day.checked_add(jiff::Span::new().days(1))?;
        }
        trips.sort_by_key(|t| t.depart_s);
        Ok(trips)
    }

    /// The dealer-side CSV files, in import order: `(kind, content)`.
    pub fn dealer_csvs(&self) -> Vec<(&'static str, String)> {
        let mut stores = String::from("id,name,city,lat,lon,radius_m\n");
        for s in &self.world.stores {
            let _ = writeln!(
                stores,
                "{},{},{},{:.6},{:.6},200",
                s.id, s.name, self.world.city, s.lat, s.lon
            );
        }
        let mut pois = String::from("id,name,kind,lat,lon,radius_m\n");
        for s in &self.world.pois {
            let _ = writeln!(
                pois,
                "{},{},{},{:.6},{:.6},200",
                s.id, s.name, s.kind, s.lat, s.lon
            );
        }
        let mut fleets = String::from("id,name\n");
        for (id, name) in FLEETS {
            let _ = writeln!(fleets, "{id},{name}");
        }
        let mut customers = String::from(
            "id,name,phone,email,wechat,opt_in,birthday_month,home_store_id,fleet_id,referrals\n",
        );
        let mut vehicles = String::from(
            "vin,device_id,make,model,model_year,energy,price_class,customer_id,fleet_id,store_id,purchase_date,warranty_end,service_interval_km,service_interval_months\n",
        );
        let mut visits = String::from("vin,store_id,date,spend,kind,odometer_km\n");
        let mut responses = String::from("customer_id,campaign,channel,sent_date,responded\n");
        for (i, v) in self.vehicles.iter().enumerate() {
            let fleet = v.fleet_id.as_deref().unwrap_or("");
            let _ = writeln!(
                customers,
                "{},{},+86 139{:08},{},wx_{},{},{},{},{},{}",
                v.customer_id,
                v.customer_name,
                (self.spec.seed.wrapping_mul(7919) + i as u64) % 100_000_000,
                if self.opt_ins[i].contains("email") {
                    format!("{}@example.cn", v.customer_id)
                } else {
                    String::new()
                },
                v.customer_id,
                self.opt_ins[i],
                self.birthdays[i],
                v.store_id,
                fleet,
                self.referrals[i],
            );
            let warranty_end = v
                .purchase
                .checked_add(jiff::Span::new().years(4))
                .unwrap_or(v.purchase);
            let _ = writeln!(
                vehicles,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                v.vin,
                v.device_id,
                v.make,
                v.model,
                v.model_year,
                v.energy,
                v.price_class,
                v.customer_id,
                fleet,
                v.store_id,
                v.purchase,
                warranty_end,
                v.service_interval
                    .map(|i| i.0.to_string())
                    .unwrap_or_default(),
                v.service_interval
                    .map(|i| i.1.to_string())
                    .unwrap_or_default(),
            );
            for visit in &self.visits[i] {
                let _ = writeln!(
                    visits,
                    "{},{},{},{:.2},{},{}",
                    v.vin, v.store_id, visit.date, visit.spend, visit.kind, visit.odometer_km
                );
            }
            for (campaign, channel, sent, responded) in &self.campaigns[i] {
                let _ = writeln!(
                    responses,
                    "{},{campaign},{channel},{sent},{}",
                    v.customer_id,
                    u8::from(*responded)
                );
            }
        }
        vec![
            ("stores", stores),
            ("pois", pois),
            ("fleets", fleets),
            ("customers", customers),
            ("vehicles", vehicles),
            ("service_visits", visits),
            ("campaign_responses", responses),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(vehicles: usize, seed: u64) -> FleetSpec {
        FleetSpec {
            vehicles,
            days: 14,
            seed,
            last_day: jiff::civil::date(2026, 11, 28),
            time_zone: "Asia/Shanghai".into(),
            prefix: String::new(),
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_fleet() {
        let a = Fleet::new(spec(18, 7), World::shanghai()).unwrap();
        let b = Fleet::new(spec(18, 7), World::shanghai()).unwrap();
        let c = Fleet::new(spec(18, 8), World::shanghai()).unwrap();
        assert_eq!(a.vehicles, b.vehicles);
        assert_eq!(a.dealer_csvs(), b.dealer_csvs());
        assert_ne!(a.vehicles[0].home, c.vehicles[0].home);
    }

    #[test]
    fn personas_plan_their_kind_of_week() {
        let fleet = Fleet::new(spec(9, 3), World::shanghai()).unwrap();
        let trips = |p: Persona| {
            &fleet
                .vehicles
                .iter()
                .find(|v| v.persona == p)
                .unwrap()
                .trips
        };
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let hour = |t: &PlannedTrip| {
            jiff::Timestamp::from_second(t.depart_s)
                .unwrap()
                .to_zoned_datetime(zone.clone())
                .hour()
        };
        // Two weeks of commuting: ten weekdays, two trips each.
        assert_eq!(
            trips(Persona::Commuter)
                .iter()
                .filter(|t| (7..9).contains(&hour(t)))
                .count(),
            10
        );
        // Ride-hailing: many trips a day, six days a week.
        assert!(
            trips(Persona::RideHailing).len() > 12 * 15,
            "{}",
            trips(Persona::RideHailing).len()
        );
        // The night driver leaves after 21 h on weekdays.
        assert_eq!(
            trips(Persona::NightDriver)
                .iter()
                .filter(|t| hour(t) >= 21)
                .count(),
            10
        );
        // The long-distance driver goes to the far city at least once.
        let far = fleet.world.far_city;
        assert!(
            trips(Persona::LongDistance)
                .iter()
                .any(|t| metres(t.to, far) < 5_000.0)
        );
        // Trips are in order.
        for v in &fleet.vehicles {
            assert!(v.trips.windows(2).all(|w| w[0].depart_s <= w[1].depart_s));
        }
    }

    #[test]
    fn service_history_fits_the_persona() {
        let fleet = Fleet::new(spec(9, 5), World::shanghai()).unwrap();
        let last = |p: Persona| {
            let i = fleet.vehicles.iter().position(|v| v.persona == p).unwrap();
            fleet.visits[i].last().map(|v| v.date)
        };
        let today = jiff::civil::date(2026, 11, 29);
        let months = |d: Option<Date>| (today - d.unwrap()).get_days() as f64 / 30.44;
        assert!(months(last(Persona::Lost)) > 18.0);
        assert!((5.0..6.0).contains(&months(last(Persona::Commuter))));
        assert!(months(last(Persona::Aggressive)) < 2.0);
        assert_eq!(last(Persona::NewCarOwner), None);
        let csvs = fleet.dealer_csvs();
        assert_eq!(
            csvs.iter().map(|c| c.0).collect::<Vec<_>>(),
            drivetag_server::import::KINDS
        );
        // Header plus one line per vehicle.
        assert_eq!(csvs[4].1.lines().count(), 10);
    }
}
