//! The control layer against real databases: every test runs on SQLite and on the real
//! PostgreSQL (a fresh schema each), with as many replicas as it needs.

mod changes;
mod experiments;
mod harness;
mod ops;
mod replicas;
mod rollouts;
mod schedules;

/// Instantiates each listed test function for both backends.
macro_rules! on_both {
    ($tests:ident = $module:ident: $($name:ident),* $(,)?) => {
        mod $tests {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        crate::harness::run(crate::harness::Kind::Sqlite, crate::$module::$name).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        crate::harness::run(crate::harness::Kind::Postgres, crate::$module::$name).await;
                    }
                )*
            }
        }
    };
}

on_both!(replica_races = replicas:
    an_acknowledged_kill_switch_is_never_undone,
    a_replacement_without_if_match_is_refused,
    a_cross_replica_cycle_cannot_wedge_the_store,
    a_deleted_prerequisite_cannot_be_required_concurrently,
    the_last_admin_token_survives_concurrent_revokes,
    replicas_starting_together_bootstrap_once,
    a_change_reaches_the_other_replica,
);

on_both!(operations = ops:
    no_op_writes_change_nothing_and_say_so,
    operations_work_on_compact_layout_flags,
    an_import_at_start_keeps_runtime_changes,
    the_audit_log_records_the_actor_id,
    mistakes_name_what_exists,
    a_flag_file_is_served_and_read_only,
    the_snapshot_file_serves_until_the_store_answers,
);

on_both!(experiment_runs = experiments:
    the_lifecycle_changes_the_flag_in_the_same_transaction,
    a_known_effect_is_detected,
    cuped_narrows_the_interval_with_the_pre_period,
    a_a_experiments_keep_their_false_positive_rate,
    guardrails_and_sample_ratio_mismatches_pause_experiments,
);

on_both!(scheduled_changes = schedules:
    schedules_run_once_late_or_fail_cleanly,
    the_stale_report_lists_exactly_the_stale_flags,
);

on_both!(progressive_rollouts = rollouts:
    a_rollout_advances_on_green_waits_for_approval_and_rolls_back_on_red,
    probes_gate_rollouts_and_last_healthy_is_honoured,
    a_guard_trips_the_kill_switch_once_and_cools_down,
    a_latency_gate_compares_the_percentile_with_the_baseline,
);

on_both!(promotion_and_bulk = changes:
    promotion_copies_an_environment_and_bulk_changes_are_all_or_nothing,
);
