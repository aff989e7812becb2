use super::*;
use crate::store::conformance::{day, incoming, trip};

#[test]
fn a_batch_is_one_statement_per_table() {
    let batch: Vec<Incoming> = (1..=500)
        .map(|seq| {
            let body = if seq % 5 == 0 {
                day(20_000 + seq as u32 / 5, 1_000)
            } else {
                trip(1_000)
            };
            incoming(&format!("car-{}", seq % 7), seq, body)
        })
        .collect();
    let statements = batch_statements(&batch);
    let tables: Vec<&str> = statements
        .iter()
        .map(|s| s.sql.split_whitespace().nth(2).unwrap_or(""))
        .collect();
    assert_eq!(tables, ["envelopes", "trips", "days"]);
    let rows = |statement: &Statement| match &statement.params[0] {
        Value::Array(values) => values.len(),
        other => panic!("not an array: {other:?}"),
    };
    assert_eq!(
        statements.iter().map(rows).collect::<Vec<_>>(),
        [500, 400, 100]
    );
    assert!(statements[0].sql.ends_with("RETURNING device_id, seq"));
}

#[test]
fn summaries_of_one_day_collapse_to_the_newest() {
    let batch = [
        incoming("car-1", 3, day(20_000, 3_000)),
        incoming("car-1", 9, day(20_000, 9_000)),
        incoming("car-1", 5, day(20_000, 5_000)),
    ];
    let statements = batch_statements(&batch);
    let days = &statements[1];
    assert_eq!(days.params[2], Value::Array(vec![Value::Int(9)]));
    assert_eq!(days.params[4], Value::Array(vec![Value::Int(9_000)]));
}

#[test]
fn the_row_sql_is_what_the_tables_say() {
    assert_eq!(
        SQL.row[REPORTED_VEHICLES],
        "INSERT INTO reported_vehicles (device_id, seq, vin, make, model, model_year, energy, \
         odometer_m, agent_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (device_id) DO UPDATE SET seq = excluded.seq, vin = excluded.vin, \
         make = excluded.make, model = excluded.model, model_year = excluded.model_year, \
         energy = excluded.energy, odometer_m = excluded.odometer_m, \
         agent_version = excluded.agent_version WHERE excluded.seq > reported_vehicles.seq"
    );
}
