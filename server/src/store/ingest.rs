//! Which rows an envelope becomes.

use drivetag_shared::Cell;
use drivetag_shared::wire::{PlaceRole, Uplink};

use super::{Incoming, Statement, Value};

/// A cell as text: `size:lat_idx:lon_idx`, e.g. `Km1:4814:1155`.
pub(crate) fn cell_text(cell: &Cell) -> String {
    format!("{:?}:{}:{}", cell.size(), cell.lat_idx(), cell.lon_idx())
}

fn csv<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Appends the statements that store `incoming`. The first one inserts the envelope; it
/// changes no row for a duplicate.
pub(super) fn statements(incoming: &Incoming, out: &mut Vec<Statement>) {
    let envelope = &incoming.envelope;
    let device = Value::from(envelope.device.as_str());
    let seq = Value::from(envelope.seq);
    out.push(Statement::new(
        "INSERT INTO envelopes (device_id, seq, kind, created_s, received_s, payload)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, seq) DO NOTHING",
        vec![
            device.clone(),
            seq.clone(),
            envelope.body.kind().as_str().into(),
            envelope.created_s.into(),
            incoming.received_s.into(),
            incoming.payload.clone().into(),
        ],
    ));
    match &envelope.body {
        Uplink::Trip(t) => out.push(Statement::new(
            "INSERT INTO trips (device_id, seq, start_s, start_hour_of_week, duration_s, distance_m,
                 moving_s, max_speed_cms, band_0_30, band_30_60, band_60_90, band_90_120, band_120,
                 night_pct, harsh_accel, harsh_brake, harsh_corner, accel_p01_cms2, accel_p99_cms2,
                 lateral_p99_cms2, speed_cv_pct, overspeed_s, score, start_cell, end_cell)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 $19, $20, $21, $22, $23, $24, $25)
             ON CONFLICT (device_id, seq) DO NOTHING",
            vec![
                device,
                seq,
                t.start_s.into(),
                t.start_local_hour_of_week.into(),
                t.duration_s.into(),
                t.distance_m.into(),
                t.moving_s.into(),
                t.max_speed_cms.into(),
                t.speed_band_pct[0].into(),
                t.speed_band_pct[1].into(),
                t.speed_band_pct[2].into(),
                t.speed_band_pct[3].into(),
                t.speed_band_pct[4].into(),
                t.night_pct.into(),
                t.harsh_accel.into(),
                t.harsh_brake.into(),
                t.harsh_corner.into(),
                t.accel_p01_cms2.into(),
                t.accel_p99_cms2.into(),
                t.lateral_p99_cms2.into(),
                t.speed_cv_pct.into(),
                t.overspeed_s.into(),
                t.score.into(),
                cell_text(&t.start_cell).into(),
                cell_text(&t.end_cell).into(),
            ],
        )),
        Uplink::Day(d) => out.push(Statement::new(
            "INSERT INTO days (device_id, local_day, seq, utc_offset_min, distance_m, trips, long_trips,
                 driving_s, moving_s, night_pct, driving_min_by_hour, commute_trips, max_speed_cms,
                 harsh_accel, harsh_brake, harsh_corner, overspeed_s, score, odometer_m, fuel_ml,
                 soc_used_permille)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 $19, $20, $21)
             ON CONFLICT (device_id, local_day) DO UPDATE SET seq = excluded.seq,
                 utc_offset_min = excluded.utc_offset_min, distance_m = excluded.distance_m,
                 trips = excluded.trips, long_trips = excluded.long_trips,
                 driving_s = excluded.driving_s, moving_s = excluded.moving_s,
                 night_pct = excluded.night_pct, driving_min_by_hour = excluded.driving_min_by_hour,
                 commute_trips = excluded.commute_trips, max_speed_cms = excluded.max_speed_cms,
                 harsh_accel = excluded.harsh_accel, harsh_brake = excluded.harsh_brake,
                 harsh_corner = excluded.harsh_corner, overspeed_s = excluded.overspeed_s,
                 score = excluded.score, odometer_m = excluded.odometer_m,
                 fuel_ml = excluded.fuel_ml, soc_used_permille = excluded.soc_used_permille
             WHERE excluded.seq > days.seq",
            vec![
                device,
                d.local_day.into(),
                seq,
                d.utc_offset_min.into(),
                d.distance_m.into(),
                d.trips.into(),
                d.long_trips.into(),
                d.driving_s.into(),
                d.moving_s.into(),
                d.night_pct.into(),
                csv(&d.driving_min_by_local_hour).into(),
                d.commute_trips.into(),
                d.max_speed_cms.into(),
                d.harsh_accel.into(),
                d.harsh_brake.into(),
                d.harsh_corner.into(),
                d.overspeed_s.into(),
                d.score.into(),
                d.odometer_m.into(),
                d.energy.as_ref().map(|e| e.fuel_ml).into(),
                d.energy.as_ref().map(|e| e.soc_used_permille).into(),
            ],
        )),
        Uplink::Style(s) => out.push(Statement::new(
            "INSERT INTO styles (device_id, from_local_day, seq, days, source, trips, distance_m,
                 moving_s, harsh_accel, harsh_brake, harsh_corner, overspeed_s, accel_p01_cms2,
                 accel_p99_cms2, lateral_p99_cms2, speed_cv_pct, accel_score, brake_score,
                 corner_score, speed_score, score)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 $19, $20, $21)
             ON CONFLICT (device_id, from_local_day) DO UPDATE SET seq = excluded.seq,
                 days = excluded.days, source = excluded.source, trips = excluded.trips,
                 distance_m = excluded.distance_m, moving_s = excluded.moving_s,
                 harsh_accel = excluded.harsh_accel, harsh_brake = excluded.harsh_brake,
                 harsh_corner = excluded.harsh_corner, overspeed_s = excluded.overspeed_s,
                 accel_p01_cms2 = excluded.accel_p01_cms2, accel_p99_cms2 = excluded.accel_p99_cms2,
                 lateral_p99_cms2 = excluded.lateral_p99_cms2, speed_cv_pct = excluded.speed_cv_pct,
                 accel_score = excluded.accel_score, brake_score = excluded.brake_score,
                 corner_score = excluded.corner_score, speed_score = excluded.speed_score,
                 score = excluded.score
             WHERE excluded.seq > styles.seq",
            vec![
                device,
                s.from_local_day.into(),
                seq,
                s.days.into(),
                format!("{:?}", s.source).to_lowercase().into(),
                s.trips.into(),
                s.distance_m.into(),
                s.moving_s.into(),
                s.harsh_accel.into(),
                s.harsh_brake.into(),
                s.harsh_corner.into(),
                s.overspeed_s.into(),
                s.accel_p01_cms2.into(),
                s.accel_p99_cms2.into(),
                s.lateral_p99_cms2.into(),
                s.speed_cv_pct.into(),
                s.accel_score.into(),
                s.brake_score.into(),
                s.corner_score.into(),
                s.speed_score.into(),
                s.score.into(),
            ],
        )),
        Uplink::Places(p) => {
            let period = Value::from(p.from_local_day);
            // A newer summary of the period replaces an older one; an older one arriving late
            // deletes nothing and its inserts conflict with the newer rows.
            for table in [
                "DELETE FROM places WHERE device_id = $1 AND from_local_day = $2 AND seq < $3",
                "DELETE FROM store_distances WHERE device_id = $1 AND from_local_day = $2 AND seq < $3",
                "DELETE FROM poi_visits WHERE device_id = $1 AND from_local_day = $2 AND seq < $3",
            ] {
                out.push(Statement::new(table, vec![device.clone(), period.clone(), seq.clone()]));
            }
            for (rank, place) in p.places.iter().enumerate() {
                out.push(Statement::new(
                    "INSERT INTO places (device_id, from_local_day, rank, seq, days, cell, role, visits,
                         dwell_s, dwell_pct_by_hour)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                    vec![
                        device.clone(),
                        period.clone(),
                        (rank as u64).into(),
                        seq.clone(),
                        p.days.into(),
                        cell_text(&place.cell).into(),
                        match place.role {
                            PlaceRole::Home => "home",
                            PlaceRole::Work => "work",
                            PlaceRole::Other => "other",
                        }
                        .into(),
                        place.visits.into(),
                        place.dwell_s.into(),
                        csv(&place.dwell_pct_by_local_hour).into(),
                    ],
                ));
            }
            for store in &p.stores {
                out.push(Statement::new(
                    "INSERT INTO store_distances (device_id, from_local_day, store_id, seq, home_distance_m)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    vec![
                        device.clone(),
                        period.clone(),
                        store.store_id.into(),
                        seq.clone(),
                        store.home_distance_m.into(),
                    ],
                ));
            }
            for visit in &p.poi_visits {
                out.push(Statement::new(
                    "INSERT INTO poi_visits (device_id, from_local_day, poi_id, seq, kind, visits,
                         dwell_s, last_local_day)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    vec![
                        device.clone(),
                        period.clone(),
                        visit.poi_id.into(),
                        seq.clone(),
                        visit.kind.as_str().into(),
                        visit.visits.into(),
                        visit.dwell_s.into(),
                        visit.last_local_day.into(),
                    ],
                ));
            }
        }
        Uplink::Vehicle(v) => out.push(Statement::new(
            "INSERT INTO reported_vehicles (device_id, seq, vin, make, model, model_year, energy,
                 odometer_m, agent_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (device_id) DO UPDATE SET seq = excluded.seq, vin = excluded.vin,
                 make = excluded.make, model = excluded.model, model_year = excluded.model_year,
                 energy = excluded.energy, odometer_m = excluded.odometer_m,
                 agent_version = excluded.agent_version
             WHERE excluded.seq > reported_vehicles.seq",
            vec![
                device,
                seq,
                v.vin.clone().into(),
                v.make.clone().into(),
                v.model.clone().into(),
                v.model_year.into(),
                v.energy.as_str().into(),
                v.odometer_m.into(),
                v.agent_version.clone().into(),
            ],
        )),
    }
}
