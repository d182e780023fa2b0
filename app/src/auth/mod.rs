//! Sign-in with OpenID Connect against a Databricks workspace: the authorization code flow with
//! PKCE (S256), a single-use `state` and a `nonce`, and a verified id_token.

mod provider;
mod refresh;
mod return_to;

pub use provider::{AuthError, LoginStart, Provider, SignedIn, Tokens};
pub use refresh::Refresher;
pub use return_to::safe_return_to;
