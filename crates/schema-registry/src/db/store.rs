//! Queries over the `schemas`, `subject_versions` and `config` tables.
//!
//! Every function takes a connection so the caller decides the transaction.

use sqlx::PgConnection;

/// Key of the transaction-scoped advisory lock that serialises registrations
/// and deletions ("SREG" in ASCII).
const REGISTRY_LOCK_KEY: i64 = 0x5352_4547;

/// The subject name under which the global compatibility level is stored.
pub const GLOBAL_SUBJECT: &str = "";

/// One version of a subject, joined with its schema.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubjectVersion {
    /// The subject name.
    pub subject: String,
    /// The version number within the subject, from 1.
    pub version: i32,
    /// The global schema id.
    pub schema_id: i32,
    /// The schema text as first registered.
    pub schema_text: String,
    /// The schema type, always `AVRO` today.
    pub schema_type: String,
    /// Whether the version was soft-deleted.
    pub deleted: bool,
}

/// A schema by global id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredSchema {
    /// The global schema id.
    pub id: i32,
    /// The schema text as first registered.
    pub schema_text: String,
    /// The schema type, always `AVRO` today.
    pub schema_type: String,
}

/// `query_as!` of [`SubjectVersion`]s: `SELECT … FROM subject_versions sv
/// JOIN schemas s` followed by `$tail`.
macro_rules! select_versions {
    ($tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            SubjectVersion,
            "SELECT sv.subject, sv.version, sv.schema_id, s.schema_text, s.schema_type, sv.deleted \
             FROM subject_versions sv JOIN schemas s ON s.id = sv.schema_id " + $tail
            $(, $arg)*
        )
    };
}

/// Takes the registry-wide lock until the current transaction ends, so that
/// concurrent registrations see each other's versions and ids.
pub async fn lock_registry(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", REGISTRY_LOCK_KEY)
        .execute(conn)
        .await?;
    Ok(())
}

/// The version of `subject` holding the schema with `fingerprint`, the
/// lowest one if several do (a schema re-registered after a soft delete).
pub async fn find_by_fingerprint(
    conn: &mut PgConnection,
    subject: &str,
    fingerprint: &str,
    include_deleted: bool,
) -> sqlx::Result<Option<SubjectVersion>> {
    select_versions!(
        "WHERE sv.subject = $1 AND s.fingerprint = $2 \
         AND (NOT sv.deleted OR $3) ORDER BY sv.deleted, sv.version LIMIT 1",
        subject,
        fingerprint,
        include_deleted
    )
    .fetch_optional(conn)
    .await
}

/// All versions of `subject`, oldest first.
pub async fn versions(
    conn: &mut PgConnection,
    subject: &str,
    include_deleted: bool,
) -> sqlx::Result<Vec<SubjectVersion>> {
    select_versions!(
        "WHERE sv.subject = $1 AND (NOT sv.deleted OR $2) ORDER BY sv.version",
        subject,
        include_deleted
    )
    .fetch_all(conn)
    .await
}

/// One version of `subject`, deleted or not.
pub async fn version(
    conn: &mut PgConnection,
    subject: &str,
    version: i32,
) -> sqlx::Result<Option<SubjectVersion>> {
    select_versions!(
        "WHERE sv.subject = $1 AND sv.version = $2",
        subject,
        version
    )
    .fetch_optional(conn)
    .await
}

/// The highest live version of `subject`.
pub async fn latest(
    conn: &mut PgConnection,
    subject: &str,
) -> sqlx::Result<Option<SubjectVersion>> {
    select_versions!(
        "WHERE sv.subject = $1 AND NOT sv.deleted ORDER BY sv.version DESC LIMIT 1",
        subject
    )
    .fetch_optional(conn)
    .await
}

/// Whether `subject` has any version (live only, unless `include_deleted`).
pub async fn subject_exists(
    conn: &mut PgConnection,
    subject: &str,
    include_deleted: bool,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM subject_versions
           WHERE subject = $1 AND (NOT deleted OR $2)) AS "exists!""#,
        subject,
        include_deleted
    )
    .fetch_one(conn)
    .await
}

/// Subject names, sorted.
pub async fn subjects(conn: &mut PgConnection, include_deleted: bool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT DISTINCT subject FROM subject_versions WHERE NOT deleted OR $1 ORDER BY subject",
        include_deleted
    )
    .fetch_all(conn)
    .await
}

