//! Every service runs as a role that can only read and write its own rows
//! (deploy/postgres/service-roles.sql): it cannot create or drop tables, and
//! cannot even connect to another service's database. Its migrations ran
//! as the owner role.

use orderflow_e2e::stack::roles;
use orderflow_e2e::{Service, Stack, StackOptions};
use sqlx::{Connection, PgConnection};

/// PostgreSQL's `insufficient_privilege`.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_runs_as_a_role_that_only_reads_and_writes_its_own_rows() {
    let stack = Stack::start(StackOptions::default()).await;

    for svc in Service::ALL {
        let url = stack.database_url(svc);
        let admin = stack.db(svc).await;

        // The service's connections are the app role's, none the admin's
        // or the owner's (whose migration pool is closed once it is done).
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT usename::text FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND usename <> current_user",
        )
        .fetch_all(&admin)
        .await
        .expect("connections");
        assert_eq!(
            users,
            vec![roles::app(svc)],
            "{}: who is connected",
            svc.name()
        );

        // The schema is the owner's, and so is every table.
        let not_owned: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tableowner <> $1",
        )
        .bind(roles::owner(svc))
        .fetch_all(&admin)
        .await
        .expect("owners");
        assert!(
            not_owned.is_empty(),
            "{}: tables not owned by the owner role: {not_owned:?}",
            svc.name()
        );

        let mut app = PgConnection::connect(&roles::as_role(url, &roles::app(svc)).expect("url"))
            .await
            .expect("the app role connects to its own database");
        let outbox_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&mut app)
            .await
            .expect("the app role reads its rows");
        assert!(outbox_rows >= 0);
        for (what, sql) in [
            ("create a table", "CREATE TABLE intruder (id int)"),
            ("drop a table", "DROP TABLE outbox"),
            (
                "alter a table",
                "ALTER TABLE outbox ADD COLUMN intruder int",
            ),
            ("truncate a table", "TRUNCATE outbox"),
        ] {
            let e = sqlx::query(sql)
                .execute(&mut app)
                .await
                .expect_err(&format!("{}: the app role must not {what}", svc.name()));
            assert_eq!(
                sqlstate(&e).as_deref(),
                Some(INSUFFICIENT_PRIVILEGE),
                "{}: {what}: {e}",
                svc.name()
            );
        }
        app.close().await.ok();

        // Another service's database is closed to it.
        for other in Service::ALL.into_iter().filter(|o| *o != svc) {
            let e = PgConnection::connect(
                &roles::as_role(stack.database_url(other), &roles::app(svc)).expect("url"),
            )
            .await
            .err()
            .unwrap_or_else(|| {
                panic!(
                    "{}'s role connected to {}'s database",
                    svc.name(),
                    other.name()
                )
            });
            assert_eq!(
                sqlstate(&e).as_deref(),
                Some(INSUFFICIENT_PRIVILEGE),
                "{} into {}: {e}",
                svc.name(),
                other.name()
            );
        }
    }
}
