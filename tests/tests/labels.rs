//! Labels and strategies on hand-built populations whose right answers are known exactly, on
//! SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)] // Tests may panic on what they did not expect.

use std::collections::{BTreeMap, BTreeSet};

use drivetag_server::labels::engine::{Day, Scope, relabel};
use drivetag_server::labels::rules::Rules;
use drivetag_server::store::conformance::incoming;
use drivetag_server::store::registry::{OptIns, day_number};
use drivetag_server::store::{
    CampaignResponse, Customer, Import, PriceClass, ServiceVisit, Store, StoreRow, Vehicle,
    VisitKind,
};
use drivetag_shared::wire::{DaySummary, Uplink};
use drivetag_tests::{postgres_store, sqlite_store};

const HEAD: &str = "version = 1\n[settings]\nservice_interval_km = 5000\nservice_interval_months = 6\nmax_contacts = 2\ncontact_period_days = 30\n";

fn today() -> Day {
    Day::from_number(day_number("2026-06-15").unwrap())
}

fn date(days_before: i64) -> String {
    let day = jiff::civil::date(2026, 6, 15) - jiff::Span::new().days(days_before);
    day.to_string()
}

fn vehicle(vin: &str, customer: &str, price: PriceClass) -> Vehicle {
    Vehicle {
        vin: vin.into(),
        device_id: Some(format!("dev-{vin}")),
        make: "VW".into(),
        model: "Golf".into(),
        model_year: 2023,
        energy: "ice".into(),
        price_class: price,
        customer_id: Some(customer.into()),
        fleet_id: None,
        store_id: Some(1),
        purchase_date: Some("2023-03-01".into()),
        warranty_end: Some("2029-03-01".into()),
        service_interval_km: None,
        service_interval_months: None,
    }
}

fn customer(id: &str, opt_in: OptIns) -> Customer {
    Customer {
        id: id.into(),
        name: format!("Customer {id}"),
        phone: "+86 138".into(),
        email: format!("{id}@example.com"),
        wechat: id.into(),
        opt_in,
        birthday_month: Some(1),
        home_store_id: Some(1),
        fleet_id: None,
        referrals: 0,
    }
}

fn every_channel() -> OptIns {
    OptIns {
        push: true,
        sms: true,
        wechat: true,
        email: true,
        phone: true,
        mail: true,
    }
}

fn visit(vin: &str, days_before: i64, spend: f64, kind: VisitKind) -> ServiceVisit {
    ServiceVisit {
        vin: vin.into(),
        store_id: 1,
        date: date(days_before),
        spend_cents: (spend * 100.0) as i64,
        kind,
        odometer_km: None,
    }
}

/// A day summary of `km` with driving score `score`.
fn day_summary(days_before: i64, km: u32, score: u8, harsh: u16, long_trips: u16) -> Uplink {
    Uplink::Day(DaySummary {
        local_day: (today().number - days_before) as u32,
        utc_offset_min: 480,
        distance_m: km * 1000,
        trips: 2,
        long_trips,
        driving_s: km * 60,
        moving_s: km * 55,
        night_pct: 0,
        driving_min_by_local_hour: [0; 24],
        commute_trips: 0,
        max_speed_cms: 2_500,
        harsh_accel: harsh,
        harsh_brake: 0,
        harsh_corner: 0,
        overspeed_s: 0,
        score,
        odometer_m: None,
        energy: None,
    })
}

/// 30 days of driving for `vin`'s head unit.
async fn drive(
    store: &Store,
    vin: &str,
    km_per_day: u32,
    score: u8,
    harsh_per_day: u16,
    long_trips_total: u16,
) {
    let batch: Vec<_> = (0..30)
        .map(|d| {
            let long = if (d as u16) < long_trips_total { 1 } else { 0 };
            incoming(
                &format!("dev-{vin}"),
                d as u64 + 1,
                day_summary(d, km_per_day, score, harsh_per_day, long),
            )
        })
        .collect();
    store.ingest(&batch).await.unwrap();
}

async fn base_registry(store: &Store) {
    store
        .import(&Import::Stores(vec![StoreRow {
            id: 1,
            name: "Pudong 4S".into(),
            city: "Shanghai".into(),
            lat: 31.23,
            lon: 121.47,
            radius_m: 150.0,
        }]))
        .await
        .unwrap();
}

/// Writes a generated population of `customers` with `days` of summaries up to today;
/// returns the rows written.
async fn populate(store: &Store, customers: u64, days: u64) -> u64 {
    let size = drivetag_server::store::synthetic::Size {
        customers,
        days,
        today: today().number,
    };
    drivetag_server::store::synthetic::populate(store, size, |_, _, _| {})
        .await
        .unwrap()
}

