//! `wasi:keyvalue` (store, atomics, batch; the `0.2.0-draft` that
//! `wasmtime serve -Skeyvalue` serves) on a real store, chosen by
//! `--keyvalue`:
//!
//! - a path: an SQLite database on local disk, created if missing (see
//!   [`sqlite`] for why SQLite and how writes are made durable);
//! - `redis://HOST[:PORT][/DB]`: a Redis server that several hosts share.
//!
//! Buckets are named by the guest (`open("")` is the default bucket) and
//! kept apart: a column in SQLite, a key prefix in Redis. A failing store is
//! an `error` value for the guest, never a trap, and a log line naming the
//! store and the cause. Keys and values are bounded by flags, checked
//! before anything reaches the store.

mod redis;
mod sqlite;

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::state::GuestState;
use crate::units::{parse_key_value, parse_size};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: { "wasi:keyvalue/store.bucket": super::Bucket },
    });
}

use bindings::wasi::keyvalue::store::{Error, KeyResponse};
use bindings::wasi::keyvalue::{atomics, batch, store};

/// The `--keyvalue` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyValueArgs {
    /// Give guests `wasi:keyvalue` (store, atomics, batch) on this store: a
    /// SQLite database file (created if missing), or `redis://HOST[:PORT][/DB]`
    /// for a Redis server several hosts share. Without it, opening a bucket
    /// fails with `access-denied`.
    #[arg(
        long = "keyvalue",
        env = "WASI_SERVE_KEYVALUE",
        value_name = "PATH|URL",
        value_parser = parse_store,
    )]
    pub store: Option<String>,

    /// Put KEY=VALUE in the default bucket at start, unless KEY is there
    /// already (so a restart keeps what guests wrote). Repeatable (the
    /// environment variable form holds one).
    #[arg(
        long = "keyvalue-data",
        env = "WASI_SERVE_KEYVALUE_DATA",
        value_name = "KEY=VALUE",
        requires = "store",
        value_parser = parse_key_value,
    )]
    pub data: Vec<(String, String)>,

    /// Longest key a guest may use, in bytes; longer ones get an error.
    #[arg(
        long = "keyvalue-max-key-size",
        env = "WASI_SERVE_KEYVALUE_MAX_KEY_SIZE",
        default_value = "1KiB",
        requires = "store",
        value_parser = parse_size,
    )]
    pub max_key_size: u64,

    /// Largest value a guest may store (e.g. `4MiB`); larger ones get an
    /// error.
    #[arg(
        long = "keyvalue-max-value-size",
        env = "WASI_SERVE_KEYVALUE_MAX_VALUE_SIZE",
        default_value = "1MiB",
        requires = "store",
        value_parser = parse_size,
    )]
    pub max_value_size: u64,
}

/// A store guests share, opened from the flags.
pub struct Store {
    backend: Backend,
    /// What the log calls it: the path or the URL without a password.
    name: String,
    max_key_size: usize,
    max_value_size: usize,
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Redis(redis::Redis),
}

/// What a store operation failed with: the cause, for the guest and the log.
#[derive(Debug, Clone)]
pub struct StoreError(pub String);

type Outcome<T> = std::result::Result<T, StoreError>;

/// The longest bucket name; names are letters, digits, `-`, `_` and `.`.
const MAX_BUCKET_NAME: usize = 64;

/// Keys per `list-keys` page.
const PAGE: usize = 1000;

/// `--keyvalue`: not empty, which SQLite would take for a temporary
/// database, gone at exit.
fn parse_store(text: &str) -> std::result::Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty: name a SQLite database file or a redis:// URL".into());
    }
    Ok(text.into())
}

impl Store {
    /// Opens the store `args` names, if any; fails with one line naming it.
    pub fn open(args: &KeyValueArgs) -> Result<Option<Arc<Store>>> {
        let Some(spec) = &args.store else {
            return Ok(None);
        };
        let (backend, name) = if spec.starts_with("redis://") || spec.starts_with("rediss://") {
            let redis = redis::Redis::new(spec, &args.data)?;
            let name = redis.name().to_string();
            (Backend::Redis(redis), name)
        } else {
            (
                Backend::Sqlite(sqlite::Sqlite::open(spec, &args.data)?),
                spec.clone(),
            )
        };
        tracing::info!(store = %name, "key-value store ready");
        Ok(Some(Arc::new(Store {
            backend,
            name,
            max_key_size: usize::try_from(args.max_key_size).unwrap_or(usize::MAX),
            max_value_size: usize::try_from(args.max_value_size).unwrap_or(usize::MAX),
        })))
    }

