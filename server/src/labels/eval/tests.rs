//! The evaluator against SQLite running the same conditions compiled to SQL, on random
//! vehicles: every rule and strategy of the shipped rules, and conditions built to hit NULL
//! logic, integer division, division by zero, BETWEEN, IN and COALESCE.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::labels::features::{CONTEXT, FEATURES};
use crate::labels::rules::Rules;

const TRICKY: &str = r#"
version = 1
[settings]
service_interval_km = 5000
service_interval_months = 6
max_contacts = 2
contact_period_days = 30

[[groups]]
name = "tricky"
exclusive = false
rules = [
  { value = "t01", when = "km_30d / 0 > 1 OR km_30d IS NULL" },
  { value = "t02", when = "7 / 2 = 3 AND -7 / 2 = -3 AND 7.0 / 2 = 3.5" },
  { value = "t03", when = "km_30d BETWEEN 10 AND NULL" },
  { value = "t04", when = "km_30d IN (1, NULL, 3)" },
  { value = "t05", when = "km_30d NOT IN (1, NULL)" },
  { value = "t06", when = "NOT (km_30d > 5 AND trips_30d < 3)" },
  { value = "t07", when = "COALESCE(km_30d, trips_30d, 0) >= 2" },
  { value = "t08", when = "energy = 'ev' OR energy IN ('hev', 'phev')" },
  { value = "t09", when = "km_30d * 2 - trips_30d / 3 > 1.5" },
  { value = "t10", when = "-km_30d < -3 AND +trips_30d >= 0" },
  { value = "t11", when = "energy <> 'ev'" },
  { value = "t12", when = "km_30d NOT BETWEEN 1 AND 50" },
  { value = "t13", when = "NOT (km_30d IS NOT NULL) OR trips_30d IS NULL" },
  { value = "t14", when = "km_30d / trips_30d >= 2" },
  { value = "t15", when = "(km_30d > 100 OR trips_30d > 100) AND NOT trips_30d = 0" },
  { value = "t16", when = "today - 30 > 0 AND current_month BETWEEN 1 AND 12 AND current_year > 2000" },
  { value = "t17", when = "km_30d = trips_30d OR km_30d <> km_30d" },
  { value = "t18", when = "COALESCE(NULL, energy) = 'ice'" },
]
"#;

/// One random vehicle: features, labels, exclusive groups' values.
struct Random {
    features: Vec<Option<f64>>,
    energy: Option<String>,
    labels: Vec<bool>,
    groups: Vec<Option<String>>,
}

const CONTEXT_VALUES: [i64; 3] = [20_000, 11, 2026];

impl Vehicle for Random {
    fn get(&self, slot: Slot) -> Val<'_> {
        match slot {
            Slot::Feature(0) => self
                .energy
                .as_deref()
                .map_or(Val::Null, |e| Val::Text(Cow::Borrowed(e))),
            Slot::Feature(i) => self.features[i].map_or(Val::Null, Val::Real),
            Slot::Context(i) => Val::Int(CONTEXT_VALUES[i]),
            Slot::Label(i) => Val::Bool(self.labels[i]),
            Slot::Group(i) => self.groups[i]
                .as_deref()
                .map_or(Val::Null, |g| Val::Text(Cow::Borrowed(g))),
        }
    }
}

/// NULL a fifth of the time; else a small integer (thresholds, zero, equality) or a fraction
/// (shares).
fn value(rng: &mut SmallRng) -> Option<f64> {
    match rng.random_range(0..10) {
        0 | 1 => None,
        2 => Some(f64::from(rng.random_range(0..1000_u32)) / 1000.0),
        3 => Some(-f64::from(rng.random_range(0..6_u32))),
        _ => Some(f64::from(rng.random_range(0..400_u32))),
    }
}

/// `groups`: each exclusive group's label values.
fn random(rng: &mut SmallRng, labels: &[(&str, &str)], groups: &[Vec<&str>]) -> Random {
    let energies = ["ice", "hev", "phev", "ev"];
    let labels: Vec<bool> = labels.iter().map(|_| rng.random_ratio(1, 3)).collect();
    let groups = groups
        .iter()
        .map(|values| {
            let pick = rng.random_range(0..=values.len());
            values.get(pick).map(|v| (*v).to_owned())
        })
        .collect();
    Random {
        features: (0..FEATURES.len()).map(|_| value(rng)).collect(),
        energy: match rng.random_range(0..5_usize) {
            0 => None,
            i => Some(energies[i - 1].to_owned()),
        },
        labels,
        groups,
    }
}

/// SQLite's answer for each vehicle: `Some(true)`, `Some(false)` or unknown.
fn sqlite_answers(db: &rusqlite::Connection, sql: &str) -> Vec<Option<bool>> {
    let query =
        format!("SELECT CASE WHEN {sql} THEN 1 WHEN NOT ({sql}) THEN 0 END FROM p ORDER BY id");
    let mut statement = db.prepare(&query).unwrap();
    statement
        .query_map([], |row| row.get::<_, Option<i64>>(0))
        .unwrap()
        .map(|answer| answer.unwrap().map(|a| a == 1))
        .collect()
}

