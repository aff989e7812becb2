//! Checks every back-end must pass, written once. The test suites for SQLite and PostgreSQL
//! call each of them with a fresh store.

use drivetag_shared::wire::{
    DaySummary, EnergyType, Envelope, Place, PlaceRole, PlaceSummary, PoiKind, PoiVisit,
    SignalSource, StoreDistance, StyleSummary, TripSummary, Uplink, VehicleInfo,
};
use drivetag_shared::{Cell, CellSize, DeviceId, codec};

use super::{
    Customer, DeadLetter, Dialect, Fleet, Import, Incoming, Outcome, PriceClass, ServiceVisit,
    StatusRecord, Store, StoreRow, Value, Vehicle, VisitKind,
};

/// An envelope for `device` and `seq` with `body`, as received.
pub fn incoming(device: &str, seq: u64, body: Uplink) -> Incoming {
    let envelope = Envelope {
        device: DeviceId::new(device).expect("a valid test id"),
        seq,
        created_s: 1_775_000_000 + seq,
        body,
    };
    Incoming {
        payload: codec::encode(&envelope),
        envelope,
        received_s: 1_775_000_100,
    }
}

/// A trip of `distance_m`.
pub fn trip(distance_m: u32) -> Uplink {
    let cell = Cell::containing(31.23, 121.47, CellSize::Km1).expect("on the globe");
    Uplink::Trip(TripSummary {
        start_s: 1_775_000_000,
        start_local_hour_of_week: 8,
        duration_s: 1_200,
        distance_m,
        moving_s: 1_100,
        max_speed_cms: 2_000,
        speed_band_pct: [20, 50, 30, 0, 0],
        night_pct: 0,
        harsh_accel: 1,
        harsh_brake: 2,
        harsh_corner: 0,
        accel_p01_cms2: -200,
        accel_p99_cms2: 150,
        lateral_p99_cms2: 180,
        speed_cv_pct: 40,
        overspeed_s: 0,
        score: 80,
        start_cell: cell,
        end_cell: cell,
    })
}

/// A day summary of `distance_m` on `local_day`.
pub fn day(local_day: u32, distance_m: u32) -> Uplink {
    Uplink::Day(DaySummary {
        local_day,
        utc_offset_min: 480,
        distance_m,
        trips: 2,
        long_trips: 0,
        driving_s: 3_000,
        moving_s: 2_800,
        night_pct: 0,
        driving_min_by_local_hour: [0; 24],
        commute_trips: 2,
        max_speed_cms: 2_500,
        harsh_accel: 0,
        harsh_brake: 1,
        harsh_corner: 0,
        overspeed_s: 0,
        score: 85,
        odometer_m: Some(12_000_000),
        energy: None,
    })
}

fn style(from_local_day: u32, score: u8) -> Uplink {
    Uplink::Style(StyleSummary {
        from_local_day,
        days: 7,
        source: SignalSource::Gnss,
        trips: 10,
        distance_m: 200_000,
        moving_s: 20_000,
        harsh_accel: 1,
        harsh_brake: 1,
        harsh_corner: 1,
        overspeed_s: 10,
        accel_p01_cms2: -180,
        accel_p99_cms2: 140,
        lateral_p99_cms2: 200,
        speed_cv_pct: 35,
        accel_score: score,
        brake_score: score,
        corner_score: score,
        speed_score: score,
        score,
    })
}

fn vehicle(odometer_m: u32) -> Uplink {
    Uplink::Vehicle(VehicleInfo {
        vin: "LSVAU2180N2183294".into(),
        make: "Volkswagen".into(),
        model: "Lavida".into(),
        model_year: 2022,
        energy: EnergyType::Ice,
        odometer_m,
        agent_version: "0.1.0".into(),
    })
}

