//! The store's tables: versioned migrations (in `migrations/`, applied by
//! refinery, one supervisor at a time under an advisory lock) and the
//! check that the database has the schema this program needs.

use super::{Store, StoreError};

refinery::embed_migrations!("src/store/migrations");

/// The table that records which migrations were applied.
const HISTORY_TABLE: &str = "procvisor_migrations";
/// The advisory lock key that serialises migrations ("procvisr" in ASCII).
const MIGRATION_LOCK: i64 = 0x7072_6f63_7669_7372;

/// Which schema versions the database has, and which this program knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Applied migrations: version and name.
    pub applied: Vec<(i32, String)>,
    /// The newest version this program knows.
    pub latest: i32,
}

impl SchemaStatus {
    /// Whether every migration this program knows is applied.
    pub fn is_current(&self) -> bool {
        self.applied.iter().map(|a| a.0).max() == Some(self.latest)
    }
}

fn latest() -> i32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

impl Store {
    /// Apply the migrations the database lacks (safe to run from many
    /// processes at once: they take turns). Returns the ones applied now.
    pub async fn migrate(&self) -> Result<Vec<(i32, String)>, StoreError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| StoreError::query("take the migration lock", e))?;
        let mut runner = migrations::runner();
        runner.set_migration_table_name(HISTORY_TABLE);
        let result = runner.run_async(&mut **client).await;
        let unlock = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        let report = result.map_err(|e| {
            StoreError::Schema(format!(
                "cannot migrate the database: {e}; check that the user may create tables"
            ))
        })?;
        unlock.map_err(|e| StoreError::query("release the migration lock", e))?;
        Ok(report
            .applied_migrations()
            .iter()
            .map(|m| (m.version(), m.name().to_string()))
            .collect())
    }

    /// Which migrations are applied.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL AS present",
                &[&HISTORY_TABLE],
            )
            .await
            .map_err(|e| StoreError::query("read the schema version", e))?
            .get("present");
        let applied = if exists {
            client
                .query(
                    &format!("SELECT version, name FROM {HISTORY_TABLE} ORDER BY version"),
                    &[],
                )
                .await
                .map_err(|e| StoreError::query("read the schema version", e))?
                .iter()
                .map(|r| (r.get::<_, i32>("version"), r.get::<_, String>("name")))
                .collect()
        } else {
            Vec::new()
        };
        Ok(SchemaStatus {
            applied,
            latest: latest(),
        })
    }

    /// Fail with a clear error (saying to run `procvisor db migrate`)
    /// unless the database's schema is the one this program needs.
    pub async fn require_schema(&self) -> Result<(), StoreError> {
        let s = self.schema_status().await?;
        if s.is_current() {
            Ok(())
        } else {
            Err(StoreError::Schema(format!(
                "the database's procvisor tables are at version {} but this program needs version {}: run `procvisor db migrate`",
                s.applied.iter().map(|a| a.0).max().unwrap_or(0),
                s.latest
            )))
        }
    }
}
