//! The shared store: a Redis server, for several hosts on several machines.
//!
//! A bucket is a key prefix (`{bucket}/{key}`); counters are Redis's own
//! (`INCRBY` on decimal text). The connection is made on first use and
//! remade after a failure, so a host starts while Redis is down and serves
//! what does not need it; until Redis is back, guests get an error for each
//! operation. Every command has a deadline: a hung server is an error, not a
//! request stuck until `--request-timeout`.

use std::time::Duration;

use anyhow::{Context, Result};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{Outcome, StoreError};

/// How long a connection attempt, and a command, may take.
const DEADLINE: Duration = Duration::from_secs(2);

pub(super) struct Redis {
    connection: ConnectionManager,
    /// The URL, password hidden, for the log.
    name: String,
    /// `--keyvalue-data`, written (where absent) on the first use that
    /// reaches the server.
    seed: Vec<(String, String)>,
    seeded: OnceCell<()>,
}

impl Redis {
    /// A client for the server at `url`; connects on first use.
    pub(super) fn new(url: &str, seed: &[(String, String)]) -> Result<Redis> {
        let name = hide_password(url);
        let client = redis::Client::open(url).with_context(|| format!("--keyvalue {name}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEADLINE))
            .set_response_timeout(Some(DEADLINE))
            .set_number_of_retries(1);
        let connection = client
            .get_connection_manager_lazy(config)
            .with_context(|| format!("--keyvalue {name}"))?;
        Ok(Redis {
            connection,
            name,
            seed: seed.to_vec(),
            seeded: OnceCell::new(),
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The connection, once the seed data is in.
    async fn connection(&self) -> Outcome<ConnectionManager> {
        self.seeded
            .get_or_try_init(|| async {
                let mut connection = self.connection.clone();
                for (key, value) in &self.seed {
                    let _: bool = connection
                        .set_nx(key_of("default", key), value.as_bytes())
                        .await
                        .map_err(cause)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(self.connection.clone())
    }

    pub(super) async fn get(&self, bucket: &str, key: &str) -> Outcome<Option<Vec<u8>>> {
        let mut db = self.connection().await?;
        db.get(key_of(bucket, key)).await.map_err(cause)
    }

    pub(super) async fn set(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Outcome<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut db = self.connection().await?;
        let entries: Vec<(String, Vec<u8>)> = entries
            .into_iter()
            .map(|(key, value)| (key_of(bucket, &key), value))
            .collect();
        // MSET writes them all or none.
        db.mset::<_, _, ()>(&entries).await.map_err(cause)
    }

    pub(super) async fn delete(&self, bucket: &str, keys: Vec<String>) -> Outcome<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut db = self.connection().await?;
        let keys: Vec<String> = keys.iter().map(|key| key_of(bucket, key)).collect();
        db.del::<_, ()>(keys).await.map_err(cause)
    }

    pub(super) async fn exists(&self, bucket: &str, key: &str) -> Outcome<bool> {
        let mut db = self.connection().await?;
        db.exists(key_of(bucket, key)).await.map_err(cause)
    }

    pub(super) async fn list(
        &self,
        bucket: &str,
        cursor: u64,
        page: usize,
    ) -> Outcome<(Vec<String>, Option<u64>)> {
        let mut db = self.connection().await?;
        let prefix = key_of(bucket, "");
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(page)
            .query_async(&mut db)
            .await
            .map_err(cause)?;
        let keys = keys
            .into_iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_string))
            .collect();
        Ok((keys, (next != 0).then_some(next)))
    }

    pub(super) async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Outcome<u64> {
        let delta = i64::try_from(delta).map_err(|_| {
            StoreError("redis: an increment must fit in a signed 64-bit integer".into())
        })?;
        let mut db = self.connection().await?;
        let sum: i64 = db.incr(key_of(bucket, key), delta).await.map_err(cause)?;
        u64::try_from(sum)
            .map_err(|_| StoreError(format!("redis: the counter is negative ({sum})")))
    }

    pub(super) async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Outcome<Vec<Option<(String, Vec<u8>)>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut db = self.connection().await?;
        let names: Vec<String> = keys.iter().map(|key| key_of(bucket, key)).collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut db)
            .await
            .map_err(cause)?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| value.map(|value| (key, value)))
            .collect())
    }
}

fn key_of(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

fn cause(err: redis::RedisError) -> StoreError {
    StoreError(format!("redis: {err}"))
}

/// `redis://user:secret@host` as `redis://user:***@host`.
fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