/// A places summary of the period from `from_local_day` with `places` places, one store
/// distance per place (store ids from 1) and one POI visit, all with `visits` visits.
fn places(from_local_day: u32, places: usize, visits: u16) -> Uplink {
    let cell = Cell::containing(31.23, 121.47, CellSize::Km1).expect("on the globe");
    Uplink::Places(PlaceSummary {
        from_local_day,
        days: 28,
        places: (0..places)
            .map(|_| Place {
                cell,
                role: PlaceRole::Other,
                visits,
                dwell_s: 3_600,
                dwell_pct_by_local_hour: [0; 24],
            })
            .collect(),
        stores: (1..=places as u32)
            .map(|store_id| StoreDistance {
                store_id,
                home_distance_m: 1_000 * u32::from(visits),
            })
            .collect(),
        poi_visits: vec![PoiVisit {
            poi_id: 1,
            kind: PoiKind::Premium,
            visits,
            dwell_s: 600,
            last_local_day: from_local_day,
        }],
    })
}

async fn int(store: &Store, sql: &'static str, params: Vec<Value>) -> i64 {
    store
        .query(sql, params)
        .await
        .expect("query")
        .first()
        .and_then(|row| row.first())
        .and_then(Value::int)
        .unwrap_or(-1)
}

/// A resend is recognised and stored once; outcomes come back in order.
pub async fn ingest_is_idempotent(store: &Store) {
    let batch = vec![
        incoming("car-1", 1, trip(1_000)),
        incoming("car-1", 2, trip(2_000)),
        incoming("car-1", 1, trip(1_000)),
        incoming("car-2", 1, trip(3_000)),
    ];
    let outcomes = store.ingest(&batch).await.expect("ingest");
    assert_eq!(
        outcomes,
        [
            Outcome::Stored,
            Outcome::Stored,
            Outcome::Duplicate,
            Outcome::Stored
        ]
    );
    let again = store.ingest(&batch[..2]).await.expect("ingest again");
    assert_eq!(again, [Outcome::Duplicate, Outcome::Duplicate]);
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.envelopes, counts.trips), (3, 3));
    let metres = int(
        store,
        "SELECT CAST(sum(distance_m) AS BIGINT) FROM trips WHERE device_id = $1",
        vec!["car-1".into()],
    )
    .await;
    assert_eq!(metres, 3_000);
}

/// Sequence numbers are stored whatever order they arrive in, and listed in order.
pub async fn out_of_order_arrivals_are_ordered_by_seq(store: &Store) {
    let batch: Vec<Incoming> = [5, 3, 4, 1, 2]
        .into_iter()
        .map(|seq| incoming("car-o", seq, trip(100 * seq as u32)))
        .collect();
    store.ingest(&batch).await.expect("ingest");
    assert_eq!(
        store.sequence_numbers("car-o").await.expect("seqs"),
        [1, 2, 3, 4, 5]
    );
}

/// A later summary of a period replaces an earlier one; an earlier one arriving late does not.
pub async fn newer_summaries_win_whatever_the_arrival_order(store: &Store) {
    store
        .ingest(&[
            incoming("car-d", 10, day(20_500, 50_000)),
            incoming("car-d", 20, style(20_494, 70)),
        ])
        .await
        .expect("ingest newer");
    store
        .ingest(&[
            incoming("car-d", 7, day(20_500, 10_000)),
            incoming("car-d", 8, style(20_494, 95)),
        ])
        .await
        .expect("ingest older");
    let metres = int(
        store,
        "SELECT distance_m FROM days WHERE device_id = $1 AND local_day = $2",
        vec!["car-d".into(), 20_500i64.into()],
    )
    .await;
    assert_eq!(metres, 50_000, "the older day summary replaced the newer");
    let score = int(
        store,
        "SELECT score FROM styles WHERE device_id = $1",
        vec!["car-d".into()],
    )
    .await;
    assert_eq!(score, 70);
    store
        .ingest(&[incoming("car-d", 30, day(20_500, 60_000))])
        .await
        .expect("ingest newest");
    let metres = int(
        store,
        "SELECT distance_m FROM days WHERE device_id = $1 AND local_day = $2",
        vec!["car-d".into(), 20_500i64.into()],
    )
    .await;
    assert_eq!(metres, 60_000);
    store
        .ingest(&[
            incoming("car-d", 2, vehicle(9)),
            incoming("car-d", 40, vehicle(40)),
            incoming("car-d", 3, vehicle(3)),
        ])
        .await
        .expect("vehicles");
    let odometer = int(
        store,
        "SELECT odometer_m FROM reported_vehicles WHERE device_id = $1",
        vec!["car-d".into()],
    )
    .await;
    assert_eq!(odometer, 40);
}

