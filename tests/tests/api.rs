//! The HTTP API over real HTTP, on SQLite and PostgreSQL: every route answers and is in the
//! OpenAPI document, every tenant sees only its own rows, bad input gets a clear 4xx.
#![allow(clippy::unwrap_used)] // Tests may panic on what they did not expect.

use std::collections::BTreeSet;

use drivetag_server::config::ServerConfig;
use drivetag_server::labels::engine::{Day, Scope, relabel};
use drivetag_server::labels::rules::Rules;
use drivetag_server::service::access::{Keys, Role};
use drivetag_server::store::registry::OptIns;
use drivetag_server::store::{Customer, Fleet, Import, PriceClass, Store, StoreRow, Vehicle};
use drivetag_tests::{free_port, unique};
use reqwest::StatusCode;
use serde_json::Value;

struct Api {
    base: String,
    client: reqwest::Client,
    admin: String,
    store1: String,
    fleet1: String,
    store: Store,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn vehicle(vin: &str, customer: &str, fleet: Option<&str>, store: i64) -> Vehicle {
    Vehicle {
        vin: vin.into(),
        device_id: None,
        make: "VW".into(),
        model: "Passat".into(),
        model_year: 2021,
        energy: "ice".into(),
        price_class: PriceClass::Mid,
        customer_id: Some(customer.into()),
        fleet_id: fleet.map(str::to_owned),
        store_id: Some(store),
        purchase_date: Some("2021-04-01".into()),
        warranty_end: Some("2027-04-01".into()),
        service_interval_km: None,
        service_interval_months: None,
    }
}

fn customer(id: &str, fleet: Option<&str>, store: i64) -> Customer {
    Customer {
        id: id.into(),
        name: format!("Driver {id}"),
        phone: "+86".into(),
        email: String::new(),
        wechat: String::new(),
        opt_in: OptIns {
            sms: true,
            wechat: true,
            ..OptIns::default()
        },
        birthday_month: Some(3),
        home_store_id: Some(store),
        fleet_id: fleet.map(str::to_owned),
        referrals: 0,
    }
}

/// Two stores, two fleets, private customers; labelled with the default rules.
async fn start(database: Option<String>, rate_per_s: u32) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.database.url =
        database.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("api.sqlite").display()));
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.http.rate_per_s = rate_per_s;
    config.mqtt.embedded_listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.mqtt.share_group = unique("g");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (running, _) = drivetag_server::serve::start(&config, stop_rx)
        .await
        .unwrap();
    let store = running.store.clone();
    store
        .import(&Import::Stores(vec![
            StoreRow {
                id: 1,
                name: "North".into(),
                city: "Shanghai".into(),
                lat: 31.3,
                lon: 121.5,
                radius_m: 150.0,
            },
            StoreRow {
                id: 2,
                name: "South".into(),
                city: "Shanghai".into(),
                lat: 31.1,
                lon: 121.4,
                radius_m: 150.0,
            },
        ]))
        .await
        .unwrap();
    store
        .import(&Import::Fleets(vec![
            Fleet {
                id: "f1".into(),
                name: "Taxi One".into(),
            },
            Fleet {
                id: "f2".into(),
                name: "Taxi Two".into(),
            },
        ]))
        .await
        .unwrap();
    store
        .import(&Import::Customers(vec![
            customer("d1", Some("f1"), 1),
            customer("d2", Some("f2"), 2),
            customer("p1", None, 1),
            customer("p2", None, 2),
        ]))
        .await
        .unwrap();
    store
        .import(&Import::Vehicles(vec![
            vehicle("F1-CAR", "d1", Some("f1"), 1),
            vehicle("F2-CAR", "d2", Some("f2"), 2),
            vehicle("P1-CAR", "p1", None, 1),
            vehicle("P2-CAR", "p2", None, 2),
        ]))
        .await
        .unwrap();
    relabel(
        &store,
        &Rules::defaults(),
        &Scope::All,
        Day::today(),
        |_| {},
    )
    .await
    .unwrap();
    let admin = Keys::create(&store, &Role::Admin, "admin").await.unwrap();
    let store1 = Keys::create(&store, &Role::Store(1), "store 1")
        .await
        .unwrap();
    let fleet1 = Keys::create(&store, &Role::Fleet("f1".into()), "fleet 1")
        .await
        .unwrap();
    Api {
        base: format!("http://{}", running.http),
        client: reqwest::Client::new(),
        admin,
        store1,
        fleet1,
        store,
        _stop: stop,
        _dir: dir,
    }
}

