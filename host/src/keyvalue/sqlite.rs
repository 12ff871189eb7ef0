//! The embedded store: one SQLite database file.
//!
//! Why SQLite: the file format is stable and documented, any `sqlite3` shell
//! can read and repair it, it survives a crash of the process at any point
//! (its journal is what recovery replays), and `rusqlite`'s `bundled` build
//! compiles the library in, so nothing is needed on the machine. redb, the
//! pure-Rust alternative, keeps a format only redb reads.
//!
//! One thread owns the connection and runs every operation, so operations
//! never interleave (an `increment` is a read and a write with nothing in
//! between). It takes whatever operations are waiting, runs them in one
//! transaction, each inside a savepoint of its own (one failing undoes only
//! itself), commits, and only then answers them: a guest that was told
//! "done" has its write on disk. With the write-ahead log and
//! `synchronous=FULL` the commit is one `fsync` for the whole group, which is
//! what keeps a durable store fast under concurrent requests. Guests wait on
//! the answer asynchronously: a slow disk slows only the requests that use
//! the store.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{Outcome, StoreError};

/// Operations queued for the thread; senders wait when it is full.
const QUEUE: usize = 4096;

/// Most operations in one transaction.
const GROUP: usize = 512;

/// How long an operation waits for a lock another process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the thread answers an operation with once its transaction ends.
type Answer = Box<dyn FnOnce(Outcome<()>) + Send>;
/// One operation: runs on the connection (or, given none, fails unrun), says
/// whether it succeeded, and leaves the answer to send after the commit.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Answer) + Send>;

pub(super) struct Sqlite {
    jobs: mpsc::Sender<Job>,
}

