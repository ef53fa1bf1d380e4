//! Waiting for a process under test with a deadline: a job that hangs
//! fails its test with its own output and every thread's stack (from gdb,
//! when installed) instead of stalling the whole suite.

use std::io::Read;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Waits for `child` to exit and returns its output (piped stdout and
/// stderr are collected while it runs). After `deadline` the child's
/// threads' stacks are captured, the child is killed and the call panics
/// with what it printed and the stacks.
#[allow(clippy::panic)]
pub fn wait_within(mut child: Child, deadline: Duration, what: &str) -> Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Output {
                    status,
                    stdout: out.join().unwrap_or_default(),
                    stderr: err.join().unwrap_or_default(),
                }
            }
            Ok(None) if started.elapsed() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) | Err(_) => break,
        }
    }
    let stacks = stacks_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    panic!("{what} did not end within {deadline:?}; killed it.\n--- its stderr ---\n{stderr}\n--- its threads ---\n{stacks}");
}

/// Every thread's stack of process `pid` (gdb in batch mode), or why not.
pub fn stacks_of(pid: u32) -> String {
    match std::process::Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt 30"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => format!("(no stacks: gdb: {e})"),
    }
}
