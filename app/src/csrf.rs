//! CSRF protection: every state-changing form carries the session's random token, compared in
//! constant time. `SameSite=Lax` cookies are the second layer.

/// True when the submitted token equals the session's.
pub fn matches(expected: &str, submitted: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}
