//! The deployer library: manifest → plan → resources → rollout → output.

pub mod aws;
pub mod cli;
pub mod error;
pub mod logs;
pub mod manifest;
pub mod names;
pub mod output;
pub mod plan;
pub mod resources;
pub mod rollout;
pub mod secret;
pub mod wait;
