//! Code and shell through the SDK: run, run with options, the event stream, contexts and
//! shell options.

use std::sync::Arc;
use std::time::Duration;

use ai2in_client::{Error, ExecutionExt, Language, RunEvent, RunOptions, ShellOptions};
use futures_util::StreamExt;

use crate::harness::{Ctx, TestResult};

pub async fn run_answers_results_logs_and_code_errors(ctx: Arc<Ctx>) -> TestResult {
    let execution = ctx.shared.run("print('a')\n6 * 7").await?;
    assert_eq!(execution.text(), Some("42"));
    assert_eq!(execution.stdout(), "a\n");
    assert!(execution.error.is_none());
    let failed = ctx.shared.run("raise ValueError('nope')").await?;
    let error = failed.error.expect("the code raised");
    assert_eq!(
        (error.name.as_str(), error.value.as_str()),
        ("ValueError", "nope")
    );
    Ok(())
}

pub async fn run_options_language_env_timeout(ctx: Arc<Ctx>) -> TestResult {
    let js = ctx
        .shared
        .run_with(
            RunOptions::new("process.env.WHO + '!'")
                .language(Language::Javascript)
                .env("WHO", "js"),
        )
        .await?;
    assert_eq!(js.text(), Some("'js!'"), "{js:?}");
    let bash = ctx
        .shared
        .run_with(RunOptions::new("echo hi; false").language(Language::Bash))
        .await?;
    assert_eq!((bash.stdout().as_str(), bash.exit_code), ("hi\n", Some(1)));
    let slow = ctx
        .shared
        .run_with(
            RunOptions::new("import time; time.sleep(30)").timeout(Duration::from_millis(500)),
        )
        .await?;
    assert!(
        slow.error.is_some(),
        "a timeout is an error of the run: {slow:?}"
    );
    let bad = ctx
        .shared
        .run_with(RunOptions::new("1").context("ctx_nosuch"))
        .await;
    assert!(
        matches!(bad, Err(Error::NotFound { .. } | Error::BadRequest { .. })),
        "{bad:?}"
    );
    Ok(())
}

pub async fn run_stream_events_come_in_order_and_done_last(ctx: Arc<Ctx>) -> TestResult {
    let code = "import sys, time\nprint('one', flush=True)\ntime.sleep(0.2)\nprint('two', file=sys.stderr, flush=True)\n'three'";
    let events: Vec<RunEvent> = ctx
        .shared
        .run_stream(code)
        .await?
        .map(|e| e.expect("an event"))
        .collect()
        .await;
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            RunEvent::Stdout(t) => format!("stdout {t}"),
            RunEvent::Stderr(t) => format!("stderr {t}"),
            RunEvent::Result(r) => format!("result {}", r.data["text/plain"]),
            RunEvent::Error(e) => format!("error {}", e.name),
            RunEvent::Done(x) => format!("done {:?}", x.text()),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "stdout one\n",
            "stderr two\n",
            "result \"'three'\"",
            "done Some(\"'three'\")"
        ],
    );

    let mut failing = ctx.shared.run_stream("1/0").await?;
    let mut names = Vec::new();
    while let Some(event) = failing.next().await {
        names.push(match event? {
            RunEvent::Error(e) => e.name,
            RunEvent::Done(x) => format!("done {}", x.error.is_some()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(names, ["ZeroDivisionError", "done true"]);
    Ok(())
}

pub async fn contexts_keep_state_until_restarted(ctx: Arc<Ctx>) -> TestResult {
    let contexts = ctx.shared.contexts();
    let created = contexts.create(Language::Python, Some("/tmp")).await?;
    assert_eq!(
        (created.language.as_str(), created.cwd.as_str()),
        ("python", "/tmp")
    );
    let in_ctx = |code: &str| RunOptions::new(code).context(&created.context_id);
    ctx.shared.run_with(in_ctx("x = 5")).await?;
    assert_eq!(
        ctx.shared.run_with(in_ctx("x + 1")).await?.text(),
        Some("6")
    );
    assert!(
        contexts
            .list()
            .await?
            .iter()
            .any(|c| c.context_id == created.context_id)
    );
    contexts.restart(&created.context_id).await?;
    let gone = ctx.shared.run_with(in_ctx("x")).await?;
    assert_eq!(gone.error.map(|e| e.name).as_deref(), Some("NameError"));
    contexts.delete(&created.context_id).await?;
    assert!(
        !contexts
            .list()
            .await?
            .iter()
            .any(|c| c.context_id == created.context_id)
    );
    Ok(())
}

pub async fn shell_with_options(ctx: Arc<Ctx>) -> TestResult {
    let out = ctx
        .shared
        .shell_with(
            ShellOptions::new("echo \"$PWD $A $(cat)\"; id -un")
                .cwd("/tmp")
                .env("A", "b")
                .stdin("in")
                .user("user"),
        )
        .await?;
    assert_eq!(out.stdout, "/tmp b in\nuser\n");
    let failed = ctx.shared.shell("echo no >&2; exit 3").await?;
    assert_eq!(
        (failed.stderr.as_str(), failed.exit_code),
        ("no\n", Some(3))
    );
    let slow = ctx
        .shared
        .shell_with(ShellOptions::new("sleep 30").timeout(Duration::from_millis(300)))
        .await?;
    assert_eq!(slow.exit_code, None);
    assert!(slow.error.is_some());
    Ok(())
}
