//! The SDK against a real node (and, for images, a real registry): every method, its error
//! variants, stream order, and the examples of `docs/sdk-rust.md` run as they are.

mod code;
mod databases;
mod examples;
mod files;
mod harness;
mod images;
mod keys;
mod node;
mod nodes;
mod processes;
mod registry;
mod sandboxes;
mod services;
mod volumes;

use std::process::ExitCode;

use harness::Test;

/// `Test::Async` for an async test function taking the shared context.
macro_rules! test {
    ($path:path) => {
        Test::Async(stringify!($path), |ctx| Box::pin($path(ctx)))
    };
}

fn main() -> ExitCode {
    harness::run(vec![
        test!(sandboxes::create_list_info_and_lifetime),
        test!(sandboxes::pause_then_work_answers_paused_until_resumed),
        test!(sandboxes::metrics_and_expose),
        test!(sandboxes::killed_sandbox_answers_ended_and_unknown_answers_not_found),
        test!(sandboxes::unreachable_node_is_a_transport_error),
        test!(code::run_answers_results_logs_and_code_errors),
        test!(code::run_options_language_env_timeout),
        test!(code::run_stream_events_come_in_order_and_done_last),
        test!(code::contexts_keep_state_until_restarted),
        test!(code::shell_with_options),
        test!(files::text_and_bytes_round_trip_and_list),
        test!(files::file_errors_have_their_variants),
        test!(files::raw_transfers_of_any_size_stream_both_ways),
        test!(files::watch_poll_and_event_stream),
        test!(processes::commands_start_follow_wait_list_kill),
        test!(processes::pty_create_input_output_resize_kill),
        test!(keys::create_list_revoke_and_scopes),
        test!(nodes::list_shows_the_node_itself_and_wants_admin),
        test!(nodes::drained_node_refuses_creates),
        test!(images::pull_stream_reports_progress_then_done),
        test!(images::pull_list_get_and_delete),
        test!(images::sandbox_starts_from_a_pulled_image),
        test!(images::import_a_docker_save_archive),
        test!(images::image_errors_have_their_variants),
        test!(volumes::create_list_get_mount_and_delete),
        test!(volumes::volume_errors_have_their_variants),
        test!(volumes::snapshot_forks_a_sandbox),
        test!(services::deploy_wait_logs_stop_start_and_delete),
        test!(services::redeploy_replaces_the_instance_or_keeps_the_old_one),
        test!(services::service_errors_have_their_variants),
        test!(databases::create_connect_reset_password_and_delete),
        test!(databases::database_errors_have_their_variants),
        Test::Example("quickstart"),
        Test::Example("run_options"),
        Test::Example("stream"),
        Test::Example("files"),
        Test::Example("commands"),
        Test::Example("lifecycle"),
        Test::Example("terminal"),
        Test::Example("keys"),
        Test::Example("nodes"),
        Test::Example("storage"),
        Test::Example("services"),
        Test::Example("databases"),
        Test::ExampleWith("images", |ctx| {
            let registry = ctx.registry()?;
            let archive = registry.scratch("example.tar");
            registry::docker_save_archive(&archive)?;
            Ok(vec![
                registry.reference("busybox:1"),
                archive.display().to_string(),
            ])
        }),
    ])
}