/// One batch may hold several summaries of one period, resends among them, in any order: what
/// stays is what storing them one at a time in arrival order leaves.
pub async fn one_batch_holds_several_summaries_of_a_period(store: &Store) {
    let outcomes = store
        .ingest(&[
            incoming("car-b", 12, day(20_500, 12_000)),
            incoming("car-b", 11, day(20_500, 11_000)),
            incoming("car-b", 12, day(20_500, 12_000)),
            incoming("car-b", 13, day(20_501, 13_000)),
            incoming("car-b", 21, style(20_494, 60)),
            incoming("car-b", 22, style(20_494, 65)),
            incoming("car-b", 31, vehicle(31)),
            incoming("car-b", 30, vehicle(30)),
            incoming("car-c", 1, day(20_500, 1_000)),
        ])
        .await
        .expect("ingest");
    use Outcome::{Duplicate, Stored};
    assert_eq!(
        outcomes,
        [
            Stored, Stored, Duplicate, Stored, Stored, Stored, Stored, Stored, Stored
        ]
    );
    let day_metres = |day: i64| {
        int(
            store,
            "SELECT distance_m FROM days WHERE device_id = $1 AND local_day = $2",
            vec!["car-b".into(), day.into()],
        )
    };
    assert_eq!(day_metres(20_500).await, 12_000);
    assert_eq!(day_metres(20_501).await, 13_000);
    let score = int(
        store,
        "SELECT score FROM styles WHERE device_id = $1",
        vec!["car-b".into()],
    )
    .await;
    assert_eq!(score, 65);
    let odometer = int(
        store,
        "SELECT odometer_m FROM reported_vehicles WHERE device_id = $1",
        vec!["car-b".into()],
    )
    .await;
    assert_eq!(odometer, 31);
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.envelopes, counts.days), (8, 3));
}

/// A newer places summary replaces every row of its period (places, store distances, POI
/// visits), in one batch or across batches; an older one arriving late changes nothing, even
/// when it has more places than the newer one.
pub async fn places_summaries_replace_their_period(store: &Store) {
    let rows = async |table: &'static str| -> (i64, i64) {
        let sql = match table {
            "places" => {
                "SELECT count(*), CAST(max(visits) AS BIGINT) FROM places WHERE device_id = $1"
            }
            "store_distances" => {
                "SELECT count(*), CAST(max(home_distance_m) / 1000 AS BIGINT) FROM store_distances
                 WHERE device_id = $1"
            }
            _ => {
                "SELECT count(*), CAST(max(visits) AS BIGINT) FROM poi_visits WHERE device_id = $1"
            }
        };
        let found = store.query(sql, vec!["car-p".into()]).await.expect("query");
        let row = found.first().expect("a row");
        (row[0].int().unwrap_or(-1), row[1].int().unwrap_or(-1))
    };
    // In one batch: 5 (three places) then 7 (two), arriving newest first, with a resend of 5.
    let outcomes = store
        .ingest(&[
            incoming("car-p", 7, places(20_480, 2, 7)),
            incoming("car-p", 5, places(20_480, 3, 5)),
            incoming("car-p", 7, places(20_480, 2, 7)),
        ])
        .await
        .expect("ingest");
    assert_eq!(
        outcomes,
        [Outcome::Stored, Outcome::Stored, Outcome::Duplicate]
    );
    assert_eq!(rows("places").await, (2, 7));
    assert_eq!(rows("store_distances").await, (2, 7));
    assert_eq!(rows("poi_visits").await, (1, 7));
    // Across batches: an older one late changes nothing, a newer one with more places replaces.
    store
        .ingest(&[incoming("car-p", 6, places(20_480, 2, 6))])
        .await
        .expect("ingest older");
    assert_eq!(rows("places").await, (2, 7));
    assert_eq!(rows("store_distances").await, (2, 7));
    store
        .ingest(&[incoming("car-p", 8, places(20_480, 2, 8))])
        .await
        .expect("ingest newer");
    store
        .ingest(&[incoming("car-p", 4, places(20_480, 3, 4))])
        .await
        .expect("ingest older, larger");
    assert_eq!(rows("places").await, (2, 8));
    assert_eq!(rows("store_distances").await, (2, 8));
    store
        .ingest(&[incoming("car-p", 9, places(20_480, 4, 9))])
        .await
        .expect("ingest newer");
    assert_eq!(rows("places").await, (4, 9));
    assert_eq!(rows("store_distances").await, (4, 9));
    assert_eq!(rows("poi_visits").await, (1, 9));
}