async fn labels_of(store: &Store, group: &str) -> BTreeMap<String, String> {
    let rows = store.label_rows(group).await.unwrap();
    rows.into_iter().collect()
}

/// Ten customers V0..V9 who spent 100, 200, ... 1000 with us a month ago.
async fn ten_spenders(store: &Store) {
    base_registry(store).await;
    let spends = [
        100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0,
    ];
    let customers: Vec<Customer> = (0..10)
        .map(|i| customer(&format!("c{i}"), OptIns::default()))
        .collect();
    store.import(&Import::Customers(customers)).await.unwrap();
    let vehicles: Vec<Vehicle> = (0..10)
        .map(|i| vehicle(&format!("V{i}"), &format!("c{i}"), PriceClass::Mid))
        .collect();
    store.import(&Import::Vehicles(vehicles)).await.unwrap();
    let visits: Vec<ServiceVisit> = spends
        .iter()
        .enumerate()
        .map(|(i, s)| visit(&format!("V{i}"), 30, *s, VisitKind::Repair))
        .collect();
    store.import(&Import::ServiceVisits(visits)).await.unwrap();
}

/// Rules with one tier, "spend", of three levels with these shares.
fn spend_tiers(high: u32, mid: u32, low: u32) -> Rules {
    Rules::parse(
        &format!("{HEAD}[[tiers]]\ngroup = \"spend\"\nlevels = [{{ value = \"high\", share_pct = {high} }}, {{ value = \"mid\", share_pct = {mid} }}, {{ value = \"low\", share_pct = {low} }}]\nparts = [{{ feature = \"spend_12m\", weight = 1.0 }}]\n"),
        "tiers.toml",
    )
    .unwrap()
}

/// Ten customers by spend: exactly 3 / 4 / 3. A tie takes its last member's position, so a
/// level never holds more than its share.
async fn tiers_split_30_40_30(store: Store) {
    ten_spenders(&store).await;
    let rules = spend_tiers(30, 40, 30);
    relabel(&store, &rules, &Scope::All, today(), |_| {})
        .await
        .unwrap();
    let tiers = labels_of(&store, "spend").await;
    let level = |vin: &str| tiers.get(vin).cloned().unwrap_or_default();
    let count = |value: &str| tiers.values().filter(|v| *v == value).count();
    assert_eq!(
        (count("high"), count("mid"), count("low")),
        (3, 4, 3),
        "{tiers:?}"
    );
    assert_eq!(
        [level("V9"), level("V8"), level("V7")],
        ["high", "high", "high"]
    );
    assert_eq!([level("V6"), level("V3")], ["mid", "mid"]);
    assert_eq!([level("V2"), level("V0")], ["low", "low"]);
    // A tie across the boundary: V6 now spends as much as V7 (800). Together they hold
    // positions 3 and 4, so both are "mid" and "high" keeps fewer than its 30 %.
    store
        .import(&Import::ServiceVisits(vec![visit(
            "V6",
            20,
            100.0,
            VisitKind::Tyres,
        )]))
        .await
        .unwrap();
    relabel(&store, &rules, &Scope::All, today(), |_| {})
        .await
        .unwrap();
    let tiers = labels_of(&store, "spend").await;
    assert_eq!((tiers["V7"].as_str(), tiers["V6"].as_str()), ("mid", "mid"));
    assert_eq!(
        tiers.values().filter(|v| *v == "high").count(),
        2,
        "{tiers:?}"
    );
    // The explanation keeps the score, the rank and the population.
    let evidence = store.label_evidence("V9", "spend").await.unwrap();
    assert!(
        evidence.contains("\"rank\":1") && evidence.contains("\"of\":10"),
        "{evidence}"
    );
}

/// `rules check`'s preview counts, per label, who would gain and lose it under changed rules,
/// without touching the labels in force: 30/40/30 to 20/50/30 moves one customer from "high"
/// to "mid".
async fn a_preview_counts_what_a_rules_change_moves(store: Store) {
    ten_spenders(&store).await;
    relabel(
        &store,
        &spend_tiers(30, 40, 30),
        &Scope::All,
        today(),
        |_| {},
    )
    .await
    .unwrap();
    let before = labels_of(&store, "spend").await;
    let preview = drivetag_server::labels::preview(&store, &spend_tiers(20, 50, 30), today())
        .await
        .unwrap();
    let change = |value: &str| {
        let c = preview.labels[&("spend".to_owned(), value.to_owned())];
        (c.now, c.new, c.gained, c.lost)
    };
    assert_eq!(change("high"), (3, 2, 0, 1), "{preview:?}");
    assert_eq!(change("mid"), (4, 5, 1, 0), "{preview:?}");
    assert_eq!(change("low"), (3, 3, 0, 0), "{preview:?}");
    assert!(preview.strategies.is_empty(), "{preview:?}");
    assert_eq!(labels_of(&store, "spend").await, before);
}

