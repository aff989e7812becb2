//! Frequent places, home and work, distances to the dealer's stores and visits to points of
//! interest, from the stays of one period.
//!
//! Stays are clustered like trackintel's `generate_locations` (DBSCAN with ε =
//! `cluster_eps_m` and one sample per core point, which is single-linkage clustering). Home is
//! the place with the most dwell between 22 h and 6 h local (at least an hour); work is the
//! place, other than home, with the most dwell between 8 h and 19 h on weekdays, seen on at
//! least two weekdays and for at least four hours. A visit to a POI is a stay of at least
//! `visit_min_dwell_s` whose centre lies within the POI's radius, so driving past is not a
//! visit.

use drivetag_shared::wire::PoiKind;

use super::local_time::LocalClock;
use super::stays::Stay;
use crate::config::PipelineConfig;
use crate::sample::{Millis, distance_deg_m};

/// Home needs at least this much night dwell, seconds.
pub const HOME_MIN_NIGHT_S: f64 = 3_600.0;
/// Work needs at least this much weekday daytime dwell, seconds.
pub const WORK_MIN_DAYTIME_S: f64 = 4.0 * 3_600.0;
/// Work needs weekday daytime dwell on at least this many days.
pub const WORK_MIN_DAYS: usize = 2;
/// A trip between home and work starts and ends this close to them, metres.
pub const COMMUTE_RADIUS_M: f64 = 300.0;

/// One stay with its dwell spread over local hours.
#[derive(Debug, Clone)]
struct StayRecord {
    stay: Stay,
    dwell_by_hour_s: [f32; 24],
    night_s: f64,
    weekday_daytime_s: f64,
    weekday_daytime_days: Vec<i32>,
    last_local_day: i32,
}

/// What a frequent place is to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Most night dwell.
    Home,
    /// Most weekday daytime dwell, not home.
    Work,
    /// Anything else.
    Other,
}

/// A cluster of stays.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// Dwell-weighted centre, degrees.
    pub lat: f64,
    /// Dwell-weighted centre, degrees.
    pub lon: f64,
    /// Home, work or other.
    pub role: Role,
    /// Stays at the place.
    pub visits: u32,
    /// Total dwell, seconds.
    pub dwell_s: f64,
    /// Dwell per local hour of the day, seconds.
    pub dwell_by_hour_s: [f64; 24],
    /// Dwell between 22 h and 6 h, seconds.
    pub night_s: f64,
    /// Dwell between 8 h and 19 h on weekdays, seconds.
    pub weekday_daytime_s: f64,
}

/// Visits to one configured store or POI.
#[derive(Debug, Clone, PartialEq)]
pub struct Visits {
    /// The id in the configuration.
    pub id: u32,
    /// Its kind; stores are `OwnStore`.
    pub kind: PoiKind,
    /// Visits.
    pub visits: u32,
    /// Total dwell, seconds.
    pub dwell_s: f64,
    /// Local day of the last visit.
    pub last_local_day: i32,
}

/// The places of one period.
#[derive(Debug, Clone, PartialEq)]
pub struct Places {
    /// First local day of the period.
    pub from_local_day: i32,
    /// Days in the period.
    pub days: u16,
    /// Frequent places, most dwell first.
    pub places: Vec<Place>,
    /// Distance from home to each store, metres, measured from the centre of home's coarse
    /// cell so the distances cannot be combined to find the house.
    pub store_distances_m: Vec<(u32, f64)>,
    /// Visits to stores and POIs, in configuration order; never-visited ones are left out.
    pub visits: Vec<Visits>,
}

/// The stays of the current period, and what earlier periods said about home and work.
#[derive(Debug, Clone)]
pub struct PlaceModel {
    eps_m: f64,
    stays: Vec<StayRecord>,
    roles_stale: bool,
    known_home: Option<(f64, f64)>,
    known_work: Option<(f64, f64)>,
}

impl PlaceModel {
    /// An empty model clustering stays closer than `eps_m`.
    pub fn new(eps_m: f64) -> Self {
        PlaceModel {
            eps_m,
            stays: Vec::new(),
            roles_stale: false,
            known_home: None,
            known_work: None,
        }
    }

    /// Adds a stay, spreading its dwell over the local hours it covers.
    pub fn add(&mut self, stay: Stay, clock: &mut LocalClock) {
        let mut record = StayRecord {
            stay,
            dwell_by_hour_s: [0.0; 24],
            night_s: 0.0,
            weekday_daytime_s: 0.0,
            weekday_daytime_days: Vec::new(),
            last_local_day: clock.at(stay.end_ms).day,
        };
        let mut t = stay.start_ms;
        while t < stay.end_ms {
            let local = clock.at(t);
            let hour_end = t - local.ms_of_day % 3_600_000 + 3_600_000;
            let until: Millis = hour_end.min(stay.end_ms);
            let seconds = (until - t) as f64 / 1000.0;
            record.dwell_by_hour_s[usize::from(local.hour)] += seconds as f32;
            if local.is_night() {
                record.night_s += seconds;
            }
            if !local.is_weekend() && (8..19).contains(&local.hour) {
                record.weekday_daytime_s += seconds;
                if !record.weekday_daytime_days.contains(&local.day) {
                    record.weekday_daytime_days.push(local.day);
                }
            }
            t = until;
        }
        self.stays.push(record);
        self.roles_stale = true;
    }

