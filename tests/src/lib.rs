//! Helpers shared by the integration tests: real peer processes driven over pipes.
//!
//! Tests here talk to other implementations (Python aries-askar now; credo-ts and ACA-Py agents
//! later). A peer that is not installed is a failure with instructions, never a silent skip: CI
//! installs every peer through `scripts/setup-interop`.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use serde_json::Value;

/// The repository root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The Python interpreter of the interop venv: `$INTEROP_PYTHON`, else `.venv-interop/bin/python`.
pub fn interop_python() -> Result<PathBuf, String> {
    let path = std::env::var_os("INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv-interop/bin/python"));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "no Python interop venv at {}: run `scripts/setup-interop` (the test command does)",
            path.display()
        ))
    }
}

/// A line-oriented JSON peer process. Killed and reaped on drop, so a failing test leaves no
/// process behind.
#[derive(Debug)]
pub struct JsonPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl JsonPeer {
    /// Starts `program args…` with piped stdin/stdout.
    pub fn spawn(program: &std::path::Path, args: &[&str]) -> std::io::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Sends one request and reads its answer.
    pub fn call(&mut self, request: &Value) -> std::io::Result<Value> {
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.flush()?;
        let mut answer = String::new();
        if self.stdout.read_line(&mut answer)? == 0 {
            return Err(std::io::Error::other("peer closed its output"));
        }
        Ok(serde_json::from_str(&answer)?)
    }
}

impl Drop for JsonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub mod acapy;
pub mod cluster;
pub mod credo;
pub mod embedded;
pub mod our_mediator;
pub mod proxy;
