//! The web UI in headless Chromium against a real cluster running the
//! exactly-once Kafka WordCount (local broker: `scripts/kafka-local.sh
//! start`) with a slow sink, so that back pressure is real, and a failure
//! injected once, so that the exceptions view has a restart. Every view is
//! loaded in the browser and checked from its DOM; with
//! `SLUICE_SCREENSHOTS_DIR` set, a screenshot of each view is saved there
//! (`scripts/ui-screenshots.sh` regenerates the README's).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::cdp::Page;
use common::cluster::{job_id_of, ClusterUnderTest, TOKEN};
use common::{broker, corpus, kafka_wordcount_args, read_counts, reference_counts, WORDCOUNT};
use sluice_integration_tests::wordcount::{create_topics, feed, feed_in_background};
use sluice_test_support::unique_name;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Renders `#fragment` of the UI in headless Chromium and returns its DOM;
/// saves a screenshot as `shot`.png when screenshots are asked for.
struct Browser {
    rest: u16,
    profile: tempfile::TempDir,
    screenshots: Option<PathBuf>,
}

impl Browser {
    fn url(&self, fragment: &str) -> String {
        let sep = if fragment.contains('?') { '&' } else { '?' };
        format!("http://127.0.0.1:{}/#{fragment}{sep}token={TOKEN}", self.rest)
    }

    fn chromium(&self, args: &[&str], url: &str) -> std::process::Output {
        Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--virtual-time-budget=6000",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(args)
            .arg(url)
            .output()
            .expect("chromium is not installed: run scripts/install-deps.sh")
    }

    fn dom(&self, fragment: &str, shot: &str) -> String {
        let url = self.url(fragment);
        let out = self.chromium(&["--dump-dom"], &url);
        let dom = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(dom.contains("id=\"view\""), "no DOM for {url}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(dom.contains("<div id=\"error\"></div>"), "{fragment} failed to load:\n{dom}");
        if let Some(dir) = &self.screenshots {
            let path = dir.join(format!("{shot}.png"));
            let out = self.chromium(&["--window-size=1400,900", &format!("--screenshot={}", path.display())], &url);
            assert!(path.is_file(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
        }
        dom
    }
}

fn row_with<'a>(dom: &'a str, needle: &str) -> &'a str {
    dom.split("<tr>").find(|r| r.contains(needle)).unwrap_or_else(|| panic!("no row with {needle} in:\n{dom}"))
}

