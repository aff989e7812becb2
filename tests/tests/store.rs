//! The store's conformance checks on both back-ends: a temporary SQLite file, and the
//! machine's PostgreSQL (`DRIVETAG_TEST_DATABASE_URL`), each test in a fresh schema.
#![allow(clippy::unwrap_used)] // Tests may panic on what they did not expect.

use drivetag_server::store::conformance;
use drivetag_tests::{postgres_store, sqlite_store};

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    let mut dirs = Vec::new();
    conformance::all(async || {
        let (store, dir) = sqlite_store().await;
        dirs.push(dir);
        store
    })
    .await;
}

#[tokio::test]
async fn postgres_passes_the_conformance_suite() {
    if postgres_store("postgres_passes_the_conformance_suite")
        .await
        .is_none()
    {
        return;
    }
    conformance::all(async || {
        postgres_store("postgres_passes_the_conformance_suite")
            .await
            .unwrap()
    })
    .await;
}
