use std::collections::VecDeque;

use drivetag_shared::wire::{Rejection, SeqRange, SignalSource, StyleSummary};
use proptest::prelude::*;

use super::*;

fn device() -> DeviceId {
    DeviceId::new("hu-test").unwrap()
}

fn style(days: u16) -> Uplink {
    Uplink::Style(StyleSummary {
        from_local_day: 20_000,
        days,
        source: SignalSource::Gnss,
        trips: 1,
        distance_m: 1,
        moving_s: 1,
        harsh_accel: 0,
        harsh_brake: 0,
        harsh_corner: 0,
        overspeed_s: 0,
        accel_p01_cms2: 0,
        accel_p99_cms2: 0,
        lateral_p99_cms2: 0,
        speed_cv_pct: 0,
        accel_score: 100,
        brake_score: 100,
        corner_score: 100,
        speed_score: 100,
        score: 100,
    })
}

fn trip() -> Uplink {
    Uplink::Trip(drivetag_shared::wire::TripSummary {
        start_s: 1,
        start_local_hour_of_week: 0,
        duration_s: 1,
        distance_m: 1,
        moving_s: 1,
        max_speed_cms: 1,
        speed_band_pct: [100, 0, 0, 0, 0],
        night_pct: 0,
        harsh_accel: 0,
        harsh_brake: 0,
        harsh_corner: 0,
        accel_p01_cms2: 0,
        accel_p99_cms2: 0,
        lateral_p99_cms2: 0,
        speed_cv_pct: 0,
        overspeed_s: 0,
        score: 100,
        start_cell: drivetag_shared::Cell::containing(1.0, 1.0, drivetag_shared::CellSize::Km1)
            .unwrap(),
        end_cell: drivetag_shared::Cell::containing(1.0, 1.0, drivetag_shared::CellSize::Km1)
            .unwrap(),
    })
}

fn ack(seqs: &[u64]) -> Ack {
    Ack {
        device: device(),
        stored: SeqRange::collapse(seqs.iter().copied()),
        rejected: Vec::new(),
    }
}

#[test]
fn summaries_wait_until_acknowledged_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    let (mut outbox, opened) = Outbox::open(&path, u64::MAX).unwrap();
    assert_eq!(opened, Opened::Created);
    assert_eq!(
        outbox
            .append(&device(), 100, &[style(1), style(2), style(3)], None)
            .unwrap(),
        [1, 2, 3]
    );
    drop(outbox);

    let (mut outbox, opened) = Outbox::open(&path, u64::MAX).unwrap();
    assert_eq!(opened, Opened::Existing);
    let pending = outbox.pending(&[], 10).unwrap();
    assert_eq!(pending.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let envelope: Envelope = codec::decode(&pending[1].frame).unwrap();
    assert_eq!((envelope.seq, envelope.body), (2, style(2)));
    assert_eq!(outbox.pending(&[1], 1).unwrap()[0].seq, 2);

    let done = outbox.acknowledge(&ack(&[1, 3])).unwrap();
    assert_eq!(done.stored, 2);
    assert_eq!(outbox.pending(&[], 10).unwrap().len(), 1);
    // Sequence numbers are never reused, even after everything was acknowledged.
    outbox.acknowledge(&ack(&[2])).unwrap();
    assert_eq!(
        outbox.append(&device(), 101, &[style(4)], None).unwrap(),
        [4]
    );
}

#[test]
fn writers_on_two_connections_wait_for_each_other_instead_of_failing() {
    // The core appends while the uplink acknowledges on its own connection, as in `run`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    let (mut writer, _) = Outbox::open(&path, u64::MAX).unwrap();
    let (mut acker, _) = Outbox::open(&path, u64::MAX).unwrap();
    let appending = std::thread::spawn(move || {
        for round in 0..1000u64 {
            writer
                .append(&device(), round, &[trip(), style(1)], None)
                .unwrap_or_else(|e| panic!("append {round}: {e}"));
        }
    });
    let mut acknowledged = 0;
    loop {
        let finished = appending.is_finished();
        let pending = acker.pending(&[], 50).unwrap();
        if finished && pending.is_empty() {
            break;
        }
        // One at a time: as many write transactions as possible to collide with.
        for entry in pending {
            acknowledged += acker.acknowledge(&ack(&[entry.seq])).unwrap().stored;
        }
    }
    appending.join().expect("every append succeeds");
    assert_eq!(acknowledged, 2000);
    assert!(acker.pending(&[], 10).unwrap().is_empty());
}

#[test]
fn refused_summaries_are_deleted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut outbox, _) = Outbox::open(&dir.path().join("o.sqlite"), u64::MAX).unwrap();
    outbox
        .append(&device(), 1, &[style(1), style(2)], None)
        .unwrap();
    let done = outbox
        .acknowledge(&Ack {
            device: device(),
            stored: vec![],
            rejected: vec![Rejection {
                seq: 2,
                reason: RejectReason::Malformed,
            }],
        })
        .unwrap();
    assert_eq!(done.rejected, [(2, RejectReason::Malformed)]);
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.len, stats.rejected), (1, 1));
}

