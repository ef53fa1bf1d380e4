//! The plain Kubernetes manifests of `deploy/kubernetes/` checked against
//! what Sluice accepts (no API server here: applying them to a cluster is
//! the Kubernetes issue's test): every file is YAML with a kind and a name;
//! each ConfigMap's `sluice.yaml` loads as a Sluice configuration, and so
//! does it with every container's `-D` arguments (pod fields filled in);
//! every container runs a `sluice` subcommand the binary knows, with the
//! image's user; every mount names a volume of its pod, and every file
//! the configuration names lies under a mount; the Service's ports are the
//! configured ones; an application runs a binary the image ships.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice::config::Configuration;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

mod common;

use common::cluster::sluice_bin;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// Every document of the YAML files in `dir` (and below), by file.
fn documents(dir: &Path) -> BTreeMap<String, Vec<Yaml>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(documents(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.insert(path.strip_prefix(manifests_dir()).unwrap().display().to_string(), docs);
        }
    }
    out
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str().unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

/// The pod template of a workload (Deployment, Job).
fn pod_spec(doc: &Yaml) -> Option<&Yaml> {
    let spec = &doc["spec"]["template"]["spec"];
    (!spec.is_badvalue()).then_some(spec)
}

/// `$(VAR)` references Kubernetes fills in from the container's env.
fn expand(arg: &str) -> String {
    arg.replace("$(POD_IP)", "10.1.2.3").replace("$(POD_NAME)", "sluice-pod-0")
}