/// A weighted score is the weighted sum of the parts' percentile ranks.
async fn weighted_scores_by_hand(store: Store) {
    base_registry(&store).await;
    store
        .import(&Import::Customers(vec![
            customer("a", OptIns::default()),
            customer("b", OptIns::default()),
            customer("c", OptIns::default()),
        ]))
        .await
        .unwrap();
    store
        .import(&Import::Vehicles(vec![
            vehicle("A", "a", PriceClass::Economy),
            vehicle("B", "b", PriceClass::Mid),
            vehicle("C", "c", PriceClass::Luxury),
        ]))
        .await
        .unwrap();
    store
        .import(&Import::ServiceVisits(vec![
            visit("A", 10, 100.0, VisitKind::Repair),
            visit("B", 10, 300.0, VisitKind::Repair),
            visit("C", 10, 200.0, VisitKind::Repair),
        ]))
        .await
        .unwrap();
    let rules = Rules::parse(
        &format!("{HEAD}[[tiers]]\ngroup = \"ability\"\nlevels = [{{ value = \"strong\", share_pct = 30 }}, {{ value = \"medium\", share_pct = 40 }}, {{ value = \"poor\", share_pct = 30 }}]\nparts = [{{ feature = \"price_class_rank\", weight = 0.5 }}, {{ feature = \"spend_12m\", weight = 0.5 }}]\n"),
        "weights.toml",
    )
    .unwrap();
    relabel(&store, &rules, &Scope::All, today(), |_| {})
        .await
        .unwrap();
    // Percentile ranks by hand: price A 0, B 0.5, C 1; spend A 0, B 1, C 0.5.
    let scores = store.tier_scores("ability").await.unwrap();
    let expected = [("A", 0.0), ("B", 0.75), ("C", 0.75)];
    for (vin, score) in expected {
        assert!(
            (scores[vin] - score).abs() < 1e-9,
            "{vin}: {} not {score}",
            scores[vin]
        );
    }
    // B and C tie for first, so both take position 2 of 3 (67 %): medium; A is poor.
    let tiers = labels_of(&store, "ability").await;
    assert_eq!(
        (
            tiers["A"].as_str(),
            tiers["B"].as_str(),
            tiers["C"].as_str()
        ),
        ("poor", "medium", "medium")
    );
}

