use clap::Parser;
use s3mm_cli::{Cli, Command, run};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    // `serve` handles Ctrl-C itself, to print its counters on the way out.
    let serving = matches!(cli.command, Command::Serve { .. });
    // s3mm's own warnings, and the SDK's only when they are errors: what went
    // wrong reaches the person as the command's one-line error, and the
    // SDK's internals are there with RUST_LOG=debug.
    s3mm_core::logging::init_with_default(
        s3mm_core::LogFormat::Text,
        "warn,aws_config=error,aws_runtime=error,aws_smithy_runtime=error,aws_smithy_runtime_api=error,aws_sdk_s3=error",
    );
    // Ctrl-C drops the job: outputs are written whole by PutObject or
    // CompleteMultipartUpload, so nothing partial appears under a final name.
    let result = tokio::select! {
        result = run(cli) => result,
        _ = tokio::signal::ctrl_c(), if !serving => {
            eprintln!("s3mm: interrupted; no partial output was written under a final name");
            return ExitCode::from(130);
        }
    };
    match result {
        Ok(finished) => {
            if json {
                println!("{}", finished.json);
            } else {
                print!("{}", finished.text);
            }
            if finished.failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
        }
        Err(err) => {
            if json {
                println!("{}", serde_json::json!({"error": format!("{err:#}")}));
            } else {
                eprintln!("s3mm: {err:#}");
            }
            ExitCode::from(2)
        }
    }
}
