//! At most one token refresh per session at a time.
//!
//! Databricks rotates refresh tokens: each works once, and presenting a used one again revokes
//! the whole grant. Two requests of one user that both find the access token about to expire
//! would otherwise both refresh, and the second would sign the user out. Here the first request
//! refreshes and the others wait for its result.
//!
//! NOTE: this coordinates requests within one app process. Two tasks behind the load balancer
//! can still refresh the same session at the same moment. Sticky sessions on the target group
//! would keep one user on one task, but the deployer does not turn them on yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::{AuthError, Provider, Tokens};

/// How long a finished refresh's result stays available to requests that carried the old
/// refresh token, such as a second browser tab's request that was already on its way.
const RESULT_LIFETIME: Duration = Duration::from_secs(60);

/// The tokens, or whether the provider rejected the refresh token and the error text.
type Outcome = Result<Tokens, (bool, String)>;

#[derive(Debug, Default)]
pub struct Refresher {
    in_flight: Mutex<HashMap<String, Arc<OnceCell<Outcome>>>>,
}

impl Refresher {
    /// Refreshes `refresh_token`, or waits for and returns the refresh of the same token that
    /// another request started.
    pub async fn refresh(self: &Arc<Self>, provider: &Provider, refresh_token: &str) -> Result<Tokens, AuthError> {
        let key = fingerprint(refresh_token);
        let cell = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            in_flight.entry(key.clone()).or_default().clone()
        };

        let mut ran_here = false;
        let outcome = cell
            .get_or_init(|| async {
                ran_here = true;
                provider.refresh(refresh_token).await.map_err(|error| {
                    let rejected = matches!(error, AuthError::Refresh(_));
                    (rejected, error.to_string())
                })
            })
            .await
            .clone();

        if ran_here {
            self.forget_later(key, cell);
        }
        outcome.map_err(|(rejected, message)| match rejected {
            true => AuthError::Refresh(message),
            false => AuthError::RefreshUnavailable(message),
        })
    }

    fn forget_later(self: &Arc<Self>, key: String, cell: Arc<OnceCell<Outcome>>) {
        let refresher = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(RESULT_LIFETIME).await;
            let mut in_flight = refresher.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if in_flight.get(&key).is_some_and(|current| Arc::ptr_eq(current, &cell)) {
                in_flight.remove(&key);
            }
        });
    }
}

/// A map key for a refresh token that is not the token itself.
fn fingerprint(refresh_token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(refresh_token.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
