//! Log setup: JSON lines on stdout for CloudWatch Logs, or text for a terminal.
//!
//! Text lines are coloured only when stdout is a terminal and `NO_COLOR` is
//! unset or empty.
//!
//! `RUST_LOG` sets the filter with the usual `tracing-subscriber` directives;
//! without it the app logs at `info`. Invalid directives in `RUST_LOG` are
//! skipped rather than stopping the app.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{fmt, EnvFilter, Registry};

use crate::config::LogFormat;

/// Installs the global log subscriber. Fails when one is already installed.
pub fn init(format: LogFormat) -> Result<(), TryInitError> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let subscriber = Registry::default().with(filter);

    match format {
        LogFormat::Json => subscriber
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Text => {
            let colour = std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            subscriber.with(fmt::layer().with_ansi(colour)).try_init()
        }
    }
}