fn agree_on(rules: &Rules, vehicles: usize) -> usize {
    let defaults = Rules::defaults();
    let label_values = defaults.label_values();
    let groups = defaults.exclusive_groups();
    let group_values: Vec<Vec<&str>> = groups
        .iter()
        .map(|group| {
            label_values
                .iter()
                .filter(|(g, _)| g == group)
                .map(|(_, v)| *v)
                .collect()
        })
        .collect();
    let mut rng = SmallRng::seed_from_u64(7);
    let all: Vec<Random> = (0..vehicles)
        .map(|_| random(&mut rng, &label_values, &group_values))
        .collect();

    let db = rusqlite::Connection::open_in_memory().unwrap();
    let mut columns = vec!["id INTEGER PRIMARY KEY".to_owned()];
    columns.extend(
        FEATURES
            .iter()
            .map(|f| format!("{} {}", f.name, if f.text { "TEXT" } else { "REAL" })),
    );
    columns.extend(label_values.iter().map(|(_, v)| format!("{v} INTEGER")));
    columns.extend(groups.iter().map(|g| format!("{g} TEXT")));
    db.execute_batch(&format!("CREATE TABLE p ({})", columns.join(", ")))
        .unwrap();
    let placeholders = vec!["?"; columns.len()].join(", ");
    let mut insert = db
        .prepare(&format!("INSERT INTO p VALUES ({placeholders})"))
        .unwrap();
    for (id, vehicle) in all.iter().enumerate() {
        let mut values: Vec<rusqlite::types::Value> = vec![(id as i64).into()];
        values.push(vehicle.energy.clone().into());
        values.extend(vehicle.features[1..].iter().map(|f| (*f).into()));
        values.extend(vehicle.labels.iter().map(|l| i64::from(*l).into()));
        values.extend(vehicle.groups.iter().map(|g| g.clone().into()));
        insert.execute(rusqlite::params_from_iter(values)).unwrap();
    }

    let resolve = |name: &str| -> Option<Slot> {
        if let Some(i) = FEATURES.iter().position(|f| f.name == name) {
            Some(Slot::Feature(i))
        } else if let Some(i) = CONTEXT.iter().position(|(c, _)| *c == name) {
            Some(Slot::Context(i))
        } else if let Some(i) = label_values.iter().position(|(_, v)| *v == name) {
            Some(Slot::Label(i))
        } else {
            groups.iter().position(|g| *g == name).map(Slot::Group)
        }
    };
    let mut conditions: Vec<&Condition> = rules
        .groups
        .iter()
        .flat_map(|g| g.rules.iter().map(|r| &r.when))
        .collect();
    conditions.extend(rules.strategies.iter().map(|s| &s.when));
    let mut checked = 0;
    for condition in conditions {
        let sql = condition
            .sql(&mut |name| {
                Ok(match CONTEXT.iter().position(|(c, _)| *c == name) {
                    Some(i) => CONTEXT_VALUES[i].to_string(),
                    None => format!("p.{name}"),
                })
            })
            .unwrap();
        let program = Program::compile(condition, &resolve).unwrap();
        let expected = sqlite_answers(&db, &sql);
        for (vehicle, expected) in all.iter().zip(&expected) {
            assert_eq!(
                program.eval(vehicle).truth(),
                *expected,
                "{} on features {:?}, energy {:?}",
                condition.text,
                vehicle.features,
                vehicle.energy
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_shipped_condition_agrees_with_sqlite() {
    let checked = agree_on(&Rules::defaults(), 3_000);
    let rules = Rules::defaults();
    let conditions =
        rules.groups.iter().map(|g| g.rules.len()).sum::<usize>() + rules.strategies.len();
    assert_eq!(checked, conditions * 3_000);
}

#[test]
fn null_logic_division_and_lists_agree_with_sqlite() {
    let rules = Rules::parse(TRICKY, "tricky.toml").unwrap();
    assert_eq!(agree_on(&rules, 3_000), 18 * 3_000);
}

#[test]
fn three_valued_logic_by_hand() {
    let rules = Rules::parse(TRICKY, "tricky.toml").unwrap();
    let resolve = |name: &str| {
        FEATURES
            .iter()
            .position(|f| f.name == name)
            .map(Slot::Feature)
    };
    let program = |value: &str| {
        let rule = rules.groups[0]
            .rules
            .iter()
            .find(|r| r.value == value)
            .unwrap();
        Program::compile(&rule.when, &resolve).unwrap()
    };
    let km = FEATURES.iter().position(|f| f.name == "km_30d").unwrap();
    let vehicle = |km_30d: Option<f64>| {
        let mut features = vec![None; FEATURES.len()];
        features[km] = km_30d;
        Random {
            features,
            energy: None,
            labels: vec![],
            groups: vec![],
        }
    };
    // 5 IN (1, NULL, 3) is unknown, 1 IN (...) true; NOT IN with a NULL is never true.
    assert_eq!(program("t04").eval(&vehicle(Some(5.0))), Val::Null);
    assert_eq!(program("t04").eval(&vehicle(Some(1.0))), Val::Bool(true));
    assert!(!program("t05").holds(&vehicle(Some(5.0))));
    // A division by zero is unknown, and OR with a TRUE is TRUE.
    assert!(program("t01").holds(&vehicle(None)));
    assert_eq!(program("t01").eval(&vehicle(Some(4.0))), Val::Null);
    assert!(program("t02").holds(&vehicle(None)));
}