#[test]
fn the_cap_drops_trips_before_style_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite");
    let (mut outbox, _) = Outbox::open(&path, u64::MAX).unwrap();
    outbox
        .append(
            &device(),
            1,
            &[style(1), trip(), trip(), style(2), trip()],
            None,
        )
        .unwrap();
    let bytes = outbox.stats().unwrap().bytes;
    drop(outbox);
    // Room for everything but about two trips.
    let trip_bytes = codec::encode(&Envelope {
        device: device(),
        seq: 1,
        created_s: 1,
        body: trip(),
    })
    .len() as u64;
    let (mut outbox, _) = Outbox::open(&path, bytes - trip_bytes - 1).unwrap();
    outbox.append(&device(), 2, &[style(3)], None).unwrap();
    let kept: Vec<(u64, UpKind)> = outbox
        .pending(&[], 10)
        .unwrap()
        .iter()
        .map(|e| (e.seq, e.kind))
        .collect();
    // The oldest trips go first; style summaries and the newest trip stay.
    assert_eq!(
        kept,
        [
            (1, UpKind::Style),
            (4, UpKind::Style),
            (5, UpKind::Trip),
            (6, UpKind::Style)
        ]
    );
    assert_eq!(outbox.stats().unwrap().dropped, 2);
}

#[test]
fn a_corrupt_file_is_moved_aside_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite");
    let (mut outbox, _) = Outbox::open(&path, u64::MAX).unwrap();
    outbox
        .append(&device(), 1, &[style(1), style(2)], None)
        .unwrap();
    drop(outbox);
    std::fs::write(&path, b"this is not a database, it is a power cut").unwrap();
    let _ = std::fs::remove_file(dir.path().join("o.sqlite-wal"));

    let (mut outbox, opened) = Outbox::open(&path, u64::MAX).unwrap();
    let Opened::Recovered { moved_to, .. } = opened else {
        panic!("not recovered: {opened:?}");
    };
    assert!(moved_to.exists());
    assert!(
        moved_to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("o.sqlite.corrupt-")
    );
    // The reservation file says numbers up to 2000 may have been used.
    let seq = outbox.append(&device(), 2, &[style(3)], None).unwrap()[0];
    assert!(seq > 2, "a new outbox reused sequence number {seq}");
    assert_eq!(seq, 2 * SEQ_BLOCK + 1);
}

#[test]
fn the_checkpoint_is_stored_with_the_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut outbox, _) = Outbox::open(&dir.path().join("o.sqlite"), u64::MAX).unwrap();
    assert_eq!(outbox.checkpoint().unwrap(), None);
    let checkpoint = Checkpoint {
        source: "drive.nmea 123 456".into(),
        outputs: 7,
        last_sample_ms: 99,
    };
    outbox
        .append(&device(), 1, &[style(1)], Some(&checkpoint))
        .unwrap();
    assert_eq!(outbox.checkpoint().unwrap(), Some(checkpoint));
}

#[derive(Debug, Clone)]
enum Action {
    Append(u8),
    Ack(Vec<prop::sample::Index>),
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (1u8..5).prop_map(Action::Append),
        prop::collection::vec(any::<prop::sample::Index>(), 0..4).prop_map(Action::Ack),
        Just(Action::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The outbox behaves like a queue of unacknowledged sequence numbers, across reopening.
    #[test]
    fn the_outbox_matches_a_queue_model(actions in prop::collection::vec(action(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        let (mut outbox, _) = Outbox::open(&path, u64::MAX).unwrap();
        let mut model: VecDeque<u64> = VecDeque::new();
        let mut next = 1u64;
        for action in actions {
            match action {
                Action::Append(n) => {
                    let bodies: Vec<Uplink> = (0..n).map(|i| style(u16::from(i))).collect();
                    let seqs = outbox.append(&device(), 1, &bodies, None).unwrap();
                    let expected: Vec<u64> = (next..next + u64::from(n)).collect();
                    prop_assert_eq!(&seqs, &expected);
                    model.extend(expected);
                    next += u64::from(n);
                }
                Action::Ack(picks) => {
                    if model.is_empty() { continue; }
                    let seqs: Vec<u64> = picks.iter().map(|i| model[i.index(model.len())]).collect();
                    outbox.acknowledge(&ack(&seqs)).unwrap();
                    model.retain(|seq| !seqs.contains(seq));
                }
                Action::Reopen => {
                    drop(outbox);
                    outbox = Outbox::open(&path, u64::MAX).unwrap().0;
                }
            }
            let pending: Vec<u64> = outbox.pending(&[], usize::MAX).unwrap().iter().map(|e| e.seq).collect();
            prop_assert_eq!(pending, model.iter().copied().collect::<Vec<_>>());
        }
    }
}
