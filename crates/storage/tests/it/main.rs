//! Storage integration tests: one suite, written once (`suite.rs`), run against every backend.
//!
//! `storage_suite!` instantiates each suite function twice, as `sqlite::NAME` and
//! `postgres::NAME`, each on a fresh store (see `harness.rs`):
//!
//! - SQLite: a new file in a new temporary directory (its parent directories created by the
//!   store), removed afterwards.
//! - PostgreSQL: a new schema `sy_test_*` in the database at `SWITCHYARD_TEST_POSTGRES_URL`
//!   (default `postgres://postgres@127.0.0.1:5432/test`), selected with the connection option
//!   `-c search_path=...` and dropped with `CASCADE` afterwards, so tests run in parallel.
//!   An unreachable PostgreSQL fails these tests with a message saying so; they never skip.
//!
//! Run one backend with `cargo test -p switchyard-storage -- sqlite::` (or `postgres::`).

mod connect;
mod harness;
mod suite;

/// Instantiates every listed suite function for every backend.
macro_rules! storage_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::harness::run(crate::harness::Kind::Sqlite, crate::suite::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::harness::run(crate::harness::Kind::Postgres, crate::suite::$name).await;
                }
            )*
        }
    };
}

storage_suite!(
    connect_reports_backend_and_pings,
    migrations_are_idempotent,
    newer_schema_is_refused,
    environments_create_list_conflict,
    flag_lifecycle_versions_and_timestamps,
    stale_version_is_a_conflict_that_changes_nothing,
    expectations,
    batch_is_all_or_nothing,
    batch_applies_in_order_and_audits_each_item,
    segments_lifecycle,
    write_document_is_all_or_nothing,
    audit_records_who_what_why,
    audit_filters_and_pagination,
    tokens_lifecycle,
    token_audit_never_contains_the_secret_hash,
    revision_counts_writes_not_reads,
    meta_get_set,
    sessions_are_shared_touched_and_expire,
    concurrent_writers_exactly_one_wins,
    awkward_strings_survive,
    audit_log_is_append_only,
    corrupt_json_is_reported,
    acknowledged_writes_survive_kill_9,
    every_change_is_in_the_feed_with_its_current_row,
    a_pruned_feed_asks_for_a_full_reload,
    a_write_transaction_holds_the_lock_for_every_store,
    a_transaction_that_writes_nothing_leaves_the_revision,
    commits_wake_subscribers_of_every_store,
    active_token_names_are_unique,
    audit_entries_keep_the_actor_id_and_its_name,
    a_closed_store_is_unavailable,
    events_append_in_batches_deduplicated_outside_the_write_path,
    experiments_records_exposures_and_unit_days,
    summaries_in_ranges_add_up_to_one_statement,
);

/// The writer half of `acknowledged_writes_survive_kill_9`: does nothing unless that test
/// started this binary as a child process (with `SWITCHYARD_STORAGE_CRASH_URL` set).
#[test]
fn crash_child() {
    harness::crash_child();
}