/// Each default strategy fires for the customer built for it, and not for a customer built to
/// need nothing.
async fn every_strategy_fires_for_its_customer(store: Store) {
    base_registry(&store).await;
    let personas = [
        "lost",
        "due",
        "aggressive",
        "warranty",
        "ev",
        "road",
        "smooth",
        "trade",
        "golden",
        "quality",
        "fresh",
        "birthday",
        "control",
    ];
    let mut customers: Vec<Customer> = personas
        .iter()
        .map(|p| customer(p, every_channel()))
        .collect();
    for c in &mut customers {
        match c.id.as_str() {
            "golden" => c.referrals = 5,
            "birthday" => c.birthday_month = Some(6),
            _ => {}
        }
    }
    store.import(&Import::Customers(customers)).await.unwrap();
    let mut vehicles = Vec::new();
    for persona in personas {
        let mut v = vehicle(persona, persona, PriceClass::Mid);
        match persona {
            "warranty" => v.warranty_end = Some(date(-60)),
            "ev" => v.energy = "ev".into(),
            "trade" => {
                v.model_year = 2017;
                v.price_class = PriceClass::Luxury;
            }
            "fresh" => {
                v.purchase_date = Some(date(30));
                v.price_class = PriceClass::Luxury;
            }
            _ => {}
        }
        vehicles.push(v);
    }
    store.import(&Import::Vehicles(vehicles)).await.unwrap();
    let mut visits = Vec::new();
    for persona in personas {
        let (days_before, spend, kind) = match persona {
            "lost" => (600, 800.0, VisitKind::Maintenance),
            "due" => (170, 800.0, VisitKind::Maintenance),
            "quality" => (40, 6_000.0, VisitKind::Detailing),
            "golden" => (30, 900.0, VisitKind::Maintenance),
            _ => (60, 500.0, VisitKind::Maintenance),
        };
        visits.push(visit(persona, days_before, spend, kind));
    }
    store.import(&Import::ServiceVisits(visits)).await.unwrap();
    for persona in personas {
        let (km, score, harsh, long) = match persona {
            "lost" => (40, 75, 0, 0),
            "aggressive" => (30, 45, 2, 0),
            "road" => (60, 75, 0, 3),
            "smooth" => (30, 92, 0, 0),
            "trade" => (90, 75, 0, 0),
            _ => (20, 75, 0, 0),
        };
        drive(&store, persona, km, score, harsh, long).await;
    }
    relabel(&store, &Rules::defaults(), &Scope::All, today(), |_| {})
        .await
        .unwrap();
    let actions = store.action_rows().await.unwrap();
    let strategies_of = |vin: &str| -> BTreeSet<String> {
        actions
            .iter()
            .filter(|(v, _, _, _)| v == vin)
            .map(|(_, s, _, _)| s.clone())
            .collect()
    };
    let expect = [
        ("lost", "win_back"),
        ("due", "maintenance_reminder"),
        ("aggressive", "brake_tyre_check"),
        ("warranty", "extended_warranty"),
        ("ev", "ev_package"),
        ("road", "road_trip_check"),
        ("smooth", "insurance_safe_driver"),
        ("trade", "trade_in"),
        ("golden", "referral_programme"),
        ("quality", "care_membership"),
        ("fresh", "accessories"),
        ("birthday", "birthday_care"),
    ];
    let control = strategies_of("control");
    for (persona, strategy) in expect {
        assert!(
            strategies_of(persona).contains(strategy),
            "{persona} lacks {strategy}: {:?}",
            strategies_of(persona)
        );
        assert!(
            !control.contains(strategy),
            "the control customer got {strategy}"
        );
    }
    assert!(
        control.is_empty(),
        "the control customer needs nothing: {control:?}"
    );
    // Highest priority first: the lost customer's first action is the win-back.
    let first = actions
        .iter()
        .find(|(v, _, rank, _)| v == "lost" && *rank == 1)
        .unwrap();
    assert_eq!(first.1, "win_back");
    let lifecycle = labels_of(&store, "lifecycle").await;
    assert_eq!(lifecycle["lost"], "lost");
    assert_eq!(lifecycle["golden"], "golden_apple");
    assert_eq!(labels_of(&store, "style").await["aggressive"], "aggressive");
    // A label explains itself with the features its rule read.
    let evidence = store.label_evidence("lost", "lifecycle").await.unwrap();
    assert!(
        evidence.contains("\"months_since_service\":") && evidence.contains("\"km_30d\":1200"),
        "{evidence}"
    );
}

/// Contact caps hold back all but the top actions; a channel without consent is never chosen.
async fn caps_and_opt_outs(store: Store) {
    base_registry(&store).await;
    let quiet = OptIns {
        sms: true,
        ..OptIns::default()
    };
    let mut busy = customer("busy", every_channel());
    busy.birthday_month = Some(6);
    let mut contacted = customer("contacted", every_channel());
    contacted.birthday_month = Some(6);
    let mut silent = customer("silent", OptIns::default());
    silent.birthday_month = Some(6);
    let mut sms_only = customer("sms", quiet);
    sms_only.birthday_month = Some(6);
    store
        .import(&Import::Customers(vec![busy, contacted, silent, sms_only]))
        .await
        .unwrap();
    let mut vehicles = Vec::new();
    for id in ["busy", "contacted", "silent", "sms"] {
        let mut v = vehicle(id, id, PriceClass::Mid);
        v.energy = "ev".into();
        v.warranty_end = Some(date(-30));
        vehicles.push(v);
    }
    store.import(&Import::Vehicles(vehicles)).await.unwrap();
    // Serviced last month, so no maintenance reminder joins the test.
    let visits: Vec<ServiceVisit> = ["busy", "contacted", "silent", "sms"]
        .iter()
        .map(|id| visit(id, 30, 300.0, VisitKind::Maintenance))
        .collect();
    store.import(&Import::ServiceVisits(visits)).await.unwrap();
    store
        .import(&Import::CampaignResponses(vec![CampaignResponse {
            customer_id: "contacted".into(),
            campaign: "spring".into(),
            channel: "sms".into(),
            sent_date: date(5),
            responded: false,
        }]))
        .await
        .unwrap();
    relabel(&store, &Rules::defaults(), &Scope::All, today(), |_| {})
        .await
        .unwrap();
    let actions = store.action_rows().await.unwrap();
    let status = |vin: &str| -> Vec<(String, String, String)> {
        let mut rows: Vec<_> = actions.iter().filter(|(v, _, _, _)| v == vin).collect();
        rows.sort_by_key(|(_, _, rank, _)| *rank);
        rows.iter()
            .map(|(_, s, _, st)| (s.clone(), st.0.clone(), st.1.clone()))
            .collect()
    };
    // Extended warranty (75), EV package (70), birthday care (30): two planned, one capped.
    let busy = status("busy");
    assert_eq!(
        busy.iter().map(|(s, _, _)| s.as_str()).collect::<Vec<_>>(),
        ["extended_warranty", "ev_package", "birthday_care"]
    );
    assert_eq!(
        busy.iter()
            .map(|(_, _, st)| st.as_str())
            .collect::<Vec<_>>(),
        ["planned", "planned", "capped"]
    );
    assert_eq!(
        busy[0].1, "phone",
        "the first channel of extended_warranty the customer accepts"
    );
    // One campaign in the last 30 days leaves room for one.
    let contacted = status("contacted");
    assert_eq!(
        contacted
            .iter()
            .map(|(_, _, st)| st.as_str())
            .collect::<Vec<_>>(),
        ["planned", "capped", "capped"]
    );
    // No consent, no channel; SMS only: strategies without SMS have no channel.
    assert!(
        status("silent")
            .iter()
            .all(|(_, channel, st)| channel.is_empty() && st == "no_channel")
    );
    let sms = status("sms");
    let birthday = sms.iter().find(|(s, _, _)| s == "birthday_care").unwrap();
    assert_eq!(
        (birthday.1.as_str(), birthday.2.as_str()),
        ("sms", "planned")
    );
    let warranty = sms
        .iter()
        .find(|(s, _, _)| s == "extended_warranty")
        .unwrap();
    assert_eq!(warranty.2, "no_channel");
}

