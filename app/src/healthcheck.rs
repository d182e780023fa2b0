//! `app healthcheck`: a probe of `/health` for the ECS container health check.
//!
//! The runtime image has no shell and no curl, so the probe is an HTTP/1.1 GET
//! written by hand over a TCP connection. It succeeds on any 2xx status.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Time allowed for the whole probe. ECS allows 5 s by default for a health
/// check command, and this leaves room for the process to start.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest response head the probe reads before it gives up on the status line.
const MAX_STATUS_LINE_BYTES: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("failed to connect to `{address}`")]
    Connect {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("failed to send the request to or read the response from `{address}`")]
    Io {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("timed out after {} s waiting for `{url}`", timeout.as_secs_f32())]
    Timeout { url: String, timeout: Duration },
    #[error("invalid HTTP response from `{url}`: `{status_line}`")]
    InvalidResponse { url: String, status_line: String },
    #[error("`{url}` returned `{status_line}`")]
    Unhealthy { url: String, status_line: String },
}

/// Returns the address to probe for a server bound to `bind_addr:port`. An
/// unspecified bind address (`0.0.0.0` or `::`) is probed on loopback.
pub fn probe_address(bind_addr: IpAddr, port: u16) -> SocketAddr {
    let ip = match bind_addr {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, port)
}

/// Sends `GET /health` to `address` and returns the status line of a 2xx response.
pub async fn probe(address: SocketAddr, timeout: Duration) -> Result<String, ProbeError> {
    let url = format!("http://{address}/health");
    match tokio::time::timeout(timeout, fetch_status_line(address)).await {
        Err(_elapsed) => Err(ProbeError::Timeout { url, timeout }),
        Ok(Err(error)) => Err(error),
        Ok(Ok(status_line)) => check_status_line(url, status_line),
    }
}

async fn fetch_status_line(address: SocketAddr) -> Result<String, ProbeError> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|source| ProbeError::Connect { address, source })?;
    let io_error = |source| ProbeError::Io { address, source };

    let request = format!(
        "GET /health HTTP/1.1\r\nHost: {address}\r\nUser-Agent: app-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(io_error)?;

    // Only the status line matters, so read until its line break or the end.
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0_u8; 512];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE_BYTES {
        let read = stream.read(&mut chunk).await.map_err(io_error)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }

    let line_end = head
        .iter()
        .position(|&byte| byte == b'\n')
        .unwrap_or(head.len());
    Ok(String::from_utf8_lossy(&head[..line_end])
        .trim_end()
        .to_string())
}

fn check_status_line(url: String, status_line: String) -> Result<String, ProbeError> {
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|code| code.parse::<u16>().ok());

    match status {
        Some(code) if version.starts_with("HTTP/") && (200..300).contains(&code) => Ok(status_line),
        Some(_) if version.starts_with("HTTP/") => Err(ProbeError::Unhealthy { url, status_line }),
        _ => Err(ProbeError::InvalidResponse { url, status_line }),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;
    use crate::config::Config;
    use crate::startup::{run_until, AppState};

    /// Serves `router` on an ephemeral loopback port until the returned sender
    /// is dropped.
    async fn serve_on_loopback(router: Router) -> (SocketAddr, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        (address, stop)
    }

    #[test]
    fn probe_address_uses_loopback_for_unspecified() {
        assert_eq!(
            probe_address("0.0.0.0".parse().unwrap(), 8080),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            probe_address("::".parse().unwrap(), 8080),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            probe_address("10.0.1.5".parse().unwrap(), 9000),
            "10.0.1.5:9000".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn probe_passes_against_app() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let config = Config::from_lookup(|_| Err(std::env::VarError::NotPresent)).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(run_until(listener, AppState::new(config), async {
            let _ = stopped.await;
        }));

        let status_line = probe(address, PROBE_TIMEOUT).await.unwrap();

        assert_eq!(status_line, "HTTP/1.1 200 OK");
        drop(stop);
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn probe_fails_on_server_error() {
        let router =
            Router::new().route("/health", get(|| async { StatusCode::SERVICE_UNAVAILABLE }));
        let (address, _stop) = serve_on_loopback(router).await;

        let error = probe(address, PROBE_TIMEOUT).await.unwrap_err();

        assert!(matches!(error, ProbeError::Unhealthy { .. }), "{error:?}");
        assert!(error.to_string().contains("503"), "{error}");
    }

    #[tokio::test]
    async fn probe_fails_when_nothing_listens() {
        // Bind and drop a listener to find a loopback port that is now closed.
        let address = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();

        let error = probe(address, PROBE_TIMEOUT).await.unwrap_err();

        assert!(matches!(error, ProbeError::Connect { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn probe_times_out_on_silent_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accept the connection and never respond.
        let _silent = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });

        let error = probe(address, Duration::from_millis(200))
            .await
            .unwrap_err();

        assert!(matches!(error, ProbeError::Timeout { .. }), "{error:?}");
    }

    #[test]
    fn status_line_checks() {
        let url = || "http://127.0.0.1:8080/health".to_string();

        assert!(check_status_line(url(), "HTTP/1.1 204 No Content".into()).is_ok());
        assert!(matches!(
            check_status_line(url(), "HTTP/1.1 500 Internal Server Error".into()),
            Err(ProbeError::Unhealthy { .. })
        ));
        assert!(matches!(
            check_status_line(url(), "SSH-2.0-OpenSSH_9.2".into()),
            Err(ProbeError::InvalidResponse { .. })
        ));
        assert!(matches!(
            check_status_line(url(), String::new()),
            Err(ProbeError::InvalidResponse { .. })
        ));
    }
}
