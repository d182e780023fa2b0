//! The web app that the deployer runs on ECS Fargate.
//!
//! [`app`] builds the whole HTTP surface as an axum [`Router`](axum::Router),
//! so tests drive it without a socket. The binary in `main.rs` only reads the
//! command line and calls [`startup::serve`] or [`healthcheck::probe`].

pub mod auth;
pub mod config;
pub mod csrf;
pub mod healthcheck;
pub mod i18n;
pub mod request_id;
pub mod routes;
pub mod secret;
pub mod serving;
pub mod session;
pub mod startup;
pub mod telemetry;

pub use config::Config;
pub use startup::{app, AppState};