/// The subcommands of the `sluice` binary (its `--help`).
fn subcommands() -> Vec<String> {
    let out = Command::new(sluice_bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The example binaries the image ships (`SLUICE_EXAMPLES` of the script).
fn image_examples() -> Vec<String> {
    let script =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/docker-images.sh")).unwrap();
    let line = script.lines().find_map(|l| l.strip_prefix("SLUICE_EXAMPLES=")).expect("SLUICE_EXAMPLES in the script");
    line.trim_matches('"').split_whitespace().map(|s| format!("/opt/sluice/examples/{s}")).collect()
}

/// The image's user (docker/sluice/Dockerfile).
fn image_uid() -> i64 {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/sluice/Dockerfile")).unwrap();
    let at = dockerfile.find("--uid ").expect("the Dockerfile makes a user with --uid");
    dockerfile[at + 6..].split_whitespace().next().unwrap().parse().unwrap()
}

/// Checks one cluster directory (`session`, `application`) together with
/// `common/`.
fn check_cluster(mode: &str) {
    let all = documents(&manifests_dir());
    let docs: Vec<(&String, &Yaml)> = all
        .iter()
        .filter(|(f, _)| f.starts_with("common/") || f.starts_with(&format!("{mode}/")))
        .flat_map(|(f, ds)| ds.iter().map(move |d| (f, d)))
        .collect();
    for (file, d) in &docs {
        assert!(d["apiVersion"].as_str().is_some() && d["kind"].as_str().is_some(), "{file}: apiVersion and kind");
        assert!(d["metadata"]["name"].as_str().is_some(), "{file}: metadata.name");
    }
    let by_kind =
        |kind: &'static str| docs.iter().filter(move |(_, d)| d["kind"].as_str() == Some(kind)).map(|(f, d)| (*f, *d));
    let config_maps: Vec<_> = by_kind("ConfigMap").collect();
    assert_eq!(config_maps.len(), 1, "{mode}: one ConfigMap");
    let (cm_file, cm) = config_maps[0];
    let cm_name = str_of(&cm["metadata"]["name"], "the ConfigMap's name");
    let text = str_of(&cm["data"]["sluice.yaml"], "data.sluice.yaml");
    let conf = Configuration::from_yaml_str(text).unwrap_or_else(|e| panic!("{cm_file}: sluice.yaml: {e}"));
    assert_eq!(conf.get_str("high-availability.type").unwrap().as_deref(), Some("etcd"), "{cm_file}: HA on etcd");

    let pvcs: Vec<String> =
        by_kind("PersistentVolumeClaim").map(|(_, d)| d["metadata"]["name"].as_str().unwrap().into()).collect();
    let known = subcommands();
    assert!(known.contains(&"jobmanager".to_string()) && known.contains(&"standalone-job".to_string()), "{known:?}");
    let mut roles = Vec::new();
    for (file, d) in docs.iter().filter(|(_, d)| pod_spec(d).is_some()) {
        let spec = pod_spec(d).unwrap();
        assert_eq!(
            spec["securityContext"]["runAsUser"].as_i64(),
            Some(image_uid()),
            "{file}: runs as the image's user"
        );
        let volumes: BTreeMap<String, &Yaml> = spec["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|v| (str_of(&v["name"], "a volume's name").to_string(), v))
            .collect();
        for c in spec["containers"].as_vec().unwrap() {
            let image = str_of(&c["image"], "image");
            assert_eq!(
                image,
                format!("sluice/sluice:{}", env!("CARGO_PKG_VERSION")),
                "{file}: the image of this version"
            );
            let args: Vec<String> =
                c["args"].as_vec().unwrap().iter().map(|a| expand(str_of(a, "an argument"))).collect();
            // `-D key=value ...` then the subcommand.
            let mut pod_conf = Configuration::from_yaml_str(text).unwrap();
            let mut i = 0;
            while args.get(i).map(String::as_str) == Some("-D") {
                pod_conf.set_dynamic(&args[i + 1]).unwrap_or_else(|e| panic!("{file}: -D {}: {e}", args[i + 1]));
                i += 2;
            }
            let role = args.get(i).unwrap_or_else(|| panic!("{file}: no subcommand"));
            assert!(known.contains(role), "{file}: '{role}' is not a sluice subcommand ({known:?})");
            roles.push(role.clone());
            if role == "standalone-job" {
                let binary = args[i + 1..].iter().find(|a| a.starts_with('/')).expect("the application's binary");
                assert!(image_examples().contains(binary), "{file}: {binary} is not in the image");
            }
            // The mounts: volumes of this pod; ConfigMap and claim exist.
            let mounts: Vec<(String, String)> = c["volumeMounts"]
                .as_vec()
                .unwrap()
                .iter()
                .map(|m| {
                    (str_of(&m["name"], "mount name").to_string(), str_of(&m["mountPath"], "mountPath").to_string())
                })
                .collect();
            for (name, path) in &mounts {
                let v = volumes.get(name).unwrap_or_else(|| panic!("{file}: mount {name} names no volume"));
                if let Some(n) = v["configMap"]["name"].as_str() {
                    assert_eq!(n, cm_name, "{file}: volume {name}");
                    assert_eq!(path, "/opt/sluice/conf", "{file}: the configuration's mount (SLUICE_CONF_DIR)");
                }
                if let Some(n) = v["persistentVolumeClaim"]["claimName"].as_str() {
                    assert!(pvcs.iter().any(|p| p == n), "{file}: claim {n} is not in common/");
                }
            }
            // Every file or directory the configuration names is mounted.
            for (key, value) in pod_conf.iter() {
                let needs_file = key.ends_with(".cert")
                    || key.ends_with(".key")
                    || key.ends_with("trust-cert")
                    || key.ends_with("token-file")
                    || key.ends_with("storageDir")
                    || key.ends_with(".dir");
                if needs_file && (role != "taskmanager" || !key.starts_with("rest.")) {
                    assert!(
                        mounts.iter().any(|(_, p)| Path::new(value).starts_with(p)),
                        "{file}: {key}={value} is on no mount of the {role}"
                    );
                }
            }
            if role != "taskmanager" {
                let ports: Vec<i64> =
                    c["ports"].as_vec().unwrap().iter().map(|p| p["containerPort"].as_i64().unwrap()).collect();
                for key in ["jobmanager.rpc.port", "rest.port"] {
                    let port = i64::from(pod_conf.get_u32(key).unwrap().unwrap());
                    assert!(ports.contains(&port), "{file}: {key} {port} is not a container port");
                }
            }
        }
    }
    let jobmanager = if mode == "application" { "standalone-job" } else { "jobmanager" };
    for role in ["taskmanager", jobmanager] {
        assert!(roles.iter().any(|r| r == role), "{mode}: no {role}");
    }
    let service = by_kind("Service").next().expect("a Service").1;
    let service_ports: Vec<i64> =
        service["spec"]["ports"].as_vec().unwrap().iter().map(|p| p["port"].as_i64().unwrap()).collect();
    for key in ["jobmanager.rpc.port", "rest.port"] {
        let port = i64::from(conf.get_u32(key).unwrap().unwrap());
        assert!(service_ports.contains(&port), "the Service lacks {key} {port}");
    }
    let rpc_host = conf.get_str("jobmanager.rpc.address").unwrap().unwrap();
    assert_eq!(rpc_host, str_of(&service["metadata"]["name"], "the Service's name"), "TaskManagers reach the Service");
}

/// A session cluster: JobManagers (leader and standby) and TaskManagers.
#[test]
fn the_session_cluster_manifests_fit_sluice() {
    check_cluster("session");
}

/// An application cluster: a standalone-job JobManager and TaskManagers.
#[test]
fn the_application_cluster_manifests_fit_sluice() {
    check_cluster("application");
}