/// Stores a schema unless one with the same fingerprint exists; returns the
/// id either way.
pub async fn upsert_schema(
    conn: &mut PgConnection,
    fingerprint: &str,
    text: &str,
    schema_type: &str,
) -> sqlx::Result<i32> {
    let inserted: Option<i32> = sqlx::query_scalar!(
        "INSERT INTO schemas (fingerprint, schema_text, schema_type) VALUES ($1, $2, $3) \
         ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
        fingerprint,
        text,
        schema_type
    )
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar!("SELECT id FROM schemas WHERE fingerprint = $1", fingerprint)
                .fetch_one(conn)
                .await
        }
    }
}

/// Adds the next version of `subject` (numbering continues past deleted
/// versions, as in Confluent) and returns its number.
pub async fn add_version(
    conn: &mut PgConnection,
    subject: &str,
    schema_id: i32,
) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "INSERT INTO subject_versions (subject, version, schema_id) \
         SELECT $1, COALESCE(MAX(version), 0) + 1, $2 FROM subject_versions WHERE subject = $1 \
         RETURNING version",
        subject,
        schema_id
    )
    .fetch_one(conn)
    .await
}

/// A schema by global id.
pub async fn schema_by_id(conn: &mut PgConnection, id: i32) -> sqlx::Result<Option<StoredSchema>> {
    sqlx::query_as!(
        StoredSchema,
        "SELECT id, schema_text, schema_type FROM schemas WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await
}

/// Live (subject, version) pairs that use schema `id`.
pub async fn usages(conn: &mut PgConnection, id: i32) -> sqlx::Result<Vec<(String, i32)>> {
    let rows = sqlx::query!(
        "SELECT subject, version FROM subject_versions WHERE schema_id = $1 AND NOT deleted \
         ORDER BY subject, version",
        id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.subject, r.version)).collect())
}

/// Soft-deletes every live version of `subject`; returns their numbers.
pub async fn soft_delete_subject(conn: &mut PgConnection, subject: &str) -> sqlx::Result<Vec<i32>> {
    let mut deleted: Vec<i32> = sqlx::query_scalar!(
        "UPDATE subject_versions SET deleted = TRUE WHERE subject = $1 AND NOT deleted \
         RETURNING version",
        subject
    )
    .fetch_all(conn)
    .await?;
    deleted.sort_unstable();
    Ok(deleted)
}

/// Removes every version of `subject`; returns their numbers.
pub async fn hard_delete_subject(conn: &mut PgConnection, subject: &str) -> sqlx::Result<Vec<i32>> {
    let mut deleted: Vec<i32> = sqlx::query_scalar!(
        "DELETE FROM subject_versions WHERE subject = $1 RETURNING version",
        subject
    )
    .fetch_all(conn)
    .await?;
    deleted.sort_unstable();
    Ok(deleted)
}

/// Soft-deletes (`permanent == false`) or removes one version.
pub async fn delete_version(
    conn: &mut PgConnection,
    subject: &str,
    version: i32,
    permanent: bool,
) -> sqlx::Result<()> {
    if permanent {
        sqlx::query!(
            "DELETE FROM subject_versions WHERE subject = $1 AND version = $2",
            subject,
            version
        )
        .execute(conn)
        .await?;
    } else {
        sqlx::query!(
            "UPDATE subject_versions SET deleted = TRUE WHERE subject = $1 AND version = $2",
            subject,
            version
        )
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// The compatibility level stored for `subject` (or [`GLOBAL_SUBJECT`]).
pub async fn config(conn: &mut PgConnection, subject: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "SELECT compatibility FROM config WHERE subject = $1",
        subject
    )
    .fetch_optional(conn)
    .await
}

/// Stores the compatibility level for `subject` (or [`GLOBAL_SUBJECT`]).
pub async fn set_config(
    conn: &mut PgConnection,
    subject: &str,
    compatibility: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO config (subject, compatibility) VALUES ($1, $2) \
         ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility",
        subject,
        compatibility
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the level for `subject`; returns the removed value, if any.
pub async fn delete_config(conn: &mut PgConnection, subject: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "DELETE FROM config WHERE subject = $1 RETURNING compatibility",
        subject
    )
    .fetch_optional(conn)
    .await
}
