//! Assignment on plain data, and against the SQL engine on a generated population.

mod oracle;

use std::collections::BTreeMap;

use super::*;
use crate::labels::engine::{Day, Scope, relabel};
use crate::store::synthetic::{Size, populate};
use crate::store::{Store, Value};

const TEN: &str = r#"
version = 1
[settings]
service_interval_km = 5000
service_interval_months = 6
max_contacts = 1
contact_period_days = 30

[[tiers]]
group = "spend"
levels = [
  { value = "high", share_pct = 30 },
  { value = "mid", share_pct = 40 },
  { value = "low", share_pct = 30 },
]
parts = [{ feature = "spend_12m", weight = 1.0 }]

[[groups]]
name = "usage"
exclusive = false
rules = [
  { value = "far", when = "km_30d >= 1000" },
  { value = "busy", when = "km_30d >= 500" },
]

[[strategies]]
name = "thanks"
title = "Thank the big spenders"
when = "high"
priority = 10
channels = ["sms", "email"]

[[strategies]]
name = "check"
title = "A check for those who drive a lot"
when = "busy AND spend <> 'low'"
priority = 20
channels = ["push"]
"#;

fn subject(vin: &str, spend: f64, km: f64) -> Subject {
    let mut features = vec![None; FEATURES.len()];
    features[feature_index("spend_12m").unwrap()] = Some(spend);
    features[feature_index("km_30d").unwrap()] = Some(km);
    Subject {
        vin: vin.into(),
        customer: Some(format!("c-{vin}")),
        has_device: true,
        features,
        energy: Some("ice".into()),
        consents: [false, true, false, true, false, false],
        recent_contacts: 0,
    }
}

fn names(rules: &Rules, assigned: &Assigned) -> Vec<String> {
    let values = rules.label_values();
    assigned
        .labels
        .iter()
        .map(|l| values[l.value].1.to_owned())
        .collect()
}

#[test]
fn ten_customers_split_three_four_three_and_strategies_rank_and_cap() {
    let rules = Rules::parse(TEN, "ten.toml").unwrap();
    let subjects: Vec<Subject> = (0..10)
        .map(|i| subject(&format!("v{i}"), f64::from(i) * 100.0, f64::from(i) * 120.0))
        .collect();
    let assigner = Assigner::new(&rules, [20_000, 6, 2026], |f| column(&subjects, f)).unwrap();
    let tiers: Vec<String> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| names(&rules, &assigner.customer(&[(i, s)])[0])[0].clone())
        .collect();
    assert_eq!(
        tiers,
        [
            "low", "low", "low", "mid", "mid", "mid", "mid", "high", "high", "high"
        ]
    );
    // v9: high, far and busy. "check" (20) ranks above "thanks" (10), but push has no
    // consent and "check" gets no channel; "thanks" goes by SMS, within the cap of one.
    let v9 = &assigner.customer(&[(9, &subjects[9])])[0];
    assert_eq!(names(&rules, v9), ["high", "far", "busy"]);
    let tier = &v9.labels[0].source;
    assert_eq!(
        *tier,
        Source::Tier {
            score: 1.0,
            rank: 1,
            of: 10
        }
    );
    assert_eq!(
        v9.actions,
        [
            Action {
                strategy: 1,
                rank: 1,
                channel: None,
                status: Status::NoChannel
            },
            Action {
                strategy: 0,
                rank: 2,
                channel: Some(1),
                status: Status::Planned
            }
        ]
    );
    // Two vehicles of one customer share the cap of one: the second "thanks" is capped.
    let mut pair = vec![subjects[8].clone(), subjects[9].clone()];
    for s in &mut pair {
        s.customer = Some("fleet".into());
    }
    let both = assigner.customer(&[(8, &pair[0]), (9, &pair[1])]);
    let statuses: Vec<(usize, Status)> = both
        .iter()
        .flat_map(|a| a.actions.iter().map(|x| (x.rank, x.status)))
        .collect();
    assert!(statuses.contains(&(3, Status::Planned)), "{statuses:?}");
    assert!(statuses.contains(&(4, Status::Capped)), "{statuses:?}");
}

/// The same keys, the same texts, and numbers equal to the last few bits (SQLite writes 15
/// significant digits).
fn same_evidence(mine: &serde_json::Value, sql: &serde_json::Value, key: &(String, String)) {
    let (Some(mine), Some(sql)) = (mine.as_object(), sql.as_object()) else {
        panic!("{key:?}: {mine} against {sql}");
    };
    assert_eq!(
        mine.keys().collect::<Vec<_>>(),
        sql.keys().collect::<Vec<_>>(),
        "{key:?}"
    );
    for (name, value) in mine {
        match (value.as_f64(), sql[name].as_f64()) {
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                "{key:?} {name}: {a} against {b}"
            ),
            _ => assert_eq!(value, &sql[name], "{key:?} {name}"),
        }
    }
}

fn real(row: &[Value], i: usize) -> Option<f64> {
    row.get(i).and_then(Value::real)
}

