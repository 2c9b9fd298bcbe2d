//! A test runner of our own: one real node for the whole run, every test against it, and a
//! teardown that deletes every service, database and sandbox before stopping the node
//! (they outlive it).
//! It prints what libtest prints (`test NAME ... ok`, `test result: …`), and takes a name
//! filter as its first free argument.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::node::TestNode;
use crate::registry::Registry;

/// What a test answers; a panic fails it too.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What every test gets.
pub struct Ctx {
    pub client: ai2in_client::Client,
    /// A sandbox shared by the tests that leave it as they found it.
    pub shared: ai2in_client::Sandbox,
    /// The OCI registry of the image tests, started by the first that needs it and stopped
    /// with the context.
    registry: OnceLock<Result<Registry, String>>,
}

impl Ctx {
    /// The registry, started (and filled) on first use.
    pub fn registry(&self) -> Result<&Registry, String> {
        self.registry
            .get_or_init(Registry::start)
            .as_ref()
            .map_err(Clone::clone)
    }
}

type AsyncTest = fn(Arc<Ctx>) -> Pin<Box<dyn Future<Output = TestResult> + Send>>;

/// The arguments of an example program, from what the context holds.
type ExampleArgs = fn(&Ctx) -> Result<Vec<String>, String>;

/// One test: an async function against the node, or an example program by name (run with
/// no arguments, or with those a function of the context gives).
pub enum Test {
    Async(&'static str, AsyncTest),
    Example(&'static str),
    ExampleWith(&'static str, ExampleArgs),
}

impl Test {
    fn name(&self) -> String {
        match self {
            Test::Async(name, _) => name.to_string(),
            Test::Example(name) | Test::ExampleWith(name, _) => format!("examples::{name}"),
        }
    }
}

/// Runs the `tests` whose name contains the command line's filter.
pub fn run(tests: Vec<Test>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for test in &tests {
            println!("{}: test", test.name());
        }
        return ExitCode::SUCCESS;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let total = tests.len();
    let selected: Vec<Test> = tests
        .into_iter()
        .filter(|t| {
            filter
                .as_ref()
                .is_none_or(|f| t.name().contains(f.as_str()))
        })
        .collect();
    let filtered_out = total - selected.len();
    println!("\nrunning {} tests", selected.len());
    let started = Instant::now();

    let node = TestNode::start();
    // SAFETY: no other thread runs yet (the runtime is built below); the examples read
    // these through `Client::from_env`.
    unsafe {
        std::env::set_var("AI2IN_BASE_URL", &node.url);
        std::env::set_var("AI2IN_API_KEY", &node.admin_key);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let client = ai2in_client::Client::new(&node.url, &node.admin_key).expect("a client");
    // Whatever happens to the tests, what they made is deleted and the node stopped.
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_each(&runtime, client.clone(), &selected)
    }))
    .unwrap_or_else(|panic| vec![("harness".into(), panic_message(panic))]);
    runtime.block_on(delete_everything(&client));
    node.stop(!failed.is_empty());

    for (name, why) in &failed {
        println!("\n---- {name} ----\n{why}");
    }
    let passed = selected.len().saturating_sub(failed.len());
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `tests` one after the other; answers the failures with their reasons.
fn run_each(
    runtime: &tokio::runtime::Runtime,
    client: ai2in_client::Client,
    tests: &[Test],
) -> Vec<(String, String)> {
    let shared = runtime
        .block_on(client.create_sandbox(Default::default()))
        .expect("the shared sandbox");
    let ctx = Arc::new(Ctx {
        client,
        shared,
        registry: OnceLock::new(),
    });
    let mut failed = Vec::new();
    for test in tests {
        let started = Instant::now();
        let outcome = match test {
            Test::Async(_, f) => runtime
                .block_on(runtime.spawn(f(ctx.clone())))
                .map_err(|e| panic_message(e.into_panic())),
            Test::Example(name) => Ok(crate::examples::run(name, &[]).map_err(Into::into)),
            Test::ExampleWith(name, args) => Ok(args(&ctx)
                .and_then(|args| crate::examples::run(name, &args))
                .map_err(Into::into)),
        };
        let name = test.name();
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e}\n{e:?}")),
            Err(panic) => Some(format!("panicked: {panic}")),
        };
        let verdict = if failure.is_some() { "FAILED" } else { "ok" };
        println!(
            "test {name} ... {verdict} ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        failed.extend(failure.map(|why| (name, why)));
    }
    failed
}

/// Deletes what the tests and examples left: every service, database and sandbox the admin
/// key sees (a service's instances and a database's server are sandboxes no list shows).
async fn delete_everything(client: &ai2in_client::Client) {
    let services = &client.services();
    let listed = services.list().await.map(|l| l.into_iter().map(|s| s.id));
    delete_every("services", listed, |id| async move {
        services.delete(&id).await
    })
    .await;
    let databases = &client.databases();
    let listed = databases.list().await.map(|l| l.into_iter().map(|d| d.id));
    delete_every("databases", listed, |id| async move {
        databases.delete(&id).await
    })
    .await;
    let listed = client.list_sandboxes(&Default::default()).await;
    let listed = listed.map(|l| l.into_iter().map(|s| s.id));
    delete_every("sandboxes", listed, |id| async move {
        client.sandbox(id).kill().await
    })
    .await;
}

/// Deletes each of `listed` (ids of `what`) with `delete`, telling those it could not.
async fn delete_every<F, Fut>(
    what: &str,
    listed: ai2in_client::Result<impl IntoIterator<Item = String>>,
    delete: F,
) where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ai2in_client::Result<()>>,
{
    let Ok(ids) = listed else {
        eprintln!("teardown: could not list the {what}");
        return;
    };
    for id in ids {
        if let Err(e) = delete(id.clone()).await {
            eprintln!("teardown: could not delete {id}: {e}");
        }
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}