/// Dead letters keep their reason, device, sequence number and bytes.
pub async fn dead_letters_are_kept(store: &Store) {
    store
        .dead_letter(&[
            DeadLetter {
                received_s: 1,
                topic: "drivetag/v1/car-x/up/trip".into(),
                device_id: Some("car-x".into()),
                seq: Some(9),
                reason: "unknown_version".into(),
                detail: "envelope has schema version 7.x".into(),
                payload: vec![7, 0, 1, 2],
            },
            DeadLetter {
                received_s: 2,
                topic: "drivetag/v1/car-x/up/trip".into(),
                device_id: None,
                seq: None,
                reason: "truncated".into(),
                detail: "envelope is truncated".into(),
                payload: vec![1],
            },
        ])
        .await
        .expect("dead letters");
    let letters = store.dead_letters().await.expect("read");
    assert_eq!(
        letters,
        [
            (
                "unknown_version".to_owned(),
                Some("car-x".to_owned()),
                Some(9)
            ),
            ("truncated".to_owned(), None, None),
        ]
    );
    assert_eq!(store.counts().await.expect("counts").dead_letters, 2);
}

/// The newest status wins.
pub async fn the_newest_status_wins(store: &Store) {
    for (created_s, online) in [(10, true), (30, false), (20, true)] {
        store
            .record_status(&StatusRecord {
                device_id: "car-s".into(),
                online,
                created_s,
                received_s: created_s,
                health: "{}".into(),
            })
            .await
            .expect("status");
    }
    let online = store
        .query(
            "SELECT online FROM device_status WHERE device_id = $1",
            vec!["car-s".into()],
        )
        .await
        .expect("query")[0][0]
        .bool();
    assert_eq!(online, Some(false));
}

/// Imports upsert by key, and the ids are known afterwards.
pub async fn registry_imports_upsert(store: &Store) {
    let stores = Import::Stores(vec![StoreRow {
        id: 1,
        name: "Pudong 4S".into(),
        city: "Shanghai".into(),
        lat: 31.2304,
        lon: 121.4737,
        radius_m: 150.0,
    }]);
    assert_eq!(store.import(&stores).await.expect("stores"), 1);
    store
        .import(&Import::Fleets(vec![Fleet {
            id: "f1".into(),
            name: "Taxi Co".into(),
        }]))
        .await
        .expect("fleets");
    let customer = Customer {
        id: "c1".into(),
        name: "Li Wei".into(),
        phone: "+86 138 0000 0000".into(),
        email: String::new(),
        wechat: "liwei".into(),
        opt_in: Default::default(),
        birthday_month: Some(5),
        home_store_id: Some(1),
        fleet_id: None,
        referrals: 0,
    };
    store
        .import(&Import::Customers(vec![customer.clone()]))
        .await
        .expect("customers");
    let renamed = Customer {
        name: "Li Wei (VIP)".into(),
        ..customer
    };
    store
        .import(&Import::Customers(vec![renamed]))
        .await
        .expect("customers again");
    store
        .import(&Import::Vehicles(vec![Vehicle {
            vin: "LSVAU2180N2183294".into(),
            device_id: Some("car-1".into()),
            make: "Volkswagen".into(),
            model: "Lavida".into(),
            model_year: 2022,
            energy: "ice".into(),
            price_class: PriceClass::Mid,
            customer_id: Some("c1".into()),
            fleet_id: None,
            store_id: Some(1),
            purchase_date: Some("2022-05-01".into()),
            warranty_end: Some("2025-05-01".into()),
            service_interval_km: None,
            service_interval_months: None,
        }]))
        .await
        .expect("vehicles");
    let visit = ServiceVisit {
        vin: "LSVAU2180N2183294".into(),
        store_id: 1,
        date: "2024-03-02".into(),
        spend_cents: 89_000,
        kind: VisitKind::Maintenance,
        odometer_km: Some(20_100),
    };
    store
        .import(&Import::ServiceVisits(vec![visit.clone(), visit]))
        .await
        .expect("visits");
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.customers, counts.vehicles), (1, 1));
    let name = store
        .query(
            "SELECT name FROM customers WHERE id = $1",
            vec!["c1".into()],
        )
        .await
        .expect("q")[0][0]
        .clone();
    assert_eq!(name, Value::Text("Li Wei (VIP)".into()));
    assert_eq!(
        int(store, "SELECT count(*) FROM service_visits", vec![]).await,
        1
    );
    let ids = store.registry_ids().await.expect("ids");
    assert!(ids.stores.contains(&1) && ids.fleets.contains("f1") && ids.customers.contains("c1"));
    assert!(ids.vins.contains("LSVAU2180N2183294"));
    assert_eq!(store.stores().await.expect("stores")[0].city, "Shanghai");
    assert!(
        store
            .known_devices()
            .await
            .expect("devices")
            .contains(&"car-1".to_owned())
    );
}