impl Sqlite {
    /// Opens (or creates) the database at `path`, checks it can be written,
    /// puts `seed` in the default bucket where absent, and starts the thread.
    pub(super) fn open(path: &str, seed: &[(String, String)]) -> Result<Sqlite> {
        let context = || format!("--keyvalue {path}");
        if Path::new(path).is_dir() {
            bail!("--keyvalue {path}: is a directory, not a database file");
        }
        let mut connection = Connection::open(path).with_context(context)?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| connection.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| connection.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| {
                connection.execute_batch(
                    "CREATE TABLE IF NOT EXISTS kv (
                         bucket TEXT NOT NULL,
                         key TEXT NOT NULL,
                         value BLOB NOT NULL,
                         PRIMARY KEY (bucket, key)
                     ) WITHOUT ROWID",
                )
            })
            .with_context(context)?;
        // A write now, so a store that cannot be written fails at start.
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .with_context(context)?;
        for (key, value) in seed {
            transaction
                .execute(
                    "INSERT OR IGNORE INTO kv (bucket, key, value) VALUES ('default', ?1, ?2)",
                    params![key, value.as_bytes()],
                )
                .with_context(context)?;
        }
        transaction.commit().with_context(context)?;

        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("keyvalue-sqlite".into())
            .spawn(move || run(connection, queue))
            .context("failed to start the key-value thread")?;
        Ok(Sqlite { jobs })
    }

    /// Runs `op` on the thread; its result once committed.
    async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Outcome<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection: Option<&Connection>| {
            let result = match connection {
                Some(connection) => op(connection).map_err(cause),
                None => Err(StoreError("sqlite: not run".into())),
            };
            let ok = result.is_ok();
            // The transaction's failure, if any, is what the guest hears.
            let answer: Answer = Box::new(move |committed: Outcome<()>| {
                let _ = reply.send(committed.and(result));
            });
            (ok, answer)
        });
        let gone = || StoreError("sqlite: the store's thread has stopped".into());
        self.jobs.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub(super) async fn get(&self, bucket: &str, key: String) -> Outcome<Option<Vec<u8>>> {
        let bucket = bucket.to_string();
        self.call(move |db| read(db, &bucket, &key)).await
    }

    pub(super) async fn set(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Outcome<()> {
        let bucket = bucket.to_string();
        self.call(move |db| {
            let mut insert = db.prepare_cached(
                "INSERT OR REPLACE INTO kv (bucket, key, value) VALUES (?1, ?2, ?3)",
            )?;
            for (key, value) in &entries {
                insert.execute(params![bucket, key, value])?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn delete(&self, bucket: &str, keys: Vec<String>) -> Outcome<()> {
        let bucket = bucket.to_string();
        self.call(move |db| {
            let mut delete = db.prepare_cached("DELETE FROM kv WHERE bucket = ?1 AND key = ?2")?;
            for key in &keys {
                delete.execute(params![bucket, key])?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn exists(&self, bucket: &str, key: String) -> Outcome<bool> {
        let bucket = bucket.to_string();
        self.call(move |db| Ok(read(db, &bucket, &key)?.is_some()))
            .await
    }

    pub(super) async fn list(
        &self,
        bucket: &str,
        cursor: u64,
        page: usize,
    ) -> Outcome<(Vec<String>, Option<u64>)> {
        let bucket = bucket.to_string();
        self.call(move |db| {
            let mut select = db.prepare_cached(
                "SELECT key FROM kv WHERE bucket = ?1 ORDER BY key LIMIT ?2 OFFSET ?3",
            )?;
            let offset = i64::try_from(cursor).unwrap_or(i64::MAX);
            let keys = select
                .query_map(params![bucket, page as i64, offset], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let next = (keys.len() == page).then(|| cursor + page as u64);
            Ok((keys, next))
        })
        .await
    }

    pub(super) async fn increment(&self, bucket: &str, key: String, delta: u64) -> Outcome<u64> {
        let bucket = bucket.to_string();
        let counted = self
            .call(move |db| {
                let current = read(db, &bucket, &key)?;
                let sum = counter(current.as_deref()).and_then(|n| {
                    n.checked_add(delta)
                        .ok_or_else(|| StoreError("the counter would overflow".into()))
                });
                if let Ok(sum) = &sum {
                    db.prepare_cached(
                        "INSERT OR REPLACE INTO kv (bucket, key, value) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![
                        bucket,
                        key,
                        sum.to_string().as_bytes()
                    ])?;
                }
                Ok(sum)
            })
            .await;
        counted?
    }

    pub(super) async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Outcome<Vec<Option<(String, Vec<u8>)>>> {
        let bucket = bucket.to_string();
        self.call(move |db| {
            keys.into_iter()
                .map(|key| Ok(read(db, &bucket, &key)?.map(|value| (key, value))))
                .collect()
        })
        .await
    }
}

fn read(db: &Connection, bucket: &str, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    db.prepare_cached("SELECT value FROM kv WHERE bucket = ?1 AND key = ?2")?
        .query_row(params![bucket, key], |row| row.get(0))
        .optional()
}

fn cause(err: rusqlite::Error) -> StoreError {
    StoreError(format!("sqlite: {err}"))
}

/// The thread: groups waiting operations into one transaction each.
fn run(mut connection: Connection, mut queue: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(GROUP);
    while let Some(first) = queue.blocking_recv() {
        group.push(first);
        while group.len() < GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (answers, committed) = run_group(&mut connection, &mut group);
        for answer in answers {
            answer(committed.clone());
        }
    }
}

/// Runs `group` in one transaction; the answers, and whether it committed.
fn run_group(connection: &mut Connection, group: &mut Vec<Job>) -> (Vec<Answer>, Outcome<()>) {
    let behavior = rusqlite::TransactionBehavior::Immediate;
    let mut transaction = match connection.transaction_with_behavior(behavior) {
        Ok(transaction) => transaction,
        Err(err) => {
            return (
                group.drain(..).map(|job| job(None).1).collect(),
                Err(cause(err)),
            );
        }
    };
    let mut answers = Vec::with_capacity(group.len());
    let mut failed = None;
    for job in group.drain(..) {
        let answer = match transaction.savepoint() {
            Ok(savepoint) => {
                let (ok, answer) = job(Some(&savepoint));
                // A failed operation's savepoint rolls back when dropped.
                if ok && let Err(err) = savepoint.commit() {
                    failed.get_or_insert(cause(err));
                }
                answer
            }
            Err(err) => {
                failed.get_or_insert(cause(err));
                job(None).1
            }
        };
        answers.push(answer);
    }
    let committed = match failed {
        Some(err) => Err(err),
        None => transaction.commit().map_err(cause),
    };
    (answers, committed)
}

/// The number an `increment` finds in a value: decimal text, as
/// wasmtime's and Redis's counters keep it; a missing value is 0.
fn counter(value: Option<&[u8]>) -> Outcome<u64> {
    let Some(value) = value else { return Ok(0) };
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| StoreError("the value is not a decimal counter".into()))
}