/// Relabelling one vehicle gives it what a full relabel gives it, but for percentile tiers:
/// its own score is the same, while the others' scores, which its change moves, wait for the
/// next full relabel.
async fn a_partial_relabel_agrees_with_a_full_one(store: Store) {
    base_registry(&store).await;
    let customers: Vec<Customer> = (0..6)
        .map(|i| customer(&format!("c{i}"), every_channel()))
        .collect();
    store.import(&Import::Customers(customers)).await.unwrap();
    let vehicles: Vec<Vehicle> = (0..6)
        .map(|i| vehicle(&format!("P{i}"), &format!("c{i}"), PriceClass::Mid))
        .collect();
    store.import(&Import::Vehicles(vehicles)).await.unwrap();
    for i in 0..6u32 {
        drive(
            &store,
            &format!("P{i}"),
            10 + 20 * i,
            50 + 8 * i as u8,
            0,
            0,
        )
        .await;
        store
            .import(&Import::ServiceVisits(vec![visit(
                &format!("P{i}"),
                100 + 40 * i64::from(i),
                200.0 * f64::from(i + 1),
                VisitKind::Maintenance,
            )]))
            .await
            .unwrap();
    }
    let rules = Rules::defaults();
    relabel(&store, &rules, &Scope::All, today(), |_| {})
        .await
        .unwrap();
    // P2 now drives far more: relabel only P2, then compare with a full relabel.
    let more: Vec<_> = (0..30)
        .map(|d| incoming("dev-P2", 100 + d, day_summary(d as i64, 200, 40, 3, 1)))
        .collect();
    store.ingest(&more).await.unwrap();
    relabel(&store, &rules, &Scope::Vin("P2".into()), today(), |_| {})
        .await
        .unwrap();
    let partial = store.labels_of_vin("P2").await.unwrap();
    let partial_score = store.tier_scores("consumption_ability").await.unwrap()["P2"];
    // The background labeller's scope (vehicles whose agents sent something since a time)
    // gives P2 the same score.
    let relabelled = relabel(&store, &rules, &Scope::ReceivedSince(0), today(), |_| {})
        .await
        .unwrap();
    assert_eq!(relabelled, 6);
    let since_score = store.tier_scores("consumption_ability").await.unwrap()["P2"];
    assert!((since_score - partial_score).abs() < 1e-9);
    relabel(&store, &rules, &Scope::All, today(), |_| {})
        .await
        .unwrap();
    let full = store.labels_of_vin("P2").await.unwrap();
    let full_score = store.tier_scores("consumption_ability").await.unwrap()["P2"];
    let tiers: Vec<&str> = rules.tiers.iter().map(|t| t.group.as_str()).collect();
    let without_tiers = |labels: &[(String, String)]| -> Vec<(String, String)> {
        labels
            .iter()
            .filter(|(g, _)| !tiers.contains(&g.as_str()))
            .cloned()
            .collect()
    };
    assert_eq!(without_tiers(&partial), without_tiers(&full));
    assert!(
        (partial_score - full_score).abs() < 1e-9,
        "{partial_score} vs {full_score}"
    );
    assert!(
        full.iter().any(|(g, v)| g == "style" && v == "aggressive"),
        "{full:?}"
    );
}

