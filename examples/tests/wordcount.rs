//! The example jobs run as processes, against an independent reference.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const WORDCOUNT: &str = env!("CARGO_BIN_EXE_wordcount");
const SOCKET: &str = env!("CARGO_BIN_EXE_socket_wordcount");
const DATAGEN: &str = env!("CARGO_BIN_EXE_datagen_wordcount");

/// A deterministic multilingual corpus: accents, CJK, Cyrillic, Greek,
/// mixed case, digits, punctuation, empty and whitespace-only lines.
fn corpus(lines: usize) -> String {
    const PIECES: &[&str] = &[
        "Hello",
        "hello",
        "HELLO",
        "world",
        "Café",
        "café",
        "CAFÉ",
        "naïve",
        "Straße",
        "STRASSE",
        "niño",
        "Ñandú",
        "数据",
        "流处理",
        "数据流",
        "東京",
        "данные",
        "Данные",
        "θεσμός",
        "ΘΕΣΜΌΣ",
        "x2",
        "2024",
        "l'été",
        "co-op",
        "e-mail",
        "İstanbul",
        "ǅemal",
        "ﬁne",
        "Ⅻ",
        "٣٤",
        "über",
        "Über",
        "résumé",
    ];
    const SEPS: &[&str] = &[" ", ", ", ". ", "! ", "? ", " -- ", "\t", "; ", " (", ") ", "\"", "…", "、", "。", " / "];
    let mut state: u64 = 0x5EED;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::new();
    for _ in 0..lines {
        let r = next();
        if r % 11 == 0 {
            text.push('\n');
            continue;
        }
        if r % 13 == 0 {
            text.push_str("   \t \n");
            continue;
        }
        for _ in 0..(r % 9 + 1) {
            text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            text.push_str(SEPS[(next() % SEPS.len() as u64) as usize]);
        }
        text.push('\n');
    }
    text
}

/// The reference: a character loop written independently of the engine
/// and of `sluice_examples::tokenize`.
fn reference_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    // Lowercase the text as a whole (not char by char): Unicode's lowercase
    // of a string is context-sensitive (Greek final sigma: ΘΕΣΜΌΣ → θεσμός).
    let lower = text.to_lowercase();
    let mut word = String::new();
    for c in lower.chars().chain(std::iter::once(' ')) {
        if c.is_alphabetic() || c.is_numeric() {
            word.push(c);
        } else if !word.is_empty() {
            *counts.entry(std::mem::take(&mut word)).or_insert(0) += 1;
        }
    }
    counts
}

fn parse_output(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let (word, count) = line.rsplit_once(',').unwrap_or_else(|| panic!("not word,count: {line:?}"));
        let previous = counts.insert(word.to_string(), count.parse().unwrap());
        assert!(previous.is_none(), "word {word:?} printed twice");
    }
    counts
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the example binary runs")
}

#[test]
fn wordcount_matches_the_reference_at_parallelism_1_2_4() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.txt");
    let text = corpus(20_000);
    std::fs::write(&input, &text).unwrap();
    let expected = reference_counts(&text);
    assert!(expected.len() >= 25 && expected.contains_key("数据") && expected.contains_key("café"));
    for p in ["1", "2", "4"] {
        let output = dir.path().join(format!("out-{p}.txt"));
        let out = run(Command::new(WORDCOUNT).args([
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "-p",
            p,
        ]));
        assert!(out.status.success(), "p={p}: {}", String::from_utf8_lossy(&out.stderr));
        let counts = parse_output(&std::fs::read_to_string(&output).unwrap());
        assert_eq!(counts, expected, "parallelism {p}");
    }
    // Without --output the same lines go to stdout.
    let out = run(Command::new(WORDCOUNT).args(["--input", input.to_str().unwrap(), "-p", "2"]));
    assert!(out.status.success());
    assert_eq!(parse_output(&String::from_utf8_lossy(&out.stdout)), expected);
}

fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "no panic: {stderr}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    let out = run(Command::new(WORDCOUNT).args(["--input", missing.to_str().unwrap()]));
    assert_clean_failure(&out, &["cannot open input file", "missing.txt", "No such file"]);

    let out = run(Command::new(WORDCOUNT).args(["--input", dir.path().to_str().unwrap()]));
    assert_clean_failure(&out, &["is a directory"]);

    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, b"fine line\nbad \xff\xfe byte\n").unwrap();
    let out = run(Command::new(WORDCOUNT).args(["--input", binary.to_str().unwrap()]));
    assert_clean_failure(&out, &["not UTF-8", "offset 14"]);

    let out = run(Command::new(WORDCOUNT).args(["--output", "x"]));
    assert_clean_failure(&out, &["missing required parameter --input"]);

    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b\n").unwrap();
    for bad in ["0", "two", "-3"] {
        let out = run(Command::new(WORDCOUNT).args(["--input", input.to_str().unwrap(), "-p", bad]));
        assert_clean_failure(&out, &["parameter -p"]);
    }

    std::fs::write(dir.path().join("sluice.yaml"), "paralelism.default: 2\n").unwrap();
    let out = run(Command::new(WORDCOUNT).current_dir(dir.path()).args(["--input", "in.txt"]));
    assert_clean_failure(
        &out,
        &["unknown configuration key 'paralelism.default'", "did you mean 'parallelism.default'"],
    );
    let out = run(Command::new(WORDCOUNT).args([
        "--input",
        input.to_str().unwrap(),
        "-D",
        "taskmanager.numberOfTaskSlots=many",
    ]));
    assert_clean_failure(&out, &["'taskmanager.numberOfTaskSlots'"]);

    // A port nobody listens on.
    let port = sluice_test_support::free_port().unwrap();
    let out = run(Command::new(SOCKET).args(["--host", "127.0.0.1", "--port", &port.to_string()]));
    assert_clean_failure(&out, &["cannot connect to the socket text stream", "Connection refused", "nc -lk"]);
    let out = run(Command::new(SOCKET).args(["--port", "seventy"]));
    assert_clean_failure(&out, &["parameter --port"]);
}

#[test]
fn socket_wordcount_prints_running_counts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Command::new(SOCKET)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-p", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all("Hello world\nhello, Sluice!\n".as_bytes()).unwrap();
    // Running counts appear while the connection is still open.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "output ended early: {seen:?}");
        seen.push(line.trim_end().to_string());
    }
    conn.write_all("HELLO\n".as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(conn);
    let status = child.wait().unwrap();
    assert!(status.success(), "the job ends when the server closes the stream");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    seen.extend(rest.lines().map(str::to_string));
    let unprefixed: Vec<String> = seen
        .iter()
        .map(|l| {
            let (prefix, record) = l.split_once("> ").unwrap_or_else(|| panic!("no subtask prefix: {l}"));
            assert!(prefix == "1" || prefix == "2", "{l}");
            record.to_string()
        })
        .collect();
    let mut sorted = unprefixed.clone();
    sorted.sort();
    assert_eq!(sorted, ["(hello,1)", "(hello,2)", "(hello,3)", "(sluice,1)", "(world,1)"]);
    let hello: Vec<&String> = unprefixed.iter().filter(|l| l.starts_with("(hello")).collect();
    assert_eq!(hello, ["(hello,1)", "(hello,2)", "(hello,3)"], "one key's updates arrive in order");
}

#[test]
fn datagen_wordcount_is_deterministic_per_seed_and_parallelism() {
    let run_sorted = |seed: &str, p: &str| {
        let out = run(Command::new(DATAGEN).args(["--seed", seed, "--count", "5000", "-p", p]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let a = run_sorted("7", "2");
    assert_eq!(a, run_sorted("7", "2"));
    assert_ne!(a, run_sorted("8", "2"));
    // Running counts: 5000 generated tokens give at least as many updates
    // as words ("l's" style tokens split in two).
    assert!(a.len() >= 5000, "{}", a.len());
    assert!(a.iter().all(|l| l.starts_with("1> (") || l.starts_with("2> (")));

    let out = run(Command::new(DATAGEN).args(["--rate", "0"]));
    assert_clean_failure(&out, &["--rate"]);
}