impl Api {
    async fn get(&self, key: Option<&str>, path: &str) -> (StatusCode, String) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn post(
        &self,
        key: &str,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn code(body: &str) -> String {
    json(body)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn vins(body: &str) -> BTreeSet<String> {
    json(body)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vin"].as_str().unwrap().to_owned())
        .collect()
}

async fn every_route_is_documented_and_answers(api: &Api) {
    let (status, body) = api.get(None, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let doc = json(&body);
    let paths: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let expected: BTreeSet<String> = [
        "/healthz",
        "/metrics",
        "/api/v1/vehicles",
        "/api/v1/vehicles/{vin}",
        "/api/v1/customers",
        "/api/v1/customers/{id}",
        "/api/v1/customers/{id}/labels",
        "/api/v1/customers/{id}/responses",
        "/api/v1/stores/{id}/label-distribution",
        "/api/v1/dead-letters",
        "/api/v1/exports/vehicles.csv",
        "/api/v1/exports/vehicles.ndjson",
        "/api/v1/imports/{kind}",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(paths, expected);
    for path in &paths {
        let item = &doc["paths"][path];
        let concrete = path
            .replace("{vin}", "P1-CAR")
            .replace("{id}", if path.contains("stores") { "1" } else { "p1" })
            .replace("{kind}", "fleets");
        if item.get("get").is_some() {
            let (status, body) = api.get(Some(&api.admin), &concrete).await;
            assert_eq!(status, StatusCode::OK, "GET {concrete}: {body}");
        }
        if item.get("post").is_some() {
            let (status, body) = if concrete.contains("imports") {
                api.post(
                    &api.admin,
                    &concrete,
                    "text/csv",
                    "id,name\nf3,Taxi Three\n",
                )
                .await
            } else {
                api.post(&api.admin, &concrete, "application/json", r#"{"campaign":"spring","channel":"sms","sent_date":"2026-03-01","responded":true}"#).await
            };
            assert!(status.is_success(), "POST {concrete}: {status} {body}");
        }
    }
}

async fn tenants_see_only_their_own(api: &Api) {
    // A fleet key: its vehicle and driver, and nothing of the other fleet's, on every id route.
    for (path, own) in [
        ("/api/v1/vehicles/F1-CAR", true),
        ("/api/v1/vehicles/F2-CAR", false),
        ("/api/v1/vehicles/P1-CAR", false),
        ("/api/v1/customers/d1", true),
        ("/api/v1/customers/d2", false),
        ("/api/v1/customers/p1", false),
        ("/api/v1/customers/d1/labels", true),
        ("/api/v1/customers/d2/labels", false),
        ("/api/v1/stores/1/label-distribution", false),
        ("/api/v1/stores/2/label-distribution", false),
    ] {
        let (status, body) = api.get(Some(&api.fleet1), path).await;
        if own {
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        } else {
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert_eq!(code(&body), "not_found");
        }
    }
    let response = r#"{"campaign":"c","channel":"sms","sent_date":"2026-03-01","responded":false}"#;
    assert_eq!(
        api.post(
            &api.fleet1,
            "/api/v1/customers/d2/responses",
            "application/json",
            response
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.post(
            &api.fleet1,
            "/api/v1/customers/d1/responses",
            "application/json",
            response
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        api.get(Some(&api.fleet1), "/api/v1/dead-letters").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.post(
            &api.fleet1,
            "/api/v1/imports/stores",
            "text/csv",
            "id,name,city,lat,lon\n9,X,Y,1,1\n"
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // Lists, filters and exports hold only the tenant's rows.
    assert_eq!(
        vins(&api.get(Some(&api.fleet1), "/api/v1/vehicles").await.1),
        ["F1-CAR".to_owned()].into()
    );
    assert_eq!(
        vins(
            &api.get(
                Some(&api.fleet1),
                "/api/v1/vehicles?label=ability_medium%20OR%20ability_strong%20OR%20ability_poor"
            )
            .await
            .1
        ),
        ["F1-CAR".to_owned()].into()
    );
    let customers: BTreeSet<String> =
        json(&api.get(Some(&api.fleet1), "/api/v1/customers").await.1)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(customers, ["d1".to_owned()].into());
    let (_, csv) = api
        .get(Some(&api.fleet1), "/api/v1/exports/vehicles.csv")
        .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("vin,device_id,make,model,model_year,energy,price_class,customer_id,customer_name,fleet_id,store_id,"), "{}", lines[0]);
    assert!(lines[0].ends_with("first_action,first_channel,first_status"));
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with("F1-CAR,"));
    let (_, ndjson) = api
        .get(Some(&api.fleet1), "/api/v1/exports/vehicles.ndjson")
        .await;
    let exported: Vec<String> = ndjson
        .lines()
        .map(|l| {
            json(l)["vin"]
                .as_str()
                .unwrap_or_else(|| panic!("{l}"))
                .to_owned()
        })
        .collect();
    assert_eq!(exported, ["F1-CAR"]);
    // A store key: its store's vehicles (private and fleet), its distribution only.
    assert_eq!(
        vins(&api.get(Some(&api.store1), "/api/v1/vehicles").await.1),
        ["F1-CAR".to_owned(), "P1-CAR".to_owned()].into()
    );
    assert_eq!(
        api.get(Some(&api.store1), "/api/v1/stores/1/label-distribution")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        api.get(Some(&api.store1), "/api/v1/stores/2/label-distribution")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(Some(&api.store1), "/api/v1/vehicles/P2-CAR")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, csv) = api
        .get(Some(&api.store1), "/api/v1/exports/vehicles.csv")
        .await;
    assert_eq!(csv.lines().count(), 3);
    // The admin sees all four.
    assert_eq!(
        vins(&api.get(Some(&api.admin), "/api/v1/vehicles").await.1).len(),
        4
    );
}

async fn bad_input_is_a_clear_4xx_and_writes_nothing(api: &Api) {
    let before = api.store.counts().await.unwrap();
    let path = "/api/v1/customers/p1/responses";
    let cases: [(&str, &str, StatusCode, &str); 5] = [
        (
            "application/json",
            "{\"campaign\": ",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            r#"{"campaign":"c","channel":"sms","sent_date":"2026-03-01","responded":true,"admin":true}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            r#"{"campaign":"c","channel":"pigeon","sent_date":"2026-03-01","responded":true}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            r#"{"campaign":"c","channel":"sms","sent_date":"March","responded":true}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "text/plain",
            "hello",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (content_type, body, status, expected) in cases {
        let (found, answer) = api.post(&api.admin, path, content_type, body).await;
        assert_eq!(
            (found, code(&answer).as_str()),
            (status, expected),
            "{body}: {answer}"
        );
    }
    let (status, answer) = api
        .post(
            &api.admin,
            path,
            "application/json",
            format!("{{\"campaign\":\"{}\"}}", "x".repeat(200_000)),
        )
        .await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let (status, answer) = api
        .get(
            Some(&api.admin),
            "/api/v1/vehicles?label=lifecycle%3Dlost%20AND%20(",
        )
        .await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_filter"),
        "{answer}"
    );
    let (status, answer) = api
        .get(Some(&api.admin), "/api/v1/vehicles?colour=red")
        .await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{answer}"
    );
    let (status, answer) = api
        .get(Some(&api.admin), "/api/v1/exports/vehicles.csv?label=(((")
        .await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_filter"),
        "{answer}"
    );
    let (status, answer) = api
        .post(
            &api.admin,
            "/api/v1/imports/stores",
            "text/csv",
            "id,name\n1,x\n",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.contains("city"), "{answer}");
    let (status, answer) = api
        .get(Some(&api.admin), "/api/v1/vehicles/NO-SUCH-CAR")
        .await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(
        json(&answer)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NO-SUCH-CAR")
    );
    assert_eq!(
        api.store.counts().await.unwrap(),
        before,
        "a refused request wrote something"
    );
}

async fn keys_are_checked_and_revocation_is_immediate(api: &Api) {
    assert_eq!(
        api.get(None, "/api/v1/vehicles").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        code(&api.get(Some("dt_nope_nope"), "/api/v1/vehicles").await.1),
        "unauthorized"
    );
    let forged = format!("{}x", &api.fleet1[..api.fleet1.len() - 1]);
    assert_eq!(
        api.get(Some(&forged), "/api/v1/vehicles").await.0,
        StatusCode::UNAUTHORIZED
    );
    let key = Keys::create(&api.store, &Role::Admin, "temporary")
        .await
        .unwrap();
    assert_eq!(
        api.get(Some(&key), "/api/v1/vehicles").await.0,
        StatusCode::OK
    );
    let id = key.split('_').nth(1).unwrap();
    assert!(Keys::revoke(&api.store, id).await.unwrap());
    assert_eq!(
        api.get(Some(&key), "/api/v1/vehicles").await.0,
        StatusCode::UNAUTHORIZED
    );
    // The health and metrics of operations need no key.
    assert_eq!(api.get(None, "/healthz").await.0, StatusCode::OK);
}

async fn suite(api: Api) {
    every_route_is_documented_and_answers(&api).await;
    tenants_see_only_their_own(&api).await;
    bad_input_is_a_clear_4xx_and_writes_nothing(&api).await;
    keys_are_checked_and_revocation_is_immediate(&api).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_on_sqlite() {
    suite(start(None, 1_000).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_on_postgres() {
    let Some(url) = drivetag_tests::require_postgres("the_api_on_postgres") else {
        return;
    };
    let schema = unique("api").replace('-', "_");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    suite(
        start(
            Some(format!("{url}{separator}options=-csearch_path%3D{schema}")),
            1_000,
        )
        .await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_floods_is_slowed_down() {
    let api = start(None, 2).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(api.get(Some(&api.fleet1), "/api/v1/vehicles").await.0);
    }
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited >= 4, "{statuses:?}");
    // Another key has its own budget.
    assert_eq!(
        api.get(Some(&api.store1), "/api/v1/vehicles").await.0,
        StatusCode::OK
    );
}
