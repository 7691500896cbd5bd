//! The SQLite store (sqlx, WAL). Each object is one row: a few indexed columns plus the whole
//! record as JSON. A partial unique index allows at most one active lease per exporter, so a
//! bug in the scheduler can never lease an exporter twice: the transaction fails instead.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::model::{ClientRecord, ExporterRecord, LeaseRecord};

/// Schema version written to `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    namespace TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (namespace, name));
CREATE TABLE IF NOT EXISTS exporters (
    namespace TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (namespace, name));
CREATE TABLE IF NOT EXISTS leases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL, name TEXT NOT NULL, client TEXT NOT NULL,
    ended INTEGER NOT NULL, st_exporter TEXT, data TEXT NOT NULL,
    UNIQUE (namespace, name));
CREATE UNIQUE INDEX IF NOT EXISTS leases_one_active_per_exporter
    ON leases (namespace, st_exporter) WHERE ended = 0 AND st_exporter IS NOT NULL;
CREATE INDEX IF NOT EXISTS leases_active ON leases (ended, seq);
"#;

/// Store failures, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the database {path}: {source}. If the file is damaged, move it away \
         (the controller creates a new one) or restore a backup"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the database {path} was written by a newer controller (schema {found}, this one \
         knows {SCHEMA_VERSION})"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{kind}.jumpstarter.dev \"{name}\" already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind}.jumpstarter.dev \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    #[error("the credential of {kind}.jumpstarter.dev \"{name}\" was replaced meanwhile")]
    Conflict { kind: &'static str, name: String },
}

impl StoreError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Sql(sqlx::Error::Database(d)) if d.is_unique_violation())
    }
}

/// A handle on the database (cheap to clone).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// Serialises this process's write transactions (SQLite has one writer anyway).
    write: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction (`BEGIN IMMEDIATE`), holding the process-wide write lock.
pub struct Tx<'a> {
    pub conn: sqlx::Transaction<'static, sqlx::Sqlite>,
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

impl Tx<'_> {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.conn.commit().await?;
        Ok(())
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    Ok(serde_json::to_string(v)?)
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    Ok(serde_json::from_str(s)?)
}

