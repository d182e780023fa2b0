//! Runs resource steps along their dependency graph, each as soon as its dependencies finished.

use std::collections::BTreeSet;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use tracing::Instrument;

use super::{Change, Cx};
use crate::error::{Error, Result};
use crate::resources::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Plan or apply, by `Cx::mode`, in dependency order.
    Converge,
    /// Delete, dependents before what they depend on.
    Destroy,
}

/// Runs `kinds` for `operation` and returns their changes in the order of `kinds`.
///
/// When converging, no new step starts after the first error; the steps already running finish,
/// so no AWS call is abandoned midway, and then the first error is returned. When destroying,
/// every step whose dependents are gone still runs, and the error lists what failed and what
/// was left in place because of it.
pub async fn run(cx: &Cx, kinds: &[Kind], operation: Operation) -> Result<Vec<Change>> {
    let mut finished: BTreeSet<Kind> = BTreeSet::new();
    let mut waiting: Vec<Kind> = kinds.to_vec();
    let mut running = FuturesUnordered::new();
    let mut results: Vec<(Kind, Vec<Change>)> = Vec::new();
    let mut first_error: Option<Error> = None;
    let mut failures: Vec<(Kind, Error)> = Vec::new();

    loop {
        if first_error.is_none() {
            let (ready, blocked): (Vec<Kind>, Vec<Kind>) = waiting
                .iter()
                .partition(|kind| is_ready(**kind, kinds, &finished, operation));
            waiting = blocked;
            for kind in ready {
                running.push(step(cx, kind, operation));
            }
        }

        let Some((kind, outcome)) = running.next().await else {
            break;
        };
        match outcome {
            Ok(changes) => {
                finished.insert(kind);
                results.push((kind, changes));
            }
            Err(error) if operation == Operation::Destroy => failures.push((kind, error)),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }

    if let Some(error) = first_error {
        return Err(error);
    }
    if !failures.is_empty() {
        return Err(destroy_failures(&failures, &waiting));
    }
    if let Some(stuck) = waiting.first() {
        return Err(Error::Internal(format!("`{stuck:?}` never became ready")));
    }

    results.sort_by_key(|(kind, _)| kinds.iter().position(|k| k == kind));
    Ok(results.into_iter().flat_map(|(_, changes)| changes).collect())
}

/// True when every step that must finish before `kind` (among those being run) has finished.
fn is_ready(kind: Kind, kinds: &[Kind], finished: &BTreeSet<Kind>, operation: Operation) -> bool {
    match operation {
        Operation::Converge => kind
            .dependencies()
            .iter()
            .filter(|dependency| kinds.contains(dependency))
            .all(|dependency| finished.contains(dependency)),
        Operation::Destroy => kinds
            .iter()
            .filter(|other| other.dependencies().contains(&kind))
            .all(|dependent| finished.contains(dependent)),
    }
}

async fn step(cx: &Cx, kind: Kind, operation: Operation) -> (Kind, Result<Vec<Change>>) {
    let started = Instant::now();
    let span = tracing::info_span!("step", kind = ?kind, operation = ?operation);
    let outcome = async {
        match operation {
            Operation::Converge => crate::resources::converge(cx, kind).await,
            Operation::Destroy => crate::resources::destroy(cx, kind).await,
        }
    }
    .instrument(span)
    .await;
    tracing::debug!(kind = ?kind, elapsed_ms = started.elapsed().as_millis() as u64, ok = outcome.is_ok(), "step finished");
    (kind, outcome)
}

fn destroy_failures(failures: &[(Kind, Error)], left: &[Kind]) -> Error {
    let mut text = String::from("destroy could not remove everything");
    for (kind, error) in failures {
        text.push_str(&format!("\n    {kind:?}: {error}"));
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
    }
    if !left.is_empty() {
        text.push_str(&format!("\n    left in place because of the failures above: {left:?}"));
    }
    text.push_str("\n  rerun `deployer destroy --yes` to retry; it removes only what is left");
    Error::Failed(text)
}