#[test]
fn every_view_of_a_back_pressured_job_that_restarted_renders_in_chromium() {
    let bs = broker();
    let (input, output) = (unique_name("ui-in"), unique_name("ui-out"));
    create_topics(&bs, &[&input, &output], 2);
    feed(&bs, &input, 0..20_000, None);
    let feeder = feed_in_background(&bs, &input, 20_000..40_000, 500, Duration::from_millis(100));
    let cluster = ClusterUnderTest::start_processes_with_env(
        "60s",
        &[],
        &[("SLUICE_FAULTS", "fail:Keyed Aggregation:0@checkpoint=3"), ("SLUICE_LOG", "info")],
    );
    cluster.wait_for(|o| o["taskmanagers"] == 2, "two TaskManagers registered");
    let ckpt = cluster.work.path().join("checkpoints").display().to_string();
    let mut args = kafka_wordcount_args(&bs, &input, &output, &ckpt, "300ms");
    args.extend(
        [
            "--sink-delay-us",
            "500",
            "-D",
            "taskmanager.network.channel-capacity=2",
            "-D",
            "taskmanager.network.batch-size=64",
            "--api-password",
            "hunter2",
        ]
        .map(String::from),
    );
    let mut run = vec!["run", "-d", "-p", "2"];
    run.extend(args.iter().map(String::as_str));
    let out = cluster.cli(&run);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);

    // Through REST first: restarted once, three checkpoints since, and the
    // source back-pressured by the slow sink.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, cp) = cluster.get(&format!("/jobs/{job}/checkpoints"), Some(TOKEN));
        let (_, bp) = cluster.get(&format!("/jobs/{job}/vertices/0/backpressure"), Some(TOKEN));
        let restored = cp["latest"]["restored"]["id"].as_u64();
        let after = cp["history"]
            .as_array()
            .map(|h| h.iter().filter(|r| r["status"] == "COMPLETED" && r["id"].as_u64() > restored).count())
            .unwrap_or(0);
        if restored.is_some() && after >= 3 && bp["backpressureLevel"] == "high" {
            break;
        }
        assert!(Instant::now() < deadline, "no restart, checkpoints or back pressure yet: {cp} {bp}");
        std::thread::sleep(Duration::from_millis(300));
    }

    let browser = Browser {
        rest: cluster.rest,
        profile: tempfile::tempdir().unwrap(),
        screenshots: std::env::var_os("SLUICE_SCREENSHOTS_DIR").map(PathBuf::from),
    };
    if let Some(dir) = &browser.screenshots {
        std::fs::create_dir_all(dir).unwrap();
    }

    // Overview: the job, the slots, the TaskManagers.
    let dom = browser.dom("/overview", "overview");
    let row = row_with(&dom, &format!(">{job}</a>"));
    assert!(row.contains("class=\"RUNNING\"") && row.contains("<td>running 4</td>"), "{row}");
    assert!(dom.contains("</b>Uptime"), "{dom}");
    assert!(dom.contains("<b>2</b>Task Managers"), "{dom}");

    // Job graph: both vertices with their parallelism; the source is
    // coloured back-pressured; the edge is HASH.
    let dom = browser.dom(&format!("/job/{job}"), "job-graph");
    assert!(dom.contains("<svg id=\"job-graph\""), "{dom}");
    let source = dom.split("id=\"vertex-0\"").nth(1).map(|s| &s[..s.find("</g>").unwrap()]).unwrap();
    assert!(dom.contains("class=\"vertex backpressure-high\" id=\"vertex-0\""), "{dom}");
    assert!(source.contains("Kafka Source") && source.contains("Parallelism: 2"), "{source}");
    let sink = dom.split("id=\"vertex-1\"").nth(1).map(|s| &s[..s.find("</g>").unwrap()]).unwrap();
    assert!(sink.contains("Keyed Aggregation") && sink.contains("Parallelism: 2"), "{sink}");
    assert!(dom.contains(">HASH</text>"), "{dom}");
    assert!(
        row_with(&dom, "Keyed Aggregation -&gt; Throttle -&gt; Sink: Two-Phase Commit</a>").contains("RUNNING 2"),
        "{dom}"
    );

    // A vertex: its subtasks with their TaskManagers and back pressure.
    let dom = browser.dom(&format!("/job/{job}/vertex/0"), "vertex");
    assert!(dom.contains("<span id=\"backpressure-level\">high</span>"), "{dom}");
    assert!(
        dom.contains("href=\"#/taskmanager/tm-a\">tm-a/") && dom.contains("href=\"#/taskmanager/tm-b\">tm-b/"),
        "{dom}"
    );

    // Checkpoints: at least three completed with sizes, and the restore.
    let dom = browser.dom(&format!("/job/{job}/checkpoints"), "checkpoints");
    let history = dom.split("id=\"checkpoint-history\"").nth(1).unwrap();
    let completed: Vec<&str> =
        history.split("<tr>").filter(|r| r.contains("<td class=\"COMPLETED\">COMPLETED</td>")).collect();
    assert!(completed.len() >= 3, "{history}");
    assert!(completed.iter().all(|r| r.contains(" B</td>") || r.contains("KiB</td>")), "sizes: {history}");
    assert!(row_with(&dom, "<td>Restored</td>").contains("chk-"), "{dom}");

    // Exceptions: the injected failure with its task.
    let dom = browser.dom(&format!("/job/{job}/exceptions"), "exceptions");
    let history = dom.split("id=\"exceptions\"").nth(1).unwrap();
    let row = row_with(history, "injected failure at checkpoint 3");
    assert!(row.contains("Keyed Aggregation") && row.contains("TaskFailed"), "{row}");

    // Configuration: the job's arguments with the secret masked.
    let dom = browser.dom(&format!("/job/{job}/config"), "configuration");
    assert!(dom.contains("******") && !dom.contains("hunter2"), "{dom}");

    // TaskManagers and a log holding a line the job logged.
    let dom = browser.dom("/taskmanagers", "taskmanagers");
    assert!(dom.contains(">tm-a</a>") && dom.contains(">tm-b</a>"), "{dom}");
    assert!(row_with(&dom, ">tm-a</a>").contains("<td>127.0.0.1:"), "the address: {dom}");
    let dom = browser.dom("/taskmanager/tm-a", "taskmanager");
    let log = dom
        .split("href=\"#/taskmanager/tm-a/log/")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .find(|name| name.ends_with(".log") && name.starts_with(&job))
        .unwrap_or_else(|| panic!("no log of the job on tm-a: {dom}"));
    let dom = browser.dom(&format!("/taskmanager/tm-a/log/{log}"), "taskmanager-log");
    assert!(dom.contains(&format!("Kafka WordCount reads '{input}'")), "{dom}");

    // The JobManager: its configuration and the driver's log.
    let dom = browser.dom("/jobmanager", "jobmanager");
    assert!(dom.contains("id=\"jm-config\"") && dom.contains(&format!("{job}.log")), "{dom}");

    feeder.join().unwrap();
    let _ = cluster.cli(&["cancel", &job]);
}

