//! Runs the Model Serving test double for the local demo.
//!
//! Usage: cargo run -p app --example serving_double -- --issuer URL [--port N] [--endpoint NAME]...
//! Prints one JSON line `{"url": "..."}` on stdout when it is ready, and serves until it is
//! stopped (SIGTERM or Ctrl-C).

#[path = "../tests/support/serving_double.rs"]
mod serving_double;

use serving_double::{discover_jwks_uri, ServingDouble};

#[tokio::main]
async fn main() {
    let mut issuer = None;
    let mut port = 0u16;
    let mut endpoints = Vec::new();
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let value = arguments.next();
        match (argument.as_str(), value) {
            ("--issuer", Some(value)) => issuer = Some(value),
            ("--port", Some(value)) => port = value.parse().unwrap_or_else(|_| usage(&format!("invalid port `{value}`"))),
            ("--endpoint", Some(value)) => endpoints.push(value),
            (other, _) => usage(&format!("unexpected argument `{other}`")),
        }
    }
    let issuer = issuer.unwrap_or_else(|| usage("missing `--issuer`"));
    if endpoints.is_empty() {
        endpoints.push("databricks-claude-sonnet-4".to_owned());
    }

    let double = ServingDouble::start_on(&issuer, &discover_jwks_uri(&issuer).await, port).await;
    for endpoint in &endpoints {
        double.add_endpoint(endpoint);
    }
    println!("{}", serde_json::json!({ "url": double.host() }));
    let _ = tokio::signal::ctrl_c().await;
}

fn usage(problem: &str) -> ! {
    eprintln!("error: {problem}\nusage: serving_double --issuer URL [--port N] [--endpoint NAME]...");
    std::process::exit(2);
}
