//! The store-and-forward outbox: every summary is committed here before it is sent, and
//! deleted only when the server's acknowledgement names it.
//!
//! # Durability
//!
//! SQLite in WAL mode with `synchronous = FULL`: every commit reaches the disk before it
//! returns, so a summary committed is never lost, even to a power cut (with `NORMAL`, WAL mode
//! survives a crash of the process but a power cut may roll back the last commits). An agent
//! commits a few times per trip, so the fsync per commit costs nothing that matters.
//!
//! # Sequence numbers
//!
//! Each summary gets the next per-device sequence number in the same transaction that stores
//! it; numbers are never reused. Because a corrupt outbox is replaced by a new one, the agent
//! also reserves numbers in blocks in a small file beside the database (`<path>.seq`), written
//! and synced before a block is used: a new outbox continues after the last reservation, so the
//! server never mistakes a new summary for a duplicate of an old one.
//!
//! # Disk cap
//!
//! When the stored summaries exceed `max_bytes`, the lowest-value, oldest ones are dropped
//! first — trips, then days, then style and places, vehicle info last — and counted. A full
//! disk is handled the same way: drop, retry once, and report.
//!
//! # Replay checkpoint
//!
//! For an input that can be read again (a recorded file), the outbox stores, in the same
//! transaction as the summaries, how many summaries that input has produced. After a crash the
//! agent reads the file again from the start without sending what it already stored; the
//! pipeline is deterministic, so nothing is lost and nothing is stored twice.

use std::path::{Path, PathBuf};

use drivetag_shared::DeviceId;
use drivetag_shared::codec;
use drivetag_shared::wire::{Ack, Envelope, RejectReason, UpKind, Uplink};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

/// Sequence numbers are reserved in blocks of this many.
pub const SEQ_BLOCK: u64 = 1_000;

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// SQLite refused an operation.
    #[error("outbox {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The disk is full even after dropping summaries.
    #[error("outbox {path}: disk full, {dropped} summaries could not be stored")]
    DiskFull {
        /// The database file.
        path: PathBuf,
        /// Summaries lost.
        dropped: usize,
    },
    /// The sequence reservation file cannot be written.
    #[error("outbox {path}: cannot reserve sequence numbers: {source}")]
    Reservation {
        /// The reservation file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A corrupt file could not be moved aside.
    #[error("outbox {path} is corrupt and cannot be moved aside: {source}")]
    MoveAside {
        /// The database file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A summary waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// What it is; names its topic.
    pub kind: UpKind,
    /// When it was created, UTC seconds.
    pub created_s: u64,
    /// The encoded envelope, ready to publish.
    pub frame: Vec<u8>,
}

/// Where an input stood when its summaries were last committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The input's identity (path, size and modification time).
    pub source: String,
    /// Summaries that input has produced so far.
    pub outputs: u64,
    /// Time of the last sample read, UTC ms.
    pub last_sample_ms: i64,
}

/// What the outbox holds, for the agent's health report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Summaries waiting.
    pub len: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Creation time of the oldest, UTC seconds.
    pub oldest_created_s: Option<u64>,
    /// Summaries dropped by the cap or a full disk, since installation.
    pub dropped: u64,
    /// Summaries the server refused, since installation.
    pub rejected: u64,
    /// The next sequence number.
    pub next_seq: u64,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acknowledged {
    /// Summaries deleted because the server stored them.
    pub stored: usize,
    /// Summaries deleted because the server refused them, with why.
    pub rejected: Vec<(u64, RejectReason)>,
}

/// The outbox. Open one per thread: SQLite serialises writers across connections.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    max_bytes: u64,
}

