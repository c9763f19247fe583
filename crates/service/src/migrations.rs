//! Checks that a database has every migration a service needs, for a
//! service that runs as a role that may not apply them
//! (`DATABASE_MIGRATIONS=verify`): a migration job applies them first
//! (`--migrate-only` with `MIGRATION_DATABASE_URL`).

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::PgPool;

/// One row of sqlx's `_sqlx_migrations`: version, checksum, success.
pub type Applied = (i64, Vec<u8>, bool);

/// Fails, naming what is wrong, unless every up migration of `migrators`
/// is applied, successfully and with the same contents.
pub async fn verify(pool: &PgPool, migrators: &[&Migrator]) -> anyhow::Result<()> {
    // Not `query_as!`: `_sqlx_migrations` is sqlx's own table, which a
    // database may not have yet (the error below).
    let applied: Vec<Applied> =
        match sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations")
            .fetch_all(pool)
            .await
        {
            Ok(rows) => rows,
            // undefined_table: nothing was ever applied
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e).context("reading _sqlx_migrations"),
        };
    let problems = problems(&applied, migrators);
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "the database is not migrated: {}; run the migration job first (the service with \
             --migrate-only and MIGRATION_DATABASE_URL set to the schema owner's role)",
            problems.join("; ")
        )
    }
}

/// What [`verify`] reports, one entry per migration.
pub fn problems(applied: &[Applied], migrators: &[&Migrator]) -> Vec<String> {
    let mut out = Vec::new();
    for m in migrators
        .iter()
        .flat_map(|m| m.iter())
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match applied.iter().find(|(version, _, _)| *version == m.version) {
            None => out.push(format!("{} ({}) is missing", m.version, m.description)),
            Some((_, _, false)) => out.push(format!("{} ({}) failed", m.version, m.description)),
            Some((_, checksum, true)) if checksum.as_slice() != &*m.checksum => out.push(format!(
                "{} ({}) was applied with other contents",
                m.version, m.description
            )),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied_all(migrator: &Migrator) -> Vec<Applied> {
        migrator
            .iter()
            .map(|m| (m.version, m.checksum.to_vec(), true))
            .collect()
    }

    #[test]
    fn every_migration_applied_is_fine() {
        let events = orderflow_events::migrator();
        assert!(problems(&applied_all(&events), &[&events]).is_empty());
    }

    #[test]
    fn missing_failed_and_changed_migrations_are_each_named() {
        let events = orderflow_events::migrator();
        let versions: Vec<i64> = events.iter().map(|m| m.version).collect();
        assert!(versions.len() >= 3, "the events crate has migrations");
        let mut applied = applied_all(&events);
        applied.retain(|(v, _, _)| *v != versions[0]);
        applied
            .iter_mut()
            .find(|(v, _, _)| *v == versions[1])
            .expect("second")
            .2 = false;
        applied
            .iter_mut()
            .find(|(v, _, _)| *v == versions[2])
            .expect("third")
            .1 = vec![0; 48];
        let found = problems(&applied, &[&events]);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with(&format!("{} (", versions[0])) && found[0].ends_with("is missing")
        );
        assert!(found[1].ends_with("failed"), "{found:?}");
        assert!(
            found[2].ends_with("was applied with other contents"),
            "{found:?}"
        );
    }

    #[tokio::test]
    async fn a_real_database_is_checked_through_its_migrations_table() {
        let db = orderflow_events::testing::TestDatabase::new().await;
        let events = orderflow_events::migrator();
        verify(&db.pool, &[&events])
            .await
            .expect("every events migration is applied");
        let last = events.iter().map(|m| m.version).max().expect("a migration");
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
            .bind(last)
            .execute(&db.pool)
            .await
            .expect("forget one");
        let e = verify(&db.pool, &[&events])
            .await
            .expect_err("a missing migration is refused");
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&format!("{last} (")) && msg.contains("is missing"),
            "{msg}"
        );
        assert!(msg.contains("--migrate-only"), "says what to do: {msg}");
        sqlx::query("DROP TABLE _sqlx_migrations")
            .execute(&db.pool)
            .await
            .expect("drop the table");
        let e = verify(&db.pool, &[&events])
            .await
            .expect_err("a database never migrated is refused");
        assert!(format!("{e:#}").contains("is missing"), "{e:#}");
    }

    #[test]
    fn an_empty_database_misses_everything() {
        let events = orderflow_events::migrator();
        assert_eq!(problems(&[], &[&events]).len(), events.iter().count());
    }
}