/// Settings of the server's own round-trip.
pub async fn meta_round_trips(store: &Store) {
    assert_eq!(store.meta("config_revision").await.expect("meta"), None);
    store.set_meta("config_revision", "3").await.expect("set");
    store
        .set_meta("config_revision", "4")
        .await
        .expect("set again");
    assert_eq!(
        store
            .meta("config_revision")
            .await
            .expect("meta")
            .as_deref(),
        Some("4")
    );
}

/// Device ids sort byte by byte, whatever the database's locale; on PostgreSQL every
/// `device_id` column has the "C" collation (migration 6), so keys compare without the locale.
pub async fn device_ids_compare_as_bytes(store: &Store) {
    let batch: Vec<Incoming> = ["dev_b", "dev-a", "DEV-c"]
        .into_iter()
        .map(|device| incoming(device, 1, trip(1_000)))
        .collect();
    store.ingest(&batch).await.expect("ingest");
    let sorted: Vec<String> = store
        .query("SELECT device_id FROM envelopes ORDER BY device_id", vec![])
        .await
        .expect("query")
        .iter()
        .filter_map(|row| row.first().and_then(Value::text).map(str::to_owned))
        .collect();
    assert_eq!(sorted, ["DEV-c", "dev-a", "dev_b"]);
    if store.dialect() == Dialect::Postgres {
        let collations: Vec<String> = store
            .query(
                "SELECT table_name || ' ' || COALESCE(collation_name, 'default') \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND column_name = 'device_id' \
                 ORDER BY table_name",
                vec![],
            )
            .await
            .expect("columns")
            .iter()
            .filter_map(|row| row.first().and_then(Value::text).map(str::to_owned))
            .collect();
        // Thirteen columns had it; `profiles` and `preview_profiles` went in migration 7.
        assert_eq!(collations.len(), 11, "{collations:?}");
        for column in &collations {
            assert!(column.ends_with(" C"), "{column}");
        }
    }
}

/// Every check, in one call.
pub async fn all(mut make: impl AsyncFnMut() -> Store) {
    ingest_is_idempotent(&make().await).await;
    out_of_order_arrivals_are_ordered_by_seq(&make().await).await;
    newer_summaries_win_whatever_the_arrival_order(&make().await).await;
    one_batch_holds_several_summaries_of_a_period(&make().await).await;
    places_summaries_replace_their_period(&make().await).await;
    dead_letters_are_kept(&make().await).await;
    the_newest_status_wins(&make().await).await;
    registry_imports_upsert(&make().await).await;
    meta_round_trips(&make().await).await;
    device_ids_compare_as_bytes(&make().await).await;
}