/// A generated population of a thousand customers relabels whole: three steps reported in
/// order, a lifecycle label for everyone, tiers within their shares, contiguous action ranks,
/// each vehicle's one-row label list equal to its labels, and the same result a second time.
async fn a_synthetic_population_relabels_whole(store: Store) {
    let day = today();
    let loaded = populate(&store, 1000, 10).await;
    assert!(loaded > 7000, "{loaded} rows");
    let rules = Rules::defaults();
    let mut steps = Vec::new();
    let vehicles = relabel(&store, &rules, &Scope::All, day, |step| {
        steps.push((step.number, step.name, step.rows))
    })
    .await
    .unwrap();
    assert_eq!(vehicles, 1000);
    let names: Vec<&str> = steps.iter().map(|(_, name, _)| *name).collect();
    assert_eq!(names, ["features", "ranks", "labels"]);
    assert_eq!(steps[0].2, 1000);
    assert_eq!(steps[1].2, 1000);
    assert_eq!(steps[2].2, 1000);
    let lists = store.label_lists().await.unwrap();
    assert_eq!(lists.len(), 1000);
    let firsts: BTreeMap<String, String> = store
        .action_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, _, rank, _)| *rank == 1)
        .map(|(vin, strategy, _, _)| (vin, strategy))
        .collect();
    assert!(firsts.len() > 500, "{} first actions", firsts.len());
    for (vin, (_, first)) in &lists {
        assert_eq!(first.as_ref(), firsts.get(vin), "{vin}");
    }
    for (vin, (list, _)) in lists.iter().step_by(37) {
        let rows: Vec<String> = store
            .labels_of_vin(vin)
            .await
            .unwrap()
            .into_iter()
            .map(|(group, value)| format!("{group}={value}"))
            .collect();
        assert!(rows.len() >= 6, "{vin}: {rows:?}");
        assert_eq!(list, &rows.join(" "), "{vin}");
    }
    assert_eq!(labels_of(&store, "lifecycle").await.len(), 1000);
    for tier in &rules.tiers {
        let labels = labels_of(&store, &tier.group).await;
        assert_eq!(labels.len(), 1000, "{}", tier.group);
        let (top, share) = &tier.levels[0];
        let count = labels.values().filter(|v| *v == top).count();
        // Ties only ever push a crowd down a level, never up.
        assert!(
            count as u32 <= share * 10 && count > 0,
            "{}: {count} at {top}",
            tier.group
        );
    }
    let actions = store.action_rows().await.unwrap();
    assert!(actions.len() > 1000, "{} actions", actions.len());
    let mut ranks: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    // One vehicle per customer here, so ranks count per vehicle.
    for (vin, _, rank, _) in &actions {
        ranks.entry(vin.clone()).or_default().push(*rank);
    }
    for (vin, mut ranks) in ranks {
        ranks.sort();
        let expected: Vec<i64> = (1..=ranks.len() as i64).collect();
        assert_eq!(ranks, expected, "{vin}");
    }
    exports_agree_with_the_labels(&store, &lists).await;
    // A partial relabel ranks against the rank points the full one kept: with the data
    // unchanged and fewer distinct values than points, it gives every tier score and tier
    // exactly what the full relabel gave.
    let mut full_tiers = BTreeMap::new();
    for tier in &rules.tiers {
        full_tiers.insert(
            tier.group.clone(),
            (
                store.tier_scores(&tier.group).await.unwrap(),
                labels_of(&store, &tier.group).await,
            ),
        );
    }
    for vin in lists.keys().step_by(97) {
        relabel(&store, &rules, &Scope::Vin(vin.clone()), day, |_| {})
            .await
            .unwrap();
        for (group, (scores, tiers)) in &full_tiers {
            let partial = store.tier_scores(group).await.unwrap()[vin];
            assert!(
                (partial - scores[vin]).abs() < 1e-9,
                "{vin} {group}: {partial} vs {}",
                scores[vin]
            );
            assert_eq!(
                labels_of(&store, group).await[vin],
                tiers[vin],
                "{vin} {group}"
            );
        }
    }
    let before = labels_of(&store, "lifecycle").await;
    relabel(&store, &rules, &Scope::All, day, |_| {})
        .await
        .unwrap();
    assert_eq!(labels_of(&store, "lifecycle").await, before);
    assert_eq!(store.action_rows().await.unwrap().len(), actions.len());
}

