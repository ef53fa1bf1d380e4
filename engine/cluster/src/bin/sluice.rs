//! `sluice`: the cluster processes and the client, in Flink's shape.
//!
//! ```text
//! sluice jobmanager                       # JobManager: RPC, REST API, web UI
//! sluice taskmanager                      # a TaskManager offering taskmanager.numberOfTaskSlots
//! sluice run [-c ENTRY] [-p N] [-d] [-s SAVEPOINT] [--allow-non-restored-state] BINARY [-- ARGS]
//! sluice run-application [--taskmanagers N] [-p N] BINARY [-- ARGS]
//! sluice standalone-job [-c ENTRY] [-p N] [-s SAVEPOINT] BINARY [-- ARGS]   # an application cluster's JobManager
//! sluice list [-a]
//! sluice cancel JOB
//! sluice savepoint JOB [DIR]
//! sluice stop --savepoint-path DIR JOB
//! ```
//!
//! The client commands talk to the JobManager's REST API at `-m HOST:PORT`
//! (default: `rest.address`:`rest.port` of the configuration).

use anyhow_free::*;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use sluice::cluster::protocol::JobStatus;
use sluice::config::Configuration;
use sluice_cluster::{jobmanager_process, rest, taskmanager_process};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Errors of the CLI: a message for the user.
mod anyhow_free {
    /// What went wrong, as the user should read it.
    #[derive(Debug)]
    pub struct CliError(pub String);

    impl<E: std::fmt::Display> From<E> for CliError {
        fn from(e: E) -> Self {
            CliError(e.to_string())
        }
    }

    /// Result of a CLI step.
    pub type CliResult<T> = Result<T, CliError>;

    /// A `CliError` from text.
    pub fn fail<T>(msg: impl Into<String>) -> CliResult<T> {
        Err(CliError(msg.into()))
    }
}

#[derive(Parser)]
#[command(name = "sluice", version, about = "Sluice cluster processes and client")]
struct Cli {
    /// The JobManager's REST address (default: rest.address:rest.port).
    #[arg(short = 'm', long = "jobmanager", global = true)]
    jobmanager: Option<String>,
    /// A file holding the REST API's bearer token (default: $SLUICE_REST_TOKEN,
    /// then rest.token-file, then rest.token). Never give a token on the
    /// command line: every user of the machine can read it.
    #[arg(long = "token-file", global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Configuration file (default: $SLUICE_CONF_DIR/sluice.yaml, then ./sluice.yaml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Configuration override, repeatable: -D key=value.
    #[arg(short = 'D', global = true, value_name = "KEY=VALUE")]
    dynamic: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a JobManager (resource manager, dispatcher, REST API, web UI).
    Jobmanager,
    /// Run a TaskManager that registers with the JobManager.
    Taskmanager,
    /// Run the JobManager of an application cluster: it runs the job of a
    /// binary it has at hand (e.g. in its container image) once it leads,
    /// and exits when that job has ended (0 if it finished). TaskManagers
    /// join as they join any JobManager.
    StandaloneJob(RunArgs),
    /// Submit a job binary to the cluster.
    Run(RunArgs),
    /// Start a cluster for one job, run it, and stop the cluster.
    RunApplication {
        /// TaskManagers to start.
        #[arg(long, default_value_t = 1)]
        taskmanagers: u32,
        #[command(flatten)]
        run: RunArgs,
    },
    /// List jobs: scheduled and running ones; with -a also ended ones.
    List {
        /// Also jobs that ended.
        #[arg(short = 'a', long)]
        all: bool,
        /// Only running jobs.
        #[arg(short = 'r', long)]
        running: bool,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        job: String,
    },
    /// Take a savepoint of a running job.
    Savepoint {
        /// The job id.
        job: String,
        /// Target directory (default: state.savepoints.dir).
        dir: Option<String>,
    },
    /// Take a savepoint, then cancel the job.
    Stop {
        /// Target directory.
        #[arg(long = "savepoint-path", short = 'p')]
        savepoint_path: Option<String>,
        /// The job id.
        job: String,
    },
}