/// What opening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// An existing outbox.
    Existing,
    /// A new, empty outbox.
    Created,
    /// The file was corrupt: it was moved to `moved_to` and a new outbox was created.
    Recovered {
        /// Where the corrupt file now is.
        moved_to: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

fn priority(kind: UpKind) -> i64 {
    match kind {
        UpKind::Trip => 0,
        UpKind::Day => 1,
        UpKind::Style | UpKind::Places => 2,
        UpKind::Vehicle => 3,
    }
}

fn kind_from(name: &str) -> UpKind {
    UpKind::from_name(name).unwrap_or(UpKind::Trip)
}

impl Outbox {
    /// Opens the outbox at `path`, creating it if needed; a corrupt file is moved aside and
    /// replaced.
    pub fn open(path: &Path, max_bytes: u64) -> Result<(Outbox, Opened), OutboxError> {
        let existed = path.exists();
        match Self::try_open(path, max_bytes) {
            Ok(outbox) => Ok((
                outbox,
                if existed {
                    Opened::Existing
                } else {
                    Opened::Created
                },
            )),
            // Only corruption moves a file aside; a locked or unreadable file is an error to
            // report, not a reason to start over.
            Err(OpenFailure::Corrupt(reason)) if existed => {
                let moved_to = move_aside(path)?;
                let outbox = Self::try_open(path, max_bytes).map_err(|source| match source {
                    OpenFailure::Sqlite(source) => OutboxError::Sqlite {
                        path: path.to_owned(),
                        source,
                    },
                    OpenFailure::Corrupt(reason) => OutboxError::MoveAside {
                        path: path.to_owned(),
                        source: std::io::Error::other(reason),
                    },
                })?;
                Ok((outbox, Opened::Recovered { moved_to, reason }))
            }
            Err(OpenFailure::Sqlite(source)) => Err(OutboxError::Sqlite {
                path: path.to_owned(),
                source,
            }),
            Err(OpenFailure::Corrupt(reason)) => Err(OutboxError::Sqlite {
                path: path.to_owned(),
                source: rusqlite::Error::InvalidParameterName(reason),
            }),
        }
    }

    fn try_open(path: &Path, max_bytes: u64) -> Result<Outbox, OpenFailure> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|error| match error.sqlite_error_code() {
                Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                    OpenFailure::Corrupt(error.to_string())
                }
                _ => OpenFailure::Sqlite(error),
            })?;
        if check != "ok" {
            return Err(OpenFailure::Corrupt(format!("integrity check: {check}")));
        }
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenFailure::Corrupt(format!(
                "journal mode {mode}, not WAL"
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY,
                 kind TEXT NOT NULL,
                 priority INTEGER NOT NULL,
                 created_s INTEGER NOT NULL,
                 frame BLOB NOT NULL
             );
             CREATE INDEX IF NOT EXISTS outbox_drop_order ON outbox (priority, seq);
             CREATE TABLE IF NOT EXISTS meta (
                 key TEXT PRIMARY KEY,
                 value
             );",
        )?;
        let outbox = Outbox {
            conn,
            path: path.to_owned(),
            max_bytes,
        };
        if outbox
            .meta_int("next_seq")
            .map_err(OpenFailure::from_outbox)?
            .is_none()
        {
            let start = read_reservation(&reservation_path(path)).unwrap_or(0) + 1;
            outbox
                .set_meta("next_seq", start as i64)
                .map_err(OpenFailure::from_outbox)?;
        }
        Ok(outbox)
    }

    /// A write transaction that takes the write lock at once. A deferred one that reads
    /// first and writes later fails with "database is locked" at once, without waiting, when
    /// another connection (the uplink's) wrote in between: SQLite cannot wait there without
    /// risking a deadlock, so the busy timeout never applies.
    fn write_transaction(&mut self) -> rusqlite::Result<rusqlite::Transaction<'_>> {
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
    }

    fn sqlite(&self, source: rusqlite::Error) -> OutboxError {
        OutboxError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn meta_int(&self, key: &str) -> Result<Option<i64>, OutboxError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    fn set_meta(&self, key: &str, value: impl rusqlite::ToSql) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.sqlite(e))
    }

    /// A stored value of the agent's own (last configuration, vehicle fingerprint...).
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, OutboxError> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [format!("user.{key}")],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// Stores a value of the agent's own.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), OutboxError> {
        self.set_meta(&format!("user.{key}"), value)
    }

    /// Stores summaries as envelopes from `device`, each with the next sequence number, and
    /// the input's checkpoint, in one transaction. Returns the sequence numbers.
    pub fn append(
        &mut self,
        device: &DeviceId,
        created_s: u64,
        bodies: &[Uplink],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<Vec<u64>, OutboxError> {
        match self.try_append(device, created_s, bodies, checkpoint) {
            Err(OutboxError::Sqlite { source, .. })
                if source.sqlite_error_code() == Some(ErrorCode::DiskFull) =>
            {
                // Make room by the drop policy, then try once more.
                let target = self.stats()?.bytes / 2;
                self.drop_down_to(target)?;
                self.try_append(device, created_s, bodies, checkpoint)
                    .map_err(|_| OutboxError::DiskFull {
                        path: self.path.clone(),
                        dropped: bodies.len(),
                    })
            }
            other => other,
        }
    }

    fn try_append(
        &mut self,
        device: &DeviceId,
        created_s: u64,
        bodies: &[Uplink],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<Vec<u64>, OutboxError> {
        let path = self.path.clone();
        let sqlite = |source| OutboxError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write_transaction().map_err(sqlite)?;
        let mut next: u64 = tx
            .query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(sqlite)? as u64;
        let reservation = reservation_path(&path);
        let reserved = read_reservation(&reservation).unwrap_or(0);
        let last_needed = next + bodies.len() as u64;
        if last_needed > reserved {
            let block_end = last_needed.div_ceil(SEQ_BLOCK) * SEQ_BLOCK + SEQ_BLOCK;
            write_reservation(&reservation, block_end).map_err(|source| {
                OutboxError::Reservation {
                    path: reservation.clone(),
                    source,
                }
            })?;
        }
        let mut seqs = Vec::with_capacity(bodies.len());
        for body in bodies {
            let envelope = Envelope {
                device: device.clone(),
                seq: next,
                created_s,
                body: body.clone(),
            };
            let kind = body.kind();
            tx.execute(
                "INSERT INTO outbox (seq, kind, priority, created_s, frame) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![next as i64, kind.as_str(), priority(kind), created_s as i64, codec::encode(&envelope)],
            )
            .map_err(sqlite)?;
            seqs.push(next);
            next += 1;
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'next_seq'",
            [next as i64],
        )
        .map_err(sqlite)?;
        if let Some(checkpoint) = checkpoint {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('checkpoint', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [format!(
                    "{}\n{}\n{}",
                    checkpoint.outputs, checkpoint.last_sample_ms, checkpoint.source
                )],
            )
            .map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)?;
        let bytes = self.stats()?.bytes;
        if bytes > self.max_bytes {
            self.drop_down_to(self.max_bytes)?;
        }
        Ok(seqs)
    }

    /// Drops summaries by the drop policy until at most `target` bytes remain.
    fn drop_down_to(&mut self, target: u64) -> Result<usize, OutboxError> {
        let rows: Vec<(i64, i64)> = {
            let mut statement = self
                .conn
                .prepare("SELECT seq, length(frame) FROM outbox ORDER BY priority, seq")
                .map_err(|e| self.sqlite(e))?;
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.sqlite(e))?
        };
        let mut bytes: u64 = rows.iter().map(|(_, len)| *len as u64).sum();
        let mut victims = Vec::new();
        for (seq, len) in rows {
            if bytes <= target {
                break;
            }
            bytes -= len as u64;
            victims.push(seq);
        }
        let path = self.path.clone();
        let sqlite = |source| OutboxError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write_transaction().map_err(sqlite)?;
        for seq in &victims {
            tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])
                .map_err(sqlite)?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?1)
             ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            [victims.len() as i64],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(victims.len())
    }

    /// The oldest waiting summaries, skipping `exclude`, at most `limit`.
    pub fn pending(&self, exclude: &[u64], limit: usize) -> Result<Vec<Entry>, OutboxError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT seq, kind, created_s, frame FROM outbox ORDER BY seq")
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(Entry {
                    seq: row.get::<_, i64>(0)? as u64,
                    kind: kind_from(&row.get::<_, String>(1)?),
                    created_s: row.get::<_, i64>(2)? as u64,
                    frame: row.get(3)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        let mut out = Vec::with_capacity(limit.min(256));
        for row in rows {
            let entry = row.map_err(|e| self.sqlite(e))?;
            if !exclude.contains(&entry.seq) {
                out.push(entry);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Deletes what the server stored or refused.
    pub fn acknowledge(&mut self, ack: &Ack) -> Result<Acknowledged, OutboxError> {
        let path = self.path.clone();
        let sqlite = |source| OutboxError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write_transaction().map_err(sqlite)?;
        let mut done = Acknowledged::default();
        for range in &ack.stored {
            done.stored += tx
                .execute(
                    "DELETE FROM outbox WHERE seq BETWEEN ?1 AND ?2",
                    [range.first as i64, range.last as i64],
                )
                .map_err(sqlite)?;
        }
        for rejection in &ack.rejected {
            let deleted = tx
                .execute("DELETE FROM outbox WHERE seq = ?1", [rejection.seq as i64])
                .map_err(sqlite)?;
            if deleted > 0 {
                done.rejected.push((rejection.seq, rejection.reason));
            }
        }
        if !done.rejected.is_empty() {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('rejected', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                [done.rejected.len() as i64],
            )
            .map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)?;
        Ok(done)
    }

    /// What the outbox holds.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let (len, bytes, oldest): (i64, i64, Option<i64>) = self
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(frame)), 0), min(created_s) FROM outbox",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(OutboxStats {
            len: len as u64,
            bytes: bytes as u64,
            oldest_created_s: oldest.map(|s| s as u64),
            dropped: self.meta_int("dropped")?.unwrap_or(0) as u64,
            rejected: self.meta_int("rejected")?.unwrap_or(0) as u64,
            next_seq: self.meta_int("next_seq")?.unwrap_or(1) as u64,
        })
    }

    /// The replay checkpoint, if any.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, OutboxError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'checkpoint'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        Ok(text.and_then(|text| {
            let mut parts = text.splitn(3, '\n');
            Some(Checkpoint {
                outputs: parts.next()?.parse().ok()?,
                last_sample_ms: parts.next()?.parse().ok()?,
                source: parts.next()?.to_owned(),
            })
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

