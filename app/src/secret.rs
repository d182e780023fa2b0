//! A string that must never reach a log line, an error message or a panic.

use std::fmt;

/// A secret value, such as an OAuth client secret or a session key.
///
/// `Debug` prints `[redacted]` and there is no `Display`, so the value leaves
/// this type only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Wraps raw key bytes, kept as base64 so the type stays a string.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        use base64::Engine as _;
        Self(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Returns the bytes of a secret made by [`Secret::from_bytes`].
    pub fn expose_bytes(&self) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(&self.0).unwrap_or_default()
    }

    /// Returns the secret value. Call this only where the value is sent to its
    /// one legitimate receiver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_value() {
        let secret = Secret::new("hunter2");

        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2");
    }
}