    fn check_key(&self, key: &str) -> Result<(), Error> {
        if key.len() > self.max_key_size {
            return Err(Error::Other(format!(
                "key of {} bytes is longer than --keyvalue-max-key-size ({} bytes)",
                key.len(),
                self.max_key_size
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), Error> {
        if value.len() > self.max_value_size {
            return Err(Error::Other(format!(
                "value of {} bytes is larger than --keyvalue-max-value-size ({} bytes)",
                value.len(),
                self.max_value_size
            )));
        }
        Ok(())
    }

    /// The guest's error for a failed operation; the host's log line.
    fn failed(&self, op: &str, err: StoreError) -> Error {
        tracing::warn!(store = %self.name, "key-value {op} failed: {}", err.0);
        Error::Other(err.0)
    }

    async fn get(&self, bucket: &str, key: String) -> Outcome<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Sqlite(db) => db.get(bucket, key).await,
            Backend::Redis(db) => db.get(bucket, &key).await,
        }
    }

    async fn set(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Outcome<()> {
        match &self.backend {
            Backend::Sqlite(db) => db.set(bucket, entries).await,
            Backend::Redis(db) => db.set(bucket, entries).await,
        }
    }

    async fn delete(&self, bucket: &str, keys: Vec<String>) -> Outcome<()> {
        match &self.backend {
            Backend::Sqlite(db) => db.delete(bucket, keys).await,
            Backend::Redis(db) => db.delete(bucket, keys).await,
        }
    }

    async fn exists(&self, bucket: &str, key: String) -> Outcome<bool> {
        match &self.backend {
            Backend::Sqlite(db) => db.exists(bucket, key).await,
            Backend::Redis(db) => db.exists(bucket, &key).await,
        }
    }

    async fn list(&self, bucket: &str, cursor: u64) -> Outcome<(Vec<String>, Option<u64>)> {
        match &self.backend {
            Backend::Sqlite(db) => db.list(bucket, cursor, PAGE).await,
            Backend::Redis(db) => db.list(bucket, cursor, PAGE).await,
        }
    }

    async fn increment(&self, bucket: &str, key: String, delta: u64) -> Outcome<u64> {
        match &self.backend {
            Backend::Sqlite(db) => db.increment(bucket, key, delta).await,
            Backend::Redis(db) => db.increment(bucket, &key, delta).await,
        }
    }

    async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Outcome<Vec<Option<(String, Vec<u8>)>>> {
        match &self.backend {
            Backend::Sqlite(db) => db.get_many(bucket, keys).await,
            Backend::Redis(db) => db.get_many(bucket, keys).await,
        }
    }
}

/// An open bucket, in the guest's resource table.
pub struct Bucket {
    name: Arc<str>,
}

/// What the `wasi:keyvalue` host functions see of a request's state.
pub struct KeyValue<'a> {
    store: Option<&'a Store>,
    table: &'a mut ResourceTable,
}

impl<'a> KeyValue<'a> {
    /// The view of `store` (if granted) and the guest's `table`.
    pub fn new(store: Option<&'a Store>, table: &'a mut ResourceTable) -> Self {
        Self { store, table }
    }

    /// The store and the bucket's name, or the error for the guest.
    fn bucket(
        &self,
        bucket: &Resource<Bucket>,
    ) -> wasmtime::Result<Result<(&'a Store, Arc<str>), Error>> {
        let name = self.table.get(bucket)?.name.clone();
        Ok(self
            .store
            .map(|store| (store, name))
            .ok_or(Error::AccessDenied))
    }
}

/// Links `wasi:keyvalue` store, atomics and batch for every guest; without
/// a store, `open` answers `access-denied`.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> Result<()> {
    store::add_to_linker::<_, HasKeyValue>(linker, GuestState::keyvalue)?;
    atomics::add_to_linker::<_, HasKeyValue>(linker, GuestState::keyvalue)?;
    batch::add_to_linker::<_, HasKeyValue>(linker, GuestState::keyvalue)?;
    Ok(())
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValue<'a>;
}

/// Returns early with the guest's error.
macro_rules! guest_try {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(err) => return Ok(Err(err)),
        }
    };
}

impl store::Host for KeyValue<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        if self.store.is_none() {
            return Ok(Err(Error::AccessDenied));
        }
        let name = if identifier.is_empty() {
            "default"
        } else {
            identifier.as_str()
        };
        let valid = name.len() <= MAX_BUCKET_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Ok(Err(Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(Bucket { name: name.into() })?))
    }
}

impl store::HostBucket for KeyValue<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (store, name) = guest_try!(self.bucket(&bucket)?);
        guest_try!(store.check_key(&key));
        Ok(store
            .get(&name, key)
            .await
            .map_err(|e| store.failed("get", e)))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (store, name) = guest_try!(self.bucket(&bucket)?);
        guest_try!(store.check_key(&key));
        guest_try!(store.check_value(&value));
        Ok(store
            .set(&name, vec![(key, value)])
            .await
            .map_err(|e| store.failed("set", e)))
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (store, name) = guest_try!(self.bucket(&bucket)?);
        guest_try!(store.check_key(&key));
        Ok(store
            .delete(&name, vec![key])
            .await
            .map_err(|e| store.failed("delete", e)))
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let (store, name) = guest_try!(self.bucket(&bucket)?);
        guest_try!(store.check_key(&key));
        Ok(store
            .exists(&name, key)
            .await
            .map_err(|e| store.failed("exists", e)))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let (store, name) = guest_try!(self.bucket(&bucket)?);
        let listed = store.list(&name, cursor.unwrap_or(0)).await;
        Ok(listed
            .map(|(keys, cursor)| KeyResponse { keys, cursor })
            .map_err(|e| store.failed("list-keys", e)))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValue<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let (store, name) = guest_try!(self.bucket(&bucket)?);
        guest_try!(store.check_key(&key));
        Ok(store
            .increment(&name, key, delta)
            .await
            .map_err(|e| store.failed("increment", e)))
    }
}

impl batch::Host for KeyValue<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, Error>> {
        let (store, name) = guest_try!(self.bucket(&bucket)?);
        for key in &keys {
            guest_try!(store.check_key(key));
        }
        Ok(store
            .get_many(&name, keys)
            .await
            .map_err(|e| store.failed("get-many", e)))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (store, name) = guest_try!(self.bucket(&bucket)?);
        for (key, value) in &entries {
            guest_try!(store.check_key(key));
            guest_try!(store.check_value(value));
        }
        Ok(store
            .set(&name, entries)
            .await
            .map_err(|e| store.failed("set-many", e)))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (store, name) = guest_try!(self.bucket(&bucket)?);
        for key in &keys {
            guest_try!(store.check_key(key));
        }
        Ok(store
            .delete(&name, keys)
            .await
            .map_err(|e| store.failed("delete-many", e)))
    }
}