enum OpenFailure {
    Sqlite(rusqlite::Error),
    Corrupt(String),
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFailure::Sqlite(error) => write!(f, "{error}"),
            OpenFailure::Corrupt(reason) => f.write_str(reason),
        }
    }
}

impl From<rusqlite::Error> for OpenFailure {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                OpenFailure::Corrupt(error.to_string())
            }
            _ => OpenFailure::Sqlite(error),
        }
    }
}

impl OpenFailure {
    fn from_outbox(error: OutboxError) -> Self {
        match error {
            OutboxError::Sqlite { source, .. } => OpenFailure::from(source),
            other => OpenFailure::Corrupt(other.to_string()),
        }
    }
}

fn reservation_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".seq");
    PathBuf::from(name)
}

fn read_reservation(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes the reservation durably: a temporary file, synced, renamed over the old one.
fn write_reservation(path: &Path, value: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    writeln!(file, "{value}")?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Moves a corrupt database (and its WAL and shared-memory files) aside.
fn move_aside(path: &Path) -> Result<PathBuf, OutboxError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let with_suffix = |base: &Path, suffix: &str| {
        let mut name = base.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let moved_to = with_suffix(path, &format!(".corrupt-{stamp}"));
    std::fs::rename(path, &moved_to).map_err(|source| OutboxError::MoveAside {
        path: path.to_owned(),
        source,
    })?;
    for suffix in ["-wal", "-shm"] {
        let side = with_suffix(path, suffix);
        if side.exists() {
            let _ = std::fs::rename(&side, with_suffix(&moved_to, suffix));
        }
    }
    Ok(moved_to)
}

#[cfg(test)]
mod tests;
