//! Plan, then apply: each resource reads what exists, decides one action, and (when applying)
//! performs it. The graph runs independent resources concurrently.

mod change;
mod context;
mod graph;

pub use change::{diff_field, diff_pairs, Action, Change, FieldChange, Summary};
pub use context::{Cx, Mode, Outputs, Switch, Timing};
pub use graph::{run, Operation};