impl Store {
    /// Opens (creating if needed) `path` in WAL mode and brings the schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&pool)
            .await
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path: path.to_owned(),
                found: version,
            });
        }
        let mut conn = pool.acquire().await.map_err(open_err)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut *conn)
            .await
            .map_err(open_err)?;
        sqlx::raw_sql("PRAGMA user_version = 1")
            .execute(&mut *conn)
            .await
            .map_err(open_err)?;
        // A damaged file can open fine and fail later; check it now.
        let check: String = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&mut *conn)
            .await
            .map_err(open_err)?;
        if check != "ok" {
            return Err(open_err(sqlx::Error::Protocol(format!(
                "integrity check failed: {check}"
            ))));
        }
        drop(conn);
        Ok(Store {
            pool,
            write: Default::default(),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx<'_>, StoreError> {
        let guard = self.write.lock().await;
        let conn = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Tx {
            conn,
            _guard: guard,
        })
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&mut *tx.conn)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // --- one record by namespace and name, in any of the record tables ---------------------

    /// `table` is one of our own table names (never user input).
    async fn record<T: DeserializeOwned>(
        &self,
        table: &'static str,
        ns: &str,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        let row: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT data FROM {table} WHERE namespace = ? AND name = ?"
        )))
        .bind(ns)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|d| from_json(&d)).transpose()
    }

    async fn records<T: DeserializeOwned>(
        &self,
        table: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT data FROM {table} ORDER BY namespace, name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|d| from_json(d)).collect()
    }

    async fn insert_record<T: Serialize>(
        &self,
        table: &'static str,
        ns: &str,
        name: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (namespace, name, data) VALUES (?, ?, ?)"
        )))
        .bind(ns)
        .bind(name)
        .bind(to_json(record)?)
        .execute(&mut *tx.conn)
        .await;
        match r {
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                return Err(StoreError::AlreadyExists {
                    kind: table,
                    name: name.to_owned(),
                });
            }
            r => {
                r?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    // --- clients -------------------------------------------------------------------------

    pub async fn client(&self, ns: &str, name: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.record("clients", ns, name).await
    }

    pub async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.records("clients").await
    }

    pub async fn insert_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        self.insert_record("clients", &c.namespace, &c.name, c)
            .await
    }

    /// Replaces a client's stored credential (token rotation): `token` must carry generation
    /// `from + 1`, and the record must still be at generation `from` (else [`StoreError::Conflict`],
    /// a concurrent rotation won). From then on only `token`'s generation authenticates.
    pub async fn rotate_client_token(
        &self,
        ns: &str,
        name: &str,
        from: u64,
        token: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let row: Option<String> =
            sqlx::query_scalar("SELECT data FROM clients WHERE namespace = ? AND name = ?")
                .bind(ns)
                .bind(name)
                .fetch_optional(&mut *tx.conn)
                .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                kind: "clients",
                name: name.into(),
            });
        };
        let mut c: ClientRecord = from_json(&row)?;
        if c.token_generation != from {
            return Err(StoreError::Conflict {
                kind: "clients",
                name: name.into(),
            });
        }
        c.token = token.to_string();
        c.token_generation = from + 1;
        sqlx::query("UPDATE clients SET data = ? WHERE namespace = ? AND name = ?")
            .bind(to_json(&c)?)
            .bind(ns)
            .bind(name)
            .execute(&mut *tx.conn)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_client(&self, ns: &str, name: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM clients WHERE namespace = ? AND name = ?")
            .bind(ns)
            .bind(name)
            .execute(&mut *tx.conn)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                kind: "clients",
                name: name.into(),
            });
        }
        tx.commit().await?;
        Ok(())
    }

    // --- exporters -----------------------------------------------------------------------

    pub async fn exporter(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<ExporterRecord>, StoreError> {
        self.record("exporters", ns, name).await
    }

    pub async fn exporters(&self) -> Result<Vec<ExporterRecord>, StoreError> {
        self.records("exporters").await
    }

    pub async fn insert_exporter(&self, e: &ExporterRecord) -> Result<(), StoreError> {
        self.insert_record("exporters", &e.namespace, &e.name, e)
            .await
    }

    /// Reads, changes and writes one exporter in a transaction. `f` returns whether it
    /// changed anything; the record after the change is returned.
    pub async fn update_exporter<F>(
        &self,
        ns: &str,
        name: &str,
        f: F,
    ) -> Result<ExporterRecord, StoreError>
    where
        F: FnOnce(&mut ExporterRecord) -> bool,
    {
        let mut tx = self.begin().await?;
        let row: Option<String> =
            sqlx::query_scalar("SELECT data FROM exporters WHERE namespace = ? AND name = ?")
                .bind(ns)
                .bind(name)
                .fetch_optional(&mut *tx.conn)
                .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                kind: "exporters",
                name: name.into(),
            });
        };
        let mut e: ExporterRecord = from_json(&row)?;
        if f(&mut e) {
            write_exporter(&mut tx.conn, &e).await?;
            tx.commit().await?;
        }
        Ok(e)
    }

    /// Deletes an exporter and, like Kubernetes garbage collection of owned objects, every
    /// lease that was ever assigned to it.
    pub async fn delete_exporter(&self, ns: &str, name: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM exporters WHERE namespace = ? AND name = ?")
            .bind(ns)
            .bind(name)
            .execute(&mut *tx.conn)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                kind: "exporters",
                name: name.into(),
            });
        }
        let leases = sqlx::query("DELETE FROM leases WHERE namespace = ? AND st_exporter = ?")
            .bind(ns)
            .bind(name)
            .execute(&mut *tx.conn)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(leases)
    }

    // --- leases --------------------------------------------------------------------------

    pub async fn lease(&self, ns: &str, name: &str) -> Result<Option<LeaseRecord>, StoreError> {
        self.record("leases", ns, name).await
    }

    /// All leases of a namespace (or of every namespace), by name.
    pub async fn leases(&self, ns: Option<&str>) -> Result<Vec<LeaseRecord>, StoreError> {
        let rows: Vec<String> = match ns {
            Some(ns) => {
                sqlx::query_scalar("SELECT data FROM leases WHERE namespace = ? ORDER BY name")
                    .bind(ns)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_scalar("SELECT data FROM leases ORDER BY namespace, name")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(|d| from_json(d)).collect()
    }

    /// The active (not ended) lease assigned to an exporter, if any.
    pub async fn active_lease_of(
        &self,
        ns: &str,
        exporter: &str,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        let row: Option<String> = sqlx::query_scalar(
            "SELECT data FROM leases WHERE namespace = ? AND st_exporter = ? AND ended = 0",
        )
        .bind(ns)
        .bind(exporter)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|d| from_json(&d)).transpose()
    }

    pub async fn insert_lease(&self, l: &LeaseRecord) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "INSERT INTO leases (namespace, name, client, ended, st_exporter, data) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&l.namespace)
        .bind(&l.name)
        .bind(&l.client)
        .bind(l.ended)
        .bind(&l.st_exporter)
        .bind(to_json(l)?)
        .execute(&mut *tx.conn)
        .await;
        match r {
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                return Err(StoreError::AlreadyExists {
                    kind: "leases",
                    name: l.name.clone(),
                });
            }
            r => {
                r?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reads, changes and writes one lease in a transaction; `f` may refuse with an error.
    pub async fn update_lease<F, E>(
        &self,
        ns: &str,
        name: &str,
        f: F,
    ) -> Result<Result<LeaseRecord, E>, StoreError>
    where
        F: FnOnce(&mut LeaseRecord) -> Result<bool, E>,
    {
        let mut tx = self.begin().await?;
        let row: Option<String> =
            sqlx::query_scalar("SELECT data FROM leases WHERE namespace = ? AND name = ?")
                .bind(ns)
                .bind(name)
                .fetch_optional(&mut *tx.conn)
                .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                kind: "leases",
                name: name.into(),
            });
        };
        let mut l: LeaseRecord = from_json(&row)?;
        match f(&mut l) {
            Ok(true) => {
                write_lease(&mut tx.conn, &l).await?;
                tx.commit().await?;
                Ok(Ok(l))
            }
            Ok(false) => Ok(Ok(l)),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Everything the scheduler needs, read inside its transaction: every exporter and every
    /// lease that has not ended, in creation order.
    pub async fn load_for_scheduling(
        conn: &mut SqliteConnection,
    ) -> Result<(Vec<ExporterRecord>, Vec<LeaseRecord>), StoreError> {
        let exporters: Vec<String> =
            sqlx::query_scalar("SELECT data FROM exporters ORDER BY namespace, name")
                .fetch_all(&mut *conn)
                .await?;
        let leases = sqlx::query("SELECT data FROM leases WHERE ended = 0 ORDER BY seq")
            .fetch_all(&mut *conn)
            .await?;
        let exporters = exporters
            .iter()
            .map(|d| from_json(d))
            .collect::<Result<Vec<_>, _>>()?;
        let leases = leases
            .iter()
            .map(|r| from_json(r.get::<&str, _>(0)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((exporters, leases))
    }
}

/// Writes a lease row (the indexed columns follow the record).
pub async fn write_lease(conn: &mut SqliteConnection, l: &LeaseRecord) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE leases SET client = ?, ended = ?, st_exporter = ?, data = ? \
         WHERE namespace = ? AND name = ?",
    )
    .bind(&l.client)
    .bind(l.ended)
    .bind(&l.st_exporter)
    .bind(to_json(l)?)
    .bind(&l.namespace)
    .bind(&l.name)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn write_exporter(
    conn: &mut SqliteConnection,
    e: &ExporterRecord,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE exporters SET data = ? WHERE namespace = ? AND name = ?")
        .bind(to_json(e)?)
        .bind(&e.namespace)
        .bind(&e.name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
