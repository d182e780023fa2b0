//! `app [serve]` runs the web server, and `app healthcheck` probes a running one.
//!
//! Exit codes: 0 on success, 1 when the server fails or the probe finds it
//! unhealthy, 2 for an invalid command line or configuration.

use std::process::ExitCode;

use app::config::Config;
use app::healthcheck::{probe, probe_address, PROBE_TIMEOUT};
use app::{startup, telemetry};

const USAGE: &str = "\
usage: app [COMMAND]

commands:
  serve         run the web server (the default)
  healthcheck   request GET /health from the server at APP_BIND_ADDR:PORT and
                exit 0 when it returns 2xx, 1 otherwise

settings are read from the environment: APP_BIND_ADDR (default 0.0.0.0),
PORT (default 8080), LOG_FORMAT (json or text, default json), APP_VERSION,
RUST_LOG (log filter, default info)";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let command = match arguments.as_slice() {
        [] => "serve",
        [command] => command.as_str(),
        [_, extra, ..] => {
            eprintln!("error: unexpected argument `{extra}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    match command {
        "serve" => serve(),
        "healthcheck" => healthcheck(),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        "-V" | "--version" => {
            println!("app {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("error: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn load_config() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })
}

fn serve() -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Err(error) = telemetry::init(config.log_format) {
        eprintln!("error: failed to set up logging: {error}");
        return ExitCode::FAILURE;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "failed to start the async runtime");
            return ExitCode::FAILURE;
        }
    };

    match runtime.block_on(startup::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "server failed");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck() -> ExitCode {
    let (bind_addr, port) = match Config::listen_address_from_env() {
        Ok(address) => address,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let address = probe_address(bind_addr, port);

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };

    match runtime.block_on(probe(address, PROBE_TIMEOUT)) {
        Ok(status_line) => {
            println!("healthy: `http://{address}/health` returned `{status_line}`");
            ExitCode::SUCCESS
        }
        Err(error) => {
            let cause = std::error::Error::source(&error)
                .map(|source| format!(": {source}"))
                .unwrap_or_default();
            eprintln!("unhealthy: {error}{cause}");
            ExitCode::FAILURE
        }
    }
}