#[derive(Args)]
struct RunArgs {
    /// With a directory as BINARY: the binary in it to run.
    #[arg(short = 'c', long = "class")]
    entry: Option<String>,
    /// Parallelism (the client level of the five).
    #[arg(short = 'p', long)]
    parallelism: Option<u32>,
    /// Return once submitted.
    #[arg(short = 'd', long)]
    detached: bool,
    /// Start from this savepoint or retained checkpoint.
    #[arg(short = 's', long = "fromSavepoint")]
    savepoint: Option<String>,
    /// Accept savepoint state no operator claims.
    #[arg(short = 'n', long = "allow-non-restored-state")]
    allow_non_restored_state: bool,
    /// The job's binary (or a directory of binaries with -c).
    binary: PathBuf,
    /// The job's own arguments (after --).
    #[arg(last = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    match run(cli) {
        Ok(code) => code,
        Err(CliError(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn configuration(cli: &Cli) -> CliResult<Configuration> {
    let mut conf = Configuration::discover(cli.config.as_deref())?;
    for d in &cli.dynamic {
        conf.set_dynamic(d)?;
    }
    Ok(conf)
}

fn run(cli: Cli) -> CliResult<ExitCode> {
    let conf = configuration(&cli)?;
    match &cli.command {
        Command::Jobmanager => {
            let _jm = start_jobmanager(&conf)?;
            loop {
                std::thread::park();
            }
        }
        Command::StandaloneJob(args) => {
            if args.detached {
                return fail("standalone-job runs its job in this process until it ends: -d does not apply");
            }
            let binary = resolve_binary(args)?;
            let jm = start_jobmanager(&conf)?;
            let app = jobmanager_process::Application {
                binary,
                args: args.args.clone(),
                parallelism: args.parallelism,
                savepoint: args.savepoint.clone(),
                allow_non_restored: args.allow_non_restored_state,
            };
            let (job, status) = jm.run_application(app)?;
            println!("Job {job} ended: {status}");
            let _ = jm.call(|c| c.shut_down_task_managers());
            Ok(if status == JobStatus::Finished { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Taskmanager => {
            let settings = taskmanager_process::TaskManagerSettings::from_config(&conf)?;
            // Every process serves /metrics: on the configured port, else on
            // an ephemeral one (the JobManager lists it at /metrics/targets).
            let ports = conf.get_port_range("metrics.reporter.prom.port")?.unwrap_or((0, 0));
            let host = conf.get_str("metrics.reporter.prom.host")?.unwrap_or_else(|| "127.0.0.1".into());
            let metrics = sluice::metrics::MetricsServer::start_in_range(&host, ports)?;
            taskmanager_process::run(settings, Some(&metrics))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let client = Client::new(&cli, &conf)?;
            submit_and_follow(&client, args)
        }
        Command::RunApplication { taskmanagers, run } => run_application(&cli, &conf, *taskmanagers, run),
        Command::List { all, running } => {
            let client = Client::new(&cli, &conf)?;
            list(&client, *all, *running)
        }
        Command::Cancel { job } => {
            let client = Client::new(&cli, &conf)?;
            client.request("PATCH", &format!("/jobs/{job}?mode=cancel"), None)?;
            println!("Cancelled job {job}.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Savepoint { job, dir } => {
            let client = Client::new(&cli, &conf)?;
            let dir = savepoint_dir(dir.as_deref(), &conf, "pass one (sluice savepoint JOB DIR)")?;
            println!("Triggering savepoint for job {job}.");
            let v =
                client.request("POST", &format!("/jobs/{job}/savepoints"), Some(json!({"target-directory": dir})))?;
            println!("Savepoint completed. Path: {}", v["location"].as_str().unwrap_or("?"));
            println!("You can resume your program from this savepoint with the run command.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop { savepoint_path, job } => {
            let client = Client::new(&cli, &conf)?;
            let dir = savepoint_dir(savepoint_path.as_deref(), &conf, "pass --savepoint-path DIR")?;
            println!("Suspending job {job}.");
            let v = client.request("POST", &format!("/jobs/{job}/stop"), Some(json!({"targetDirectory": dir})))?;
            println!("Savepoint completed. Path: {}", v["location"].as_str().unwrap_or("?"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A savepoint's target directory, absolute: the one given, else
/// `state.savepoints.dir`; `how` tells the user how to give one.
fn savepoint_dir(given: Option<&str>, conf: &Configuration, how: &str) -> CliResult<String> {
    match given.map(str::to_string).or(conf.get_str("state.savepoints.dir")?) {
        Some(d) => absolute(&d),
        None => fail(format!("no target directory: {how} or set state.savepoints.dir")),
    }
}

fn absolute(p: &str) -> CliResult<String> {
    Ok(std::path::absolute(p)?.display().to_string())
}

/// A REST client of the JobManager.
struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(cli: &Cli, conf: &Configuration) -> CliResult<Self> {
        let ha = sluice_cluster::ha::HaSettings::from_config(conf)?;
        let base = match &cli.jobmanager {
            Some(m) => m.clone(),
            // With high availability: the leader's REST address.
            None if ha.enabled() => match ha.services()? {
                Some(services) => {
                    sluice_cluster::ha::locate_leader(services.as_ref(), Duration::from_secs(10))?.rest_address
                }
                None => return fail("high availability is configured but has no services"),
            },
            None => {
                let host = conf.get_str("rest.address")?.unwrap_or_else(|| "127.0.0.1".into());
                format!("{host}:{}", conf.get_u32("rest.port")?.unwrap_or(8081))
            }
        };
        let scheme =
            if conf.get_bool(sluice_cluster::rest_tls::ENABLED_KEY)?.unwrap_or(false) { "https" } else { "http" };
        let base = if base.starts_with("http") { base } else { format!("{scheme}://{base}") };
        let token = client_token(cli, conf)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(620)))
            .tls_config(sluice_cluster::rest_tls::client_config(conf)?)
            .build()
            .into();
        Ok(Client { base, token, agent })
    }

    fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>, json_body: bool) -> CliResult<Value> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let builder = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = match method {
                    "PATCH" => self.agent.patch(&url),
                    _ => self.agent.post(&url),
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                // What the REST API asks of state-changing requests (no web page can send it).
                r = r.header(sluice_cluster::rest_guard::CLIENT_HEADER, "sluice-cli");
                r = r.header("Content-Type", if json_body { "application/json" } else { "application/octet-stream" });
                match body {
                    Some(b) => r.send(&b[..]),
                    None => r.send_empty(),
                }
            }
        };
        let mut resp = builder.map_err(|e| {
            CliError(format!("cannot reach the JobManager at {}: {e} (is it running? pass -m HOST:PORT)", self.base))
        })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let msg = value["errors"].as_array().and_then(|a| a.first()).and_then(Value::as_str).map(str::to_string);
            return fail(format!("the JobManager answered {status}: {}", msg.unwrap_or_else(|| value.to_string())));
        }
        Ok(value)
    }

    fn request(&self, method: &str, path: &str, body: Option<Value>) -> CliResult<Value> {
        self.send(method, path, body.map(|b| b.to_string().into_bytes()), true)
    }
}

fn resolve_binary(args: &RunArgs) -> CliResult<PathBuf> {
    let path = if args.binary.is_dir() {
        match &args.entry {
            Some(e) => args.binary.join(e),
            None => return fail(format!("'{}' is a directory: name the binary in it with -c", args.binary.display())),
        }
    } else {
        args.binary.clone()
    };
    let meta = std::fs::metadata(&path).map_err(|e| CliError(format!("cannot read '{}': {e}", path.display())))?;
    use std::os::unix::fs::PermissionsExt;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return fail(format!(
            "'{}' is not an executable file (build the job with cargo build --release)",
            path.display()
        ));
    }
    Ok(path)
}

fn submit_and_follow(client: &Client, args: &RunArgs) -> CliResult<ExitCode> {
    let job = submit(client, args)?;
    println!("Job has been submitted with JobID {job}");
    if args.detached {
        return Ok(ExitCode::SUCCESS);
    }
    follow(client, &job)
}

/// The client's REST token: `--token-file`, else $SLUICE_REST_TOKEN, else
/// the configuration's `rest.token-file` or `rest.token`.
fn client_token(cli: &Cli, conf: &Configuration) -> CliResult<Option<String>> {
    if let Some(path) = &cli.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError(format!("cannot read the token file {}: {e}", path.display())))?;
        return Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()));
    }
    Ok(sluice_cluster::rest_guard::RestPolicy::from_config(conf)?.token)
}

fn submit(client: &Client, args: &RunArgs) -> CliResult<String> {
    let path = resolve_binary(args)?;
    let bytes = std::fs::read(&path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("job").to_string();
    let up = client.send("POST", &format!("/jars/upload?filename={name}"), Some(bytes), false)?;
    let id = up["id"].as_str().ok_or_else(|| CliError(format!("unexpected upload answer: {up}")))?;
    let savepoint = args.savepoint.as_deref().map(absolute).transpose()?;
    let body = json!({
        "programArgsList": args.args,
        "parallelism": args.parallelism,
        "entryClass": args.entry.as_ref().map(|_| name.clone()),
        "savepointPath": savepoint,
        "allowNonRestoredState": args.allow_non_restored_state,
    });
    let v = client.request("POST", &format!("/jars/{id}/run"), Some(body))?;
    v["jobid"].as_str().map(str::to_string).ok_or_else(|| CliError(format!("unexpected run answer: {v}")))
}

fn follow(client: &Client, job: &str) -> CliResult<ExitCode> {
    let started = Instant::now();
    let mut last_state = String::new();
    loop {
        let v = client.request("GET", &format!("/jobs/{job}"), None)?;
        let state = v["state"].as_str().unwrap_or("?").to_string();
        if state != last_state {
            eprintln!("Job {job} is {state}");
            last_state = state.clone();
        }
        match state.as_str() {
            "FINISHED" => {
                println!("Job with JobID {job} has finished.");
                println!("Job Runtime: {} ms", v["duration"].as_u64().unwrap_or(started.elapsed().as_millis() as u64));
                return Ok(ExitCode::SUCCESS);
            }
            "FAILED" | "CANCELED" => {
                println!("Job with JobID {job} ended: {state}");
                if let Some(f) = v["failure"].as_str() {
                    println!("Cause: {f}");
                }
                return Ok(ExitCode::FAILURE);
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn list(client: &Client, all: bool, running_only: bool) -> CliResult<ExitCode> {
    println!("Waiting for response...");
    let v = client.request("GET", "/jobs/overview", None)?;
    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    let line = |j: &Value| {
        format!(
            "{} : {} : {} ({})",
            date_time(j["start-time"].as_u64().unwrap_or(0)),
            j["jid"].as_str().unwrap_or("?"),
            j["name"].as_str().unwrap_or("?"),
            j["state"].as_str().unwrap_or("?")
        )
    };
    let with = |states: &[&str]| -> Vec<String> {
        jobs.iter().filter(|j| states.contains(&j["state"].as_str().unwrap_or(""))).map(line).collect()
    };
    let section = |title: &str, rows: Vec<String>, empty: &str| {
        if rows.is_empty() {
            println!("{empty}");
        } else {
            println!("------------------ {title} ------------------");
            for r in rows {
                println!("{r}");
            }
            println!("--------------------------------------------------------------");
        }
    };
    section("Running/Restarting Jobs", with(&["RUNNING", "RESTARTING", "FAILING", "CANCELLING"]), "No running jobs.");
    if !running_only {
        section("Scheduled Jobs", with(&["CREATED"]), "No scheduled jobs.");
    }
    if all {
        section("Terminated Jobs", with(&["FINISHED", "FAILED", "CANCELED"]), "No terminated jobs.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `dd.MM.yyyy HH:mm:ss` in UTC, as Flink's CLI prints (Flink uses local time).
fn date_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{d:02}.{m:02}.{y} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Application mode: a JobManager in this process and TaskManager child
/// processes, for one job; everything stops when the job ends: the
/// TaskManagers are told to shut down (they stop their job processes
/// first) and killed if they do not within [`APPLICATION_SHUTDOWN`], and
/// the job's driver is waited for (killed likewise).
/// Starts a JobManager (RPC, REST API, leadership) as `conf` says.
fn start_jobmanager(conf: &Configuration) -> CliResult<jobmanager_process::JobManager> {
    let settings = jobmanager_process::JobManagerSettings::from_config(conf)?;
    let (bind, token) = (settings.rest_bind.clone(), settings.rest.clone());
    let rest_host = settings.rest_advertised_host.clone();
    let jm = jobmanager_process::start(settings)?;
    let rpc = jm.rpc_address().to_string();
    let tls = sluice_cluster::rest_tls::server_config(conf)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let rest_addr = rest::serve(jm.clone(), &bind, token, tls)?;
    eprintln!("JobManager running: web UI and REST API at {scheme}://{rest_addr}/ , RPC at {rpc}");
    jm.start_leadership(&format!("{rest_host}:{}", rest_addr.port()))?;
    Ok(jm)
}

fn run_application(cli: &Cli, conf: &Configuration, taskmanagers: u32, args: &RunArgs) -> CliResult<ExitCode> {
    let mut settings = jobmanager_process::JobManagerSettings::from_config(conf)?;
    settings.rpc_bind = "127.0.0.1:0".into();
    settings.rpc_advertised_host = "127.0.0.1".into();
    settings.rest_bind = "127.0.0.1:0".into();
    settings.rest_advertised_host = "127.0.0.1".into();
    let token = settings.rest.clone();
    let jm = jobmanager_process::start(settings)?;
    let rpc = jm.rpc_address().to_string();
    let tls = sluice_cluster::rest_tls::server_config(conf)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let rest_addr = rest::serve(jm.clone(), "127.0.0.1:0", token, tls)?;
    eprintln!("Application cluster: web UI and REST API at {scheme}://{rest_addr}/ , RPC at {rpc}");
    let (rpc_host, rpc_port) = rpc.rsplit_once(':').ok_or_else(|| CliError(format!("bad RPC address {rpc}")))?;
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..taskmanagers {
        let mut cmd = std::process::Command::new(&exe);
        if let Some(c) = &cli.config {
            cmd.arg("--config").arg(c);
        }
        for d in &cli.dynamic {
            cmd.arg("-D").arg(d);
        }
        cmd.args([
            "-D",
            &format!("jobmanager.rpc.address={rpc_host}"),
            "-D",
            &format!("jobmanager.rpc.port={rpc_port}"),
        ])
        .args(["-D", &format!("taskmanager.resource-id=application-tm-{i}-{}", std::process::id())])
        .env(taskmanager_process::EXIT_WITH_PARENT_VAR, "1")
        .arg("taskmanager");
        children.push(cmd.spawn()?);
    }
    let client = Client {
        base: format!("{scheme}://{rest_addr}"),
        token: client_token(cli, conf)?,
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(sluice_cluster::rest_tls::client_config(conf)?)
            .build()
            .into(),
    };
    let result = submit(&client, args).and_then(|job| {
        println!("Job has been submitted with JobID {job}");
        follow(&client, &job)
    });
    // The event loop runs as long as this process: these calls answer.
    let _ = jm.call(|c| c.shut_down_task_managers());
    let deadline = Instant::now() + APPLICATION_SHUTDOWN;
    for mut c in children {
        while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(c.try_wait(), Ok(None)) {
            eprintln!("TaskManager (pid {}) did not shut down in time; killing it", c.id());
            let _ = c.kill();
        }
        let _ = c.wait();
    }
    while Instant::now() < deadline && jm.call(|c| c.live_drivers()).unwrap_or(0) > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = jm.call(|c| c.kill_drivers());
    result
}

/// How long an application cluster's processes get to stop by themselves.
const APPLICATION_SHUTDOWN: Duration = Duration::from_secs(10);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn dates_print_like_flink() {
        assert_eq!(super::date_time(0), "01.01.1970 00:00:00");
        assert_eq!(super::date_time(1_795_000_000_000), "18.11.2026 11:06:40");
    }

    #[test]
    fn paths_stay_paths() {
        assert!(super::absolute("x").unwrap().ends_with("/x"));
    }
}
