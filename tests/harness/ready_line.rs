//! Reads the ready line of a test server that a harness started, within a time limit.
//!
//! The test servers (the OpenID provider, the untrusted TLS server) print one line on stdout when
//! they listen. A plain blocking read waits forever for a server that hangs while starting, and
//! libtest has no time limit of its own, so a run would stall until CI kills it. The read runs on a
//! thread here instead, and the caller gets an error it can report.
//!
//! Both test crates include this file with `#[path]`.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

/// Returns the first line `child` prints on stdout, without its line end.
///
/// Fails when the server prints nothing within `limit` or closes stdout first; the caller then
/// kills `child`, which ends the reading thread. `child` must have been spawned with a piped stdout.
pub fn read_ready_line(child: &mut Child, limit: Duration) -> Result<String, String> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| "the server's stdout is not piped".to_owned())?;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = sender.send(read);
    });
    match receiver.recv_timeout(limit) {
        Ok(Ok(line)) if line.ends_with('\n') => Ok(line.trim_end().to_owned()),
        Ok(Ok(line)) => Err(format!("the server closed stdout before its ready line (read {line:?})")),
        Ok(Err(error)) => Err(format!("cannot read the server's stdout: {error}")),
        Err(_) => Err(format!("the server printed no ready line within {} s", limit.as_secs())),
    }
}
