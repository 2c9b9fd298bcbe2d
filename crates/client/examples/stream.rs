//! Stream a run's output as it happens.
use ai2in_client::{Client, CreateSandbox, RunEvent};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let client = Client::from_env()?;
    let sandbox = client.create_sandbox(CreateSandbox::default()).await?;

    let code = "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.1)\nprint('oops', file=sys.stderr)\n'finished'";
    let mut events = sandbox.run_stream(code).await?;
    while let Some(event) = events.next().await {
        match event? {
            RunEvent::Stdout(text) => print!("{text}"),
            RunEvent::Stderr(text) => eprint!("{text}"),
            RunEvent::Result(result) => println!("result: {}", result.data["text/plain"]),
            RunEvent::Error(error) => eprintln!("{}: {}", error.name, error.value),
            RunEvent::Done(execution) => println!("done in {:.1} ms", execution.duration_ms),
        }
    }

    sandbox.kill().await?;
    Ok(())
}
