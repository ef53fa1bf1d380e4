//! Test hosts for multi-host tests on one machine: each host a network
//! namespace with its own address on a bridge the test creates (and
//! removes when the [`TestNetwork`] is dropped), so that no process can
//! reach another over loopback. Processes run in a host with
//! [`TestHost::command`]; [`TestNetwork::cut`] and [`TestNetwork::heal`]
//! make and mend a network partition between two hosts (a blackhole route
//! on each side).
//!
//! Needs root (`ip netns`, from iproute2) and, where Docker's firewall
//! drops forwarded traffic, one `iptables` rule that lets the bridge's own
//! traffic through (inserted on creation, deleted on drop). The machine's
//! own process talks to the hosts through the bridge's address.

use crate::{Error, Result};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A host of a [`TestNetwork`].
#[derive(Debug, Clone)]
pub struct TestHost {
    /// Its name in the test (`etcd`, `jm-0`, ...).
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    /// Its address.
    pub ip: String,
}

impl TestHost {
    /// A command that runs `program` on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }
}

/// A bridge and the hosts on it. See the module docs.
pub struct TestNetwork {
    bridge: String,
    /// The machine's own address on the bridge.
    pub gateway: String,
    hosts: Vec<TestHost>,
    firewall_rule: bool,
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(crate::io(format!("running {args:?}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Service {
            what: "test network".into(),
            message: format!(
                "{} failed: {} (the multi-host tests need root and iproute2: scripts/install-deps.sh)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

impl TestNetwork {
    /// Creates a bridge and one namespace per name in `hosts`, each with
    /// its own address on a /24 of 10.213.0.0/16 and loopback up.
    pub fn create(hosts: &[&str]) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:x}", (std::process::id() & 0xfff) << 4 | (n & 0xf));
        let subnet = 20 + (std::process::id().wrapping_mul(7).wrapping_add(n * 31) % 200);
        let bridge = format!("slb{tag}");
        let mut net = TestNetwork {
            bridge: bridge.clone(),
            gateway: format!("10.213.{subnet}.1"),
            hosts: Vec::new(),
            firewall_rule: false,
        };
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{}/24", net.gateway), "dev", &bridge])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        // Docker sets the FORWARD policy to DROP and bridged traffic passes
        // through iptables: let this bridge's own traffic through.
        if Command::new("iptables").args(["-S", "FORWARD"]).output().is_ok_and(|o| o.status.success()) {
            run(&["iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"])?;
            net.firewall_rule = true;
        }
        for (i, name) in hosts.iter().enumerate() {
            let ns = format!("sl{tag}-{name}");
            let (outer, inner) = (format!("slv{tag}{i}"), format!("slp{tag}{i}"));
            let ip = format!("10.213.{subnet}.{}", i + 2);
            run(&["ip", "netns", "add", &ns])?;
            net.hosts.push(TestHost { name: name.to_string(), ns: ns.clone(), ip: ip.clone() });
            run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
            run(&["ip", "link", "set", &inner, "netns", &ns])?;
            run(&["ip", "link", "set", &outer, "master", &bridge])?;
            run(&["ip", "link", "set", &outer, "up"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", &inner, "name", "eth0"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// The host named `name`.
    #[allow(clippy::panic)]
    pub fn host(&self, name: &str) -> &TestHost {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no test host '{name}'"))
    }

    /// Cuts the link between hosts `a` and `b` (both directions).
    pub fn cut(&self, a: &str, b: &str) -> Result<()> {
        let (a, b) = (self.host(a), self.host(b));
        run(&["ip", "netns", "exec", &a.ns, "ip", "route", "add", "blackhole", &format!("{}/32", b.ip)])?;
        run(&["ip", "netns", "exec", &b.ns, "ip", "route", "add", "blackhole", &format!("{}/32", a.ip)])
    }

    /// Mends a [`cut`](Self::cut).
    pub fn heal(&self, a: &str, b: &str) -> Result<()> {
        let (a, b) = (self.host(a), self.host(b));
        run(&["ip", "netns", "exec", &a.ns, "ip", "route", "del", "blackhole", &format!("{}/32", b.ip)])?;
        run(&["ip", "netns", "exec", &b.ns, "ip", "route", "del", "blackhole", &format!("{}/32", a.ip)])
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        if self.firewall_rule {
            let _ = run(&["iptables", "-D", "FORWARD", "-i", &self.bridge, "-o", &self.bridge, "-j", "ACCEPT"]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}