/// A SQLite store in a temporary directory (kept alive by the first value) holding a generated
/// population of `customers` with `days` of summaries each, up to the day returned.
async fn generated(customers: u64, days: u64) -> (tempfile::TempDir, Store, Day) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("generated.sqlite").display()
    ))
    .await
    .unwrap();
    let day = Day::from_number(20_600);
    populate(
        &store,
        Size {
            customers,
            days,
            today: day.number,
        },
        |_, _, _| {},
    )
    .await
    .unwrap();
    (dir, store, day)
}

/// The SQL engine's labels and actions for every vehicle of a generated population, and the
/// assigner's from the same profiles: the same, vehicle for vehicle.
#[tokio::test]
async fn the_assigner_agrees_with_the_sql_engine() {
    let (_dir, store, day) = generated(3_000, 3).await;
    let rules = Rules::defaults();
    relabel(&store, &rules, &Scope::All, day, |_| {})
        .await
        .unwrap();

    // The features the server computed from the inputs it gathered, and kept with the labels,
    // are the ones SQL computes.
    store.execute(oracle::create()).await.unwrap();
    store
        .execute(vec![oracle::profile_statement(
            &rules,
            oracle::ORACLE.profiles,
            store.dialect(),
            day,
        )])
        .await
        .unwrap();
    let intervals = (
        rules.settings.service_interval_km,
        rules.settings.service_interval_months,
    );
    let mine = crate::labels::engine::all_features(&store, day, intervals)
        .await
        .unwrap();
    let sql = store
        .query("SELECT * FROM oracle_profiles ORDER BY vin", vec![])
        .await
        .unwrap();
    assert_eq!(mine.len(), 3_000);
    assert_eq!(mine.len(), sql.len());
    let mut compared = 0;
    for ((vin, features), b) in mine.iter().zip(&sql) {
        assert_eq!(Some(vin.as_str()), b[0].text());
        // What the relabel kept with the labels is what it computed.
        let kept = store
            .query(
                "SELECT features FROM vehicle_labels WHERE vin = $1",
                vec![vin.as_str().into()],
            )
            .await
            .unwrap();
        let kept = crate::labels::features::decode(kept[0][0].bytes().unwrap());
        assert_eq!(&kept[1..], &features[1..], "{vin}");
        for (i, (x, y)) in features.iter().zip(&b[6..]).enumerate().skip(1) {
            let name = FEATURES[i].name;
            match (x, y.real()) {
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                    "{vin} {name}: {x} against {y}"
                ),
                (x, y) => assert_eq!(*x, y, "{vin} {name}"),
            }
            compared += usize::from(x.is_some());
        }
    }
    assert!(compared > 100_000, "{compared} values");

    let columns: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
    let channels: Vec<String> = CHANNELS
        .iter()
        .map(|c| format!("COALESCE(c.{c}_opt_in, FALSE)"))
        .collect();
    let rows = store
        .query(
            format!(
                "SELECT p.vin, p.customer_id, p.device_id, \
                 (SELECT COUNT(*) FROM campaign_responses cr WHERE cr.customer_id = p.customer_id \
                  AND cr.sent_day > {}), {}, {} \
                 FROM oracle_profiles p LEFT JOIN customers c ON c.id = p.customer_id ORDER BY p.vin",
                day.number - i64::from(rules.settings.contact_period_days),
                channels.join(", "),
                columns
                    .iter()
                    .map(|c| format!("p.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            vec![],
        )
        .await
        .unwrap();
    let first = 4 + CHANNELS.len();
    let subjects: Vec<Subject> = rows
        .iter()
        .map(|row| {
            let mut consents = [false; CHANNELS.len()];
            for (c, consent) in consents.iter_mut().enumerate() {
                *consent = row[4 + c].bool().or(row[4 + c].int().map(|i| i != 0)) == Some(true);
            }
            Subject {
                vin: row[0].text().unwrap().to_owned(),
                customer: row[1].text().map(str::to_owned),
                has_device: row[2].text().is_some(),
                features: (0..FEATURES.len())
                    .map(|i| if i == 0 { None } else { real(row, first + i) })
                    .collect(),
                energy: row[first].text().map(str::to_owned),
                consents,
                recent_contacts: row[3].int().unwrap() as u32,
            }
        })
        .collect();
    assert_eq!(subjects.len(), 3_000);
    let assigner = Assigner::new(&rules, [day.number, day.month, day.year], |f| {
        column(&subjects, f)
    })
    .unwrap();
    store
        .execute(oracle::statements(&rules, store.dialect(), day))
        .await
        .unwrap();
    let stored = store.stored_labels().await.unwrap();

    let mut sql_labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in store
        .query(
            "SELECT vin, grp || '=' || value FROM oracle_labels ORDER BY vin, grp, value",
            vec![],
        )
        .await
        .unwrap()
    {
        sql_labels
            .entry(row[0].text().unwrap().to_owned())
            .or_default()
            .push(row[1].text().unwrap().to_owned());
    }
    // Each label's rule in words and its evidence, by (vin, group=value).
    let mut sql_explained: BTreeMap<(String, String), (String, serde_json::Value)> =
        BTreeMap::new();
    for row in store
        .query(
            "SELECT vin, grp || '=' || value, rule, evidence FROM oracle_labels",
            vec![],
        )
        .await
        .unwrap()
    {
        sql_explained.insert(
            (
                row[0].text().unwrap().to_owned(),
                row[1].text().unwrap().to_owned(),
            ),
            (
                row[2].text().unwrap().to_owned(),
                serde_json::from_str(row[3].text().unwrap()).unwrap(),
            ),
        );
    }
    let mut sql_actions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in store
        .query(
            "SELECT vin, strategy || ' ' || CAST(rank AS TEXT) || ' ' || COALESCE(channel, '-') \
             || ' ' || status FROM oracle_actions ORDER BY vin, rank",
            vec![],
        )
        .await
        .unwrap()
    {
        sql_actions
            .entry(row[0].text().unwrap().to_owned())
            .or_default()
            .push(row[1].text().unwrap().to_owned());
    }

    let values = rules.label_values();
    let (mut labels_checked, mut actions_checked) = (0, 0);
    // One vehicle per customer in this population, so each is its own customer group.
    for (position, subject) in subjects.iter().enumerate() {
        let assigned = &assigner.customer(&[(position, subject)])[0];
        let mut mine: Vec<String> = assigned
            .labels
            .iter()
            .map(|l| format!("{}={}", values[l.value].0, values[l.value].1))
            .collect();
        mine.sort();
        assert_eq!(
            Some(&mine),
            sql_labels.get(&subject.vin),
            "labels of {}",
            subject.vin
        );
        labels_checked += mine.len();
        for label in &assigned.labels {
            let key = (
                subject.vin.clone(),
                format!("{}={}", values[label.value].0, values[label.value].1),
            );
            let (rule, evidence) = assigner.explain(label, subject);
            let (sql_rule, sql_evidence) = &sql_explained[&key];
            assert_eq!(&rule, sql_rule, "{key:?}");
            same_evidence(&evidence, sql_evidence, &key);
        }
        let actions: Vec<String> = assigned
            .actions
            .iter()
            .map(|a| {
                format!(
                    "{} {} {} {}",
                    rules.strategies[a.strategy].name,
                    a.rank,
                    a.channel.map_or("-", |c| CHANNELS[c]),
                    a.status.as_str()
                )
            })
            .collect();
        assert_eq!(
            actions,
            sql_actions.get(&subject.vin).cloned().unwrap_or_default(),
            "actions of {}",
            subject.vin
        );
        actions_checked += actions.len();
        // What the relabel stored for the vehicle is what the assigner gives here.
        let row = &stored[&subject.vin];
        let stored_labels: Vec<String> = row
            .labels
            .iter()
            .map(|(g, v, _)| format!("{g}={v}"))
            .collect();
        assert_eq!(stored_labels, mine, "stored labels of {}", subject.vin);
        let stored_actions: Vec<String> = row
            .actions
            .iter()
            .map(|a| {
                format!(
                    "{} {} {} {}",
                    a.strategy,
                    a.rank,
                    a.channel.as_deref().unwrap_or("-"),
                    a.status
                )
            })
            .collect();
        assert_eq!(stored_actions, actions, "stored actions of {}", subject.vin);
    }
    assert_eq!(stored.len(), subjects.len());
    // The population exercises every group: thousands of labels and actions compared.
    assert!(labels_checked > 20_000, "{labels_checked}");
    assert!(actions_checked > 3_000, "{actions_checked}");
}

/// A relabel whose write fails half-way leaves the labels in force as they were: its rows go
/// in one transaction, which the failure rolls back.
#[tokio::test]
async fn a_failed_write_keeps_the_labels_in_force() {
    let (_dir, store, day) = generated(1_500, 2).await;
    let rules = Rules::defaults();
    relabel(&store, &rules, &Scope::All, day, |_| {})
        .await
        .unwrap();
    let before = store.label_lists().await.unwrap();
    assert_eq!(before.len(), 1_500);
    // The catalog is written last, after every vehicle's row: without its table, the write
    // fails at its very end.
    store
        .execute(vec![crate::store::Statement::new(
            "DROP TABLE rule_catalogs",
            vec![],
        )])
        .await
        .unwrap();
    let failed = relabel(
        &store,
        &rules,
        &Scope::All,
        Day::from_number(20_700),
        |_| {},
    )
    .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(store.label_lists().await.unwrap(), before);
}

/// A relabel waits for the relabel lock before it reads anything: one that read before
/// another wrote would put older labels over newer ones.
#[tokio::test]
async fn a_relabel_waits_for_the_one_before() {
    let (_dir, store, day) = generated(200, 1).await;
    let held = store.relabel_lock().await.unwrap();
    let waiting = {
        let store = store.clone();
        tokio::spawn(
            async move { relabel(&store, &Rules::defaults(), &Scope::All, day, |_| {}).await },
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a relabel ran while another held the lock"
    );
    assert!(store.label_lists().await.unwrap().is_empty());
    drop(held);
    assert_eq!(waiting.await.unwrap().unwrap(), 200);
    assert_eq!(store.label_lists().await.unwrap().len(), 200);
}