/// Exports every vehicle as CSV and as NDJSON in small chunks: one row per vehicle in VIN
/// order, each group's column holding the vehicle's labels of that group, the first action its
/// rank-1 strategy, both formats the same records; a filtered export holds exactly the
/// vehicles with that label.
async fn exports_agree_with_the_labels(
    store: &Store,
    lists: &BTreeMap<String, (String, Option<String>)>,
) {
    use drivetag_server::service::access::{Caller, Role};
    use drivetag_server::service::export::{Export, Format};
    let admin = Caller {
        key_id: "test".into(),
        role: Role::Admin,
    };
    let read = |format, filter: Option<&str>| {
        let (store, admin, filter) = (store.clone(), admin.clone(), filter.map(str::to_owned));
        async move {
            let mut export = Export::start_chunked(store, admin, filter, format, 4096)
                .await
                .unwrap();
            let columns = export.columns().to_vec();
            let (mut bytes, mut chunks) = (Vec::new(), 0);
            while let Some(chunk) = export.next_chunk().await.unwrap() {
                bytes.extend(chunk);
                chunks += 1;
            }
            (
                columns,
                String::from_utf8(bytes).unwrap(),
                chunks,
                export.rows,
            )
        }
    };
    let (columns, csv, chunks, rows) = read(Format::Csv, None).await;
    assert_eq!(rows, lists.len() as u64);
    assert!(chunks > 10, "{chunks} chunks");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, columns);
    let column = |name: &str| columns.iter().position(|c| c == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let vins: Vec<&str> = records.iter().map(|r| &r[0]).collect();
    assert_eq!(vins, lists.keys().map(String::as_str).collect::<Vec<_>>());
    for record in &records {
        let (list, first) = &lists[&record[0]];
        let mut expected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (group, value) in list.split(' ').filter_map(|l| l.split_once('=')) {
            expected.entry(group).or_default().push(value);
        }
        for (group, values) in &expected {
            assert_eq!(&record[column(group)], values.join(";"), "{}", &record[0]);
        }
        assert_eq!(
            &record[column("first_action")],
            first.as_deref().unwrap_or("")
        );
        let year: i32 = record[column("model_year")].parse().unwrap();
        assert!((2012..=2026).contains(&year), "{year}");
    }
    let (_, ndjson, _, ndjson_rows) = read(Format::Ndjson, None).await;
    assert_eq!(ndjson_rows, rows);
    for (line, record) in ndjson.lines().zip(&records) {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap();
        assert_eq!(object.len(), columns.len());
        for (name, value) in columns.iter().zip(record) {
            assert_eq!(object[name], value, "{name} of {}", &record[0]);
        }
    }
    let lost: Vec<&String> = lists
        .iter()
        .filter(|(_, (list, _))| list.split(' ').any(|l| l == "lifecycle=lost"))
        .map(|(vin, _)| vin)
        .collect();
    assert!(!lost.is_empty());
    let (_, filtered, _, filtered_rows) = read(Format::Csv, Some("lifecycle=lost")).await;
    assert_eq!(filtered_rows, lost.len() as u64);
    let filtered_vins: Vec<&str> = filtered
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(filtered_vins, lost);
}

/// A restarted labeller does not relabel everyone when the stored labels come from a recent
/// full relabel with the same rules; it does when the rules changed or the last full relabel
/// is older than `full_every`.
async fn a_restarted_labeller_relabels_everyone_only_when_due(store: Store) {
    use drivetag_server::labels::engine::LastFull;
    use std::time::Duration;
    populate(&store, 50, 3).await;
    let rules = Rules::defaults();
    let before = jiff::Timestamp::now().as_second();
    relabel(&store, &rules, &Scope::All, today(), |_| {})
        .await
        .unwrap();
    let first = LastFull::load(&store).await.unwrap().unwrap();
    assert_eq!(first.rules, rules.fingerprint());
    assert!(
        first.at_s >= before && first.at_s <= before + 60,
        "{first:?}"
    );
    // Runs a labeller until its first pass is over; returns the last full relabel then.
    let run_once = |rules: Rules| {
        let store = store.clone();
        async move {
            store.set_meta("labels.since", "").await.unwrap();
            let (stop, shutdown) = tokio::sync::watch::channel(false);
            let labeller = tokio::spawn(drivetag_server::labeller::run(
                store.clone(),
                rules,
                "UTC".into(),
                Duration::from_secs(3600),
                Duration::from_secs(24 * 3600),
                shutdown,
            ));
            let mut waited = 0;
            while store
                .meta("labels.since")
                .await
                .unwrap()
                .unwrap_or_default()
                .is_empty()
            {
                assert!(waited < 600, "the labeller never finished a pass");
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += 1;
            }
            let _ = stop.send(true);
            labeller.await.unwrap();
            LastFull::load(&store).await.unwrap().unwrap()
        }
    };
    // Same rules, recent full relabel: no full pass.
    assert_eq!(run_once(rules.clone()).await, first);
    // Other rules: a full pass, recorded with their fingerprint.
    let text = drivetag_server::labels::rules::DEFAULT_RULES
        .replacen("share_pct = 30 }", "share_pct = 20 }", 1)
        .replacen("share_pct = 40 }", "share_pct = 50 }", 1);
    let changed = Rules::parse(&text, "changed").unwrap();
    assert_ne!(changed.fingerprint(), rules.fingerprint());
    let second = run_once(changed.clone()).await;
    assert_eq!(second.rules, changed.fingerprint());
    // The same rules again, but the last full relabel two days old: a full pass.
    LastFull {
        at_s: before - 2 * 86_400,
        rules: changed.fingerprint(),
    }
    .save(&store)
    .await
    .unwrap();
    let third = run_once(changed.clone()).await;
    assert!(third.at_s >= before, "{third:?}");
}