    /// Re-finds home and work after new stays; clustering is quadratic in the period's stays,
    /// so it runs only when someone asks.
    fn refresh_roles(&mut self) {
        if !self.roles_stale {
            return;
        }
        self.roles_stale = false;
        let places = self.clusters(self.eps_m);
        let position = |role| {
            places
                .iter()
                .find(|place| place.role == role)
                .map(|place| (place.lat, place.lon))
        };
        self.known_home = position(Role::Home).or(self.known_home);
        self.known_work = position(Role::Work).or(self.known_work);
    }

    /// Home as far as it is known, from this period or an earlier one.
    pub fn home(&mut self) -> Option<(f64, f64)> {
        self.refresh_roles();
        self.known_home
    }

    /// Whether a trip from `start` to `end` runs between home and work, either way.
    pub fn is_commute(&mut self, start: (f64, f64), end: (f64, f64)) -> bool {
        self.refresh_roles();
        let (Some(home), Some(work)) = (self.known_home, self.known_work) else {
            return false;
        };
        let near = |a, b| distance_deg_m(a, b) <= COMMUTE_RADIUS_M;
        (near(start, home) && near(end, work)) || (near(start, work) && near(end, home))
    }

    /// Clusters the period's stays into places, most dwell first, with roles.
    fn clusters(&self, eps_m: f64) -> Vec<Place> {
        let n = self.stays.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (&self.stays[i].stay, &self.stays[j].stay);
                if distance_deg_m((a.lat, a.lon), (b.lat, b.lon)) <= eps_m {
                    let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                    parent[ri] = rj;
                }
            }
        }
        let mut groups: Vec<(usize, Vec<&StayRecord>)> = Vec::new();
        for (i, record) in self.stays.iter().enumerate() {
            let r = root(&mut parent, i);
            match groups.iter_mut().find(|(root, _)| *root == r) {
                Some((_, members)) => members.push(record),
                None => groups.push((r, vec![record])),
            }
        }
        let mut places: Vec<(Place, usize)> = groups
            .into_iter()
            .map(|(_, members)| {
                let mut place = Place {
                    lat: 0.0,
                    lon: 0.0,
                    role: Role::Other,
                    visits: members.len() as u32,
                    dwell_s: 0.0,
                    dwell_by_hour_s: [0.0; 24],
                    night_s: 0.0,
                    weekday_daytime_s: 0.0,
                };
                let mut days: Vec<i32> = Vec::new();
                for record in &members {
                    // Weight by dwell, but let a zero-length stay still count.
                    let w = record.stay.duration_s().max(1.0);
                    place.lat += record.stay.lat * w;
                    place.lon += record.stay.lon * w;
                    place.dwell_s += record.stay.duration_s();
                    for (sum, add) in place.dwell_by_hour_s.iter_mut().zip(record.dwell_by_hour_s) {
                        *sum += f64::from(add);
                    }
                    place.night_s += record.night_s;
                    place.weekday_daytime_s += record.weekday_daytime_s;
                    for day in &record.weekday_daytime_days {
                        if !days.contains(day) {
                            days.push(*day);
                        }
                    }
                }
                let weight: f64 = members.iter().map(|r| r.stay.duration_s().max(1.0)).sum();
                place.lat /= weight;
                place.lon /= weight;
                (place, days.len())
            })
            .collect();
        places.sort_by(|a, b| b.0.dwell_s.total_cmp(&a.0.dwell_s));
        let home = places
            .iter()
            .enumerate()
            .filter(|(_, (place, _))| place.night_s >= HOME_MIN_NIGHT_S)
            .max_by(|a, b| a.1.0.night_s.total_cmp(&b.1.0.night_s))
            .map(|(index, _)| index);
        if let Some(home) = home {
            places[home].0.role = Role::Home;
        }
        let work = places
            .iter()
            .enumerate()
            .filter(|(index, (place, days))| {
                Some(*index) != home
                    && place.weekday_daytime_s >= WORK_MIN_DAYTIME_S
                    && *days >= WORK_MIN_DAYS
            })
            .max_by(|a, b| a.1.0.weekday_daytime_s.total_cmp(&b.1.0.weekday_daytime_s))
            .map(|(index, _)| index);
        if let Some(work) = work {
            places[work].0.role = Role::Work;
        }
        places.into_iter().map(|(place, _)| place).collect()
    }

    /// The places of the period that started on `from_local_day`, and a fresh period.
    pub fn close_period(
        &mut self,
        config: &PipelineConfig,
        from_local_day: i32,
        days: u16,
    ) -> Places {
        let rules = &config.places;
        let mut places = self.clusters(self.eps_m);
        places.truncate(rules.max_places);
        let home_cell_centre = self.home().and_then(|(lat, lon)| {
            drivetag_shared::Cell::containing(lat, lon, config.cell_size())
                .ok()
                .map(|cell| cell.centre())
        });
        let store_distances_m = match home_cell_centre {
            Some(home) => config
                .stores
                .iter()
                .map(|store| (store.id, distance_deg_m(home, (store.lat, store.lon))))
                .collect(),
            None => Vec::new(),
        };
        let targets = config
            .stores
            .iter()
            .map(|s| (s.id, PoiKind::OwnStore, s.lat, s.lon, s.radius_m))
            .chain(
                config
                    .pois
                    .iter()
                    .map(|p| (p.id, p.kind.into(), p.lat, p.lon, p.radius_m)),
            );
        let mut visits = Vec::new();
        for (id, kind, lat, lon, radius_m) in targets {
            let mut entry = Visits {
                id,
                kind,
                visits: 0,
                dwell_s: 0.0,
                last_local_day: 0,
            };
            for record in &self.stays {
                let stay = &record.stay;
                if stay.duration_s() >= rules.visit_min_dwell_s
                    && distance_deg_m((stay.lat, stay.lon), (lat, lon)) <= radius_m
                {
                    entry.visits += 1;
                    entry.dwell_s += stay.duration_s();
                    entry.last_local_day = entry.last_local_day.max(record.last_local_day);
                }
            }
            if entry.visits > 0 {
                visits.push(entry);
            }
        }
        self.stays.clear();
        Places {
            from_local_day,
            days,
            places,
            store_distances_m,
            visits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PoiKindName, PoiRule, StoreRule};

    const HOUR: Millis = 3_600_000;
    /// Monday 2024-01-01 00:00 UTC.
    const MONDAY: Millis = 1_704_067_200_000;

    fn stay(start: Millis, hours: i64, lat: f64, lon: f64) -> Stay {
        Stay {
            start_ms: start,
            end_ms: start + hours * HOUR,
            lat,
            lon,
            fixes: 10,
            bridged: true,
        }
    }

    #[test]
    fn a_commuter_week_has_home_and_work() {
        let mut model = PlaceModel::new(100.0);
        let mut clock = LocalClock::utc();
        let home = (31.2304, 121.4737);
        let work = (31.2400, 121.5000);
        for day in 0..5 {
            let midnight = MONDAY + day * 24 * HOUR;
            // Home from 19 h to 8 h next day, work from 9 h to 18 h.
            model.add(
                stay(midnight + 9 * HOUR, 9, work.0 + 0.0002, work.1),
                &mut clock,
            );
            model.add(
                stay(midnight + 19 * HOUR, 13, home.0, home.1 - 0.0003),
                &mut clock,
            );
        }
        // A mall on Saturday afternoon.
        model.add(
            stay(MONDAY + 5 * 24 * HOUR + 14 * HOUR, 2, 31.2200, 121.4500),
            &mut clock,
        );
        assert!(model.is_commute(home, work));
        assert!(model.is_commute(work, home));
        assert!(!model.is_commute(home, (31.22, 121.45)));

        let config = PipelineConfig {
            stores: vec![StoreRule {
                id: 7,
                lat: 31.2304,
                lon: 121.5037,
                radius_m: 150.0,
            }],
            pois: vec![PoiRule {
                id: 3,
                kind: PoiKindName::Premium,
                lat: 31.2201,
                lon: 121.4501,
                radius_m: 200.0,
            }],
            ..PipelineConfig::default()
        };
        let places = model.close_period(&config, 19_723, 7);
        assert_eq!(places.places.len(), 3);
        assert_eq!(places.places[0].role, Role::Home);
        assert_eq!(places.places[0].visits, 5);
        assert!((places.places[0].dwell_s - 5.0 * 13.0 * 3600.0).abs() < 1.0);
        assert_eq!(places.places[1].role, Role::Work);
        assert_eq!(places.places[2].role, Role::Other);
        // The store is 2.85 km east of home; measured from the 1.1 km cell's centre the
        // distance moves by less than the cell's half-diagonal.
        let (id, metres) = places.store_distances_m[0];
        assert_eq!(id, 7);
        assert!((metres - 2_850.0).abs() < 800.0, "{metres}");
        assert_eq!(places.visits.len(), 1);
        assert_eq!((places.visits[0].id, places.visits[0].visits), (3, 1));
        assert_eq!(places.visits[0].last_local_day, 19_723 + 5);
    }

    #[test]
    fn driving_past_a_competitor_is_not_a_visit() {
        let mut model = PlaceModel::new(100.0);
        let mut clock = LocalClock::utc();
        // Two minutes at the competitor (a red light), below the five-minute dwell.
        model.add(
            Stay {
                start_ms: MONDAY,
                end_ms: MONDAY + 120_000,
                lat: 1.0,
                lon: 1.0,
                fixes: 3,
                bridged: false,
            },
            &mut clock,
        );
        let config = PipelineConfig {
            pois: vec![PoiRule {
                id: 1,
                kind: PoiKindName::CompetitorDealer,
                lat: 1.0,
                lon: 1.0,
                radius_m: 100.0,
            }],
            ..PipelineConfig::default()
        };
        assert!(model.close_period(&config, 0, 7).visits.is_empty());
    }
}