/// Submission through the UI's form, driven in the browser: choose the
/// batch WordCount binary, upload it, press Run, type the parallelism and
/// the arguments, submit; the job runs on the cluster and its counts are
/// exact.
#[test]
fn a_job_submitted_through_the_form_runs_and_its_result_is_exact() {
    let cluster = ClusterUnderTest::start("60s");
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    let text = corpus();
    std::fs::write(&input, &text).unwrap();

    let mut page = Page::open(&format!("http://127.0.0.1:{}/#/submit?token={TOKEN}", cluster.rest));
    page.wait_for("document.getElementById('jar-file') !== null", Duration::from_secs(20));
    page.choose_file("#jar-file", WORDCOUNT.as_str());
    page.click("#upload");
    page.wait_for("document.querySelector('#jars button.run') !== null", Duration::from_secs(120));
    let listed = page.eval("document.querySelector('#jars tbody').innerText");
    assert!(listed.as_str().unwrap().contains("wordcount"), "{listed}");
    page.click("#jars button.run");
    page.wait_for("document.getElementById('run-form') !== null", Duration::from_secs(20));
    page.type_into("#run-form input[name=parallelism]", "4");
    page.type_into("#run-form input[name=args]", &format!("--input {} --output {}", input.display(), output.display()));
    page.click("#run-submit");
    let hash = page.wait_for("location.hash.startsWith('#/job/') && location.hash", Duration::from_secs(30));
    let job = hash.as_str().unwrap()["#/job/".len()..].to_string();

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = cluster.get(&format!("/jobs/{job}"), Some(TOKEN));
        match v["state"].as_str() {
            Some("FINISHED") => break,
            Some("FAILED" | "CANCELED") => panic!("the submitted job ended {v}"),
            _ => assert!(Instant::now() < deadline, "the submitted job did not finish: {v}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, config) = cluster.get(&format!("/jobs/{job}/config"), Some(TOKEN));
    assert_eq!(config["execution-config"]["job-parallelism"], 4, "{config}");
    assert_eq!(read_counts(&output), reference_counts(&text));
    // The page follows the job to its end.
    page.wait_for(
        "document.getElementById('job-state') && document.getElementById('job-state').textContent === 'FINISHED'",
        Duration::from_secs(20),
    );
}

/// A job asking for more slots than the cluster has says so (the seed's
/// note: Flink's UI spins forever).
#[test]
fn a_job_waiting_for_slots_says_for_how_many() {
    let cluster = ClusterUnderTest::start("60s");
    let out = cluster.cli(&["run", "-d", "-p", "5", WORDCOUNT.as_str(), "--", "--input", "/etc/hostname"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);
    let browser = Browser { rest: cluster.rest, profile: tempfile::tempdir().unwrap(), screenshots: None };
    let dom = browser.dom("/overview", "waiting");
    assert!(row_with(&dom, &format!(">{job}</a>")).contains("waiting for 5 slots (4 free)"), "{dom}");
    let dom = browser.dom(&format!("/job/{job}"), "waiting-job");
    assert!(dom.contains("The job waits for 5 slots."), "{dom}");
    let _ = cluster.cli(&["cancel", &job]);
}