/// A labeller whose full pass is due skips it while another server's full relabel with the same
/// rules is on record and recent: a vehicle whose dealer data changed keeps its old label. Once
/// nobody else relabels, its own full pass gives the vehicle its new label.
async fn a_labeller_skips_a_full_pass_another_server_just_did(store: Store) {
    use std::time::Duration;
    populate(&store, 200, 3).await;
    let rules = Rules::defaults();
    relabel(&store, &rules, &Scope::All, Day::today(), |_| {})
        .await
        .unwrap();
    let lifecycle = labels_of(&store, "lifecycle").await;
    let (vin, old) = lifecycle
        .iter()
        .find(|(_, value)| ["lost", "defected", "recently_lost"].contains(&value.as_str()))
        .map(|(vin, value)| (vin.clone(), value.clone()))
        .unwrap();
    // A visit last week: a full relabel moves the vehicle out of the lost ones; a partial
    // pass does not look at it (its agent sent nothing).
    let last_week = today().number - (Day::today().number - 7);
    store
        .import(&Import::ServiceVisits(vec![visit(
            &vin,
            last_week,
            500.0,
            VisitKind::Maintenance,
        )]))
        .await
        .unwrap();
    // Runs a labeller with a full pass due every 3 s for 5 s; with `other`, another server
    // records a full relabel with the same rules every 200 ms meanwhile.
    let run = |other: bool| {
        let (store, rules) = (store.clone(), rules.clone());
        async move {
            let (stop, shutdown) = tokio::sync::watch::channel(false);
            let labeller = tokio::spawn(drivetag_server::labeller::run(
                store.clone(),
                rules.clone(),
                "UTC".into(),
                Duration::from_secs(1),
                Duration::from_secs(3),
                shutdown,
            ));
            for _ in 0..25 {
                if other {
                    drivetag_server::labels::engine::LastFull {
                        at_s: jiff::Timestamp::now().as_second(),
                        rules: rules.fingerprint(),
                    }
                    .save(&store)
                    .await
                    .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = stop.send(true);
            labeller.await.unwrap();
        }
    };
    run(true).await;
    assert_eq!(labels_of(&store, "lifecycle").await[&vin], old);
    run(false).await;
    assert_ne!(labels_of(&store, "lifecycle").await[&vin], old);
}

/// Two full relabels at once (two servers' labellers, or one and `drivetag-server relabel`)
/// both succeed, one after the other, and leave what one alone leaves.
async fn concurrent_full_relabels_both_succeed(store: Store) {
    populate(&store, 300, 3).await;
    let rules = Rules::defaults();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (store, rules) = (store.clone(), rules.clone());
            tokio::spawn(async move { relabel(&store, &rules, &Scope::All, today(), |_| {}).await })
        })
        .collect();
    for run in runs {
        assert_eq!(run.await.unwrap().unwrap(), 300);
    }
    let lists = store.label_lists().await.unwrap();
    assert_eq!(lists.len(), 300);
    let before = labels_of(&store, "consumption_ability").await;
    assert_eq!(before.len(), 300);
    relabel(&store, &rules, &Scope::All, today(), |_| {})
        .await
        .unwrap();
    assert_eq!(labels_of(&store, "consumption_ability").await, before);
    assert_eq!(store.label_lists().await.unwrap(), lists);
}

macro_rules! on_both {
    ($($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let (store, _dir) = super::sqlite_store().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let Some(store) = super::postgres_store(stringify!($name)).await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}

on_both!(
    tiers_split_30_40_30,
    weighted_scores_by_hand,
    every_strategy_fires_for_its_customer,
    caps_and_opt_outs,
    a_partial_relabel_agrees_with_a_full_one,
    a_synthetic_population_relabels_whole,
    a_restarted_labeller_relabels_everyone_only_when_due,
    concurrent_full_relabels_both_succeed,
    a_labeller_skips_a_full_pass_another_server_just_did,
    a_preview_counts_what_a_rules_change_moves
);
