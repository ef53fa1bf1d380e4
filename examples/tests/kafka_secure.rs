//! Kafka WordCount, exactly-once, through SIGKILLs, against a broker
//! listener that requires SASL_SSL (SCRAM-SHA-256 over TLS with a CA the
//! broker script makes): the consumer, the transactional producers and the
//! sink's raw transaction-coordinator client all authenticate. The job's
//! logs never show the password; a wrong password fails the job clearly.
//! The broker is a second local one, started and stopped by this test with
//! `scripts/kafka-local.sh` (the test feeds and checks topics through its
//! plain listener; the job only ever talks to the SASL_SSL one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice_integration_tests::wordcount::{check_output, create_topics, expected, feed};
use sluice_test_support::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WORDCOUNT: &str = env!("CARGO_BIN_EXE_kafka_wordcount");

/// A broker with a PLAINTEXT and a SASL_SSL listener, stopped on drop.
struct SecureBroker {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    plain: String,
    secure: String,
}

impl SecureBroker {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, controller, sasl) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
        let env = vec![
            ("KAFKA_PORT", port.to_string()),
            ("KAFKA_CONTROLLER_PORT", controller.to_string()),
            ("KAFKA_SASL_SSL_PORT", sasl.to_string()),
            ("SLUICE_KAFKA_DIR", dir.path().display().to_string()),
            ("KAFKA_NUM_PARTITIONS", "3".to_string()),
        ];
        let broker = SecureBroker { dir, env, plain: format!("127.0.0.1:{port}"), secure: format!("127.0.0.1:{sasl}") };
        let out = broker.script("start");
        assert!(out.status.success(), "the secure broker did not start: {}", String::from_utf8_lossy(&out.stderr));
        broker
    }

    fn script(&self, command: &str) -> std::process::Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-local.sh");
        Command::new("bash").arg(script).arg(command).envs(self.env.iter().map(|(k, v)| (*k, v))).output().unwrap()
    }

    fn tls(&self, file: &str) -> PathBuf {
        self.dir.path().join("tls").join(file)
    }

    fn password(&self) -> String {
        std::fs::read_to_string(self.tls("sasl-password")).unwrap().trim().to_string()
    }

    /// A client properties file `name` for the SASL_SSL listener with `password`.
    fn properties(&self, name: &str, password: &str) -> PathBuf {
        let user = std::fs::read_to_string(self.tls("sasl-user")).unwrap();
        let path = self.dir.path().join(format!("{name}.properties"));
        std::fs::write(
            &path,
            format!(
                "# the SASL_SSL listener\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n\
                 sasl.username={}\nsasl.password={password}\nssl.ca.location={}\n",
                user.trim(),
                self.tls("ca.pem").display()
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}

fn start(broker: &SecureBroker, properties: &Path, ckpt: &Path, extra: &[&str]) -> Child {
    Command::new(WORDCOUNT)
        .args(["--bootstrap-servers", &broker.secure, "--input-topic", "sec-in", "--output-topic", "sec-out"])
        .args(["--kafka-properties", properties.to_str().unwrap()])
        .args(["--checkpoint-dir", ckpt.to_str().unwrap(), "--checkpoint-interval", "300ms", "-p", "2"])
        .args(["-D", "restart-strategy.type=fixed-delay", "-D", "restart-strategy.fixed-delay.attempts=5"])
        .args(["-D", "restart-strategy.fixed-delay.delay=100ms"])
        .args(extra)
        .env("SLUICE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The child's log (collected until it exits) and a signal sent when the
/// log first says a checkpoint completed.
fn log_of(child: &mut Child) -> (std::thread::JoinHandle<String>, std::sync::mpsc::Receiver<()>) {
    use std::io::BufRead;
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if line.contains("Completed checkpoint") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (log, rx)
}

#[test]
fn exactly_once_through_kills_on_a_sasl_ssl_listener() {
    let broker = SecureBroker::start();
    let password = broker.password();
    let good = broker.properties("good", &password);
    create_topics(&broker.plain, &["sec-in", "sec-out"], 3);
    let dir = tempfile::tempdir().unwrap();

    // The listener requires the password: a wrong one fails the job, clearly.
    let bad = broker.properties("bad", "not-the-password-at-all");
    let mut refused = start(&broker, &bad, &dir.path().join("bad"), &["--bounded", "-D", "restart-strategy.type=none"]);
    let (refused_log, _) = log_of(&mut refused);
    let status = refused.wait().unwrap();
    let refused_log = refused_log.join().unwrap();
    assert!(!status.success(), "a job with a wrong password ran");
    assert!(refused_log.to_lowercase().contains("authentication"), "{refused_log}");
    assert!(!refused_log.contains("not-the-password-at-all"), "the log shows the password");

    let lines = 6_000;
    let feeder = {
        let bs = broker.plain.clone();
        std::thread::spawn(move || feed(&bs, "sec-in", 0..lines, Some((200, Duration::from_millis(100)))))
    };
    let ckpt = dir.path().join("ckpt");
    let mut logs = Vec::new();
    let mut rng: u64 = 0x5a51;
    for _ in 0..5 {
        let mut child = start(&broker, &good, &ckpt, &[]);
        let (log, checkpointed) = log_of(&mut child);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Killed at a random moment after its first completed checkpoint, so
        // that the next run restores (and commits what that one recorded).
        let _ = checkpointed.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100 + rng % 1200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        logs.push(log.join().unwrap());
    }
    feeder.join().unwrap();
    let mut last = start(&broker, &good, &ckpt, &[]);
    let (log, _) = log_of(&mut last);
    let checked = std::panic::catch_unwind(|| {
        check_output(&broker.plain, "sec-out", 3, &expected(lines), Duration::from_secs(180))
    });
    let _ = last.kill();
    last.wait().unwrap();
    logs.push(log.join().unwrap());
    if let Err(panic) = checked {
        let all = logs.concat();
        let tail: Vec<&str> = all.lines().filter(|l| !l.contains("DEBUG")).collect();
        eprintln!("job logs (last 80 lines without DEBUG):\n{}", tail[tail.len().saturating_sub(80)..].join("\n"));
        std::panic::resume_unwind(panic);
    }
    let all = logs.concat();
    assert!(all.contains("Restoring job 'Kafka WordCount' from checkpoint"), "{all}");
    assert!(!all.contains(&password), "a log shows the SASL password");
}
