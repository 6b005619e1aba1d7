//! What `deploy/` ships is checked by the tools that read it: the alert rules by `promtool
//! check rules` and their unit tests by `promtool test rules`; the Grafana dashboard's every
//! query parsed by promtool (as recording rules) and its metric names are real ones (the
//! running deployment's `/metrics` is checked in `status_page.rs`); the systemd unit by
//! `systemd-analyze verify`, and the init script for hosts without systemd runs its commands;
//! the Ansible playbooks by `ansible-playbook --syntax-check`, and
//! `init.yml` (the control machine's part) run for real on the example inventory.
//! `scripts/test` installs promtool (Debian's `prometheus`) and ansible-core (in
//! `deploy/ansible/.venv`, see `deploy/ansible/README.md`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use roster_tests::{roster_bin, run_with_deadline, TempDir, Users};

/// How long one tool run may take.
const TOOL_DEADLINE: Duration = Duration::from_secs(120);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Runs `command`; panics with its output unless it succeeds. Returns stdout and stderr.
fn run_ok(command: &mut Command) -> String {
    let output = run_with_deadline(command, TOOL_DEADLINE);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed: {text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy_dir().join("prometheus");
    let checked = run_ok(Command::new("promtool").current_dir(&dir).args([
        "check",
        "rules",
        "roster.rules.yml",
    ]));
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = run_ok(Command::new("promtool").current_dir(&dir).args([
        "test",
        "rules",
        "roster.rules.test.yml",
    ]));
    assert!(tested.contains("SUCCESS"), "{tested}");
    let config = run_ok(Command::new("promtool").current_dir(&dir).args([
        "check",
        "config",
        "--syntax-only",
        "prometheus.yml",
    ]));
    assert!(config.contains("SUCCESS"), "{config}");
}

#[test]
fn every_dashboard_query_parses() {
    let queries = roster_tests::deployment::dashboard_queries();
    assert!(queries.len() >= 15, "{queries:?}");
    // promtool parses PromQL in rule files: each query becomes a recording rule.
    let dir = TempDir::new("dashboard");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, query) in queries.iter().enumerate() {
        let quoted = serde_json::to_string(query).expect("a string");
        rules.push_str(&format!(
            "      - record: dashboard:query{index}\n        expr: {quoted}\n"
        ));
    }
    let path = dir.path().join("dashboard.rules.yml");
    std::fs::write(&path, rules).expect("write rules");
    let checked = run_ok(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&path),
    );
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{checked}"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/roster.service"))
        .expect("deploy/systemd/roster.service");
    // systemd-analyze checks that ExecStart's program exists: point it at the built binary.
    let dir = TempDir::new("unit");
    let path = dir.path().join("roster.service");
    let binary = roster_bin();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/roster", &binary.to_string_lossy()),
    )
    .expect("write unit");
    let output = run_with_deadline(
        Command::new("systemd-analyze").arg("verify").arg(&path),
        TOOL_DEADLINE,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {stderr}");
    // Unknown keys or sections are only warnings: none is allowed.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("roster.service"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
    for key in [
        "User=roster",
        "Restart=on-failure",
        "LimitNOFILE=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(key), "the unit lacks {key}");
    }
}

/// The init script (hosts without systemd, `roster_service_manager: sysv`) parses, and runs
/// what the unit runs: its `ExecStartPre=` and `ExecStart=` command lines, as the unit's user
/// with its capability.
#[test]
fn the_init_script_runs_the_units_commands() {
    let script_path = deploy_dir().join("init.d/roster");
    run_ok(Command::new("sh").arg("-n").arg(&script_path));
    let script = std::fs::read_to_string(&script_path).expect("deploy/init.d/roster");
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/roster.service"))
        .expect("deploy/systemd/roster.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_else(|| panic!("the unit has no {key}"))
            .to_owned()
    };
    let start = value("ExecStart=");
    let check = value("ExecStartPre=");
    assert_eq!(check, format!("{start} --check-config"));
    // The script spells the program and the configuration once each, as variables.
    let (program, config) = start
        .split_once(" start --config ")
        .expect("ExecStart= is `roster start --config FILE`");
    assert!(script.contains(&format!("DAEMON={program}\n")), "{program}");
    assert!(script.contains(&format!("CONFIG={config}\n")), "{config}");
    for piece in [
        "\"$DAEMON\" start --config \"$CONFIG\" --check-config",
        "\"$DAEMON\" start --config \"$CONFIG\"\n",
        &format!("--reuid {}", value("User=")),
        &format!("--regid {}", value("Group=")),
        "--ambient-caps -all,+net_bind_service",
        "ulimit -n 1048576",
    ] {
        assert!(script.contains(piece), "the init script lacks {piece:?}");
    }
}

/// The `ansible-playbook` of `deploy/ansible/.venv` (or on the path).
fn ansible_playbook() -> PathBuf {
    let venv = deploy_dir().join("ansible/.venv/bin/ansible-playbook");
    if venv.exists() {
        return venv;
    }
    let on_path = Command::new("ansible-playbook")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "ansible-playbook is not installed: python3 -m venv deploy/ansible/.venv && \
         deploy/ansible/.venv/bin/pip install ansible-core (scripts/test does)"
    );
    PathBuf::from("ansible-playbook")
}

#[test]
fn the_playbooks_pass_ansible_syntax_check() {
    let program = ansible_playbook();
    for playbook in ["init.yml", "site.yml", "upgrade.yml"] {
        run_ok(
            Command::new(&program)
                .current_dir(deploy_dir().join("ansible"))
                .args(["--syntax-check", "-i", "inventory.example.yml", playbook]),
        );
    }
}

/// The control machine's part of the playbooks, run for real on the example inventory: the
/// topology it renders has both sites, pools and all six nodes, `roster start --check-config`
/// accepts every node's configuration, and a second run changes nothing.
#[test]
fn the_init_playbook_renders_the_inventory_into_configs_that_check() {
    let program = ansible_playbook();
    let dir = TempDir::new("ansible-init");
    Users {
        count: 3,
        password: "secret".into(),
    }
    .write(dir.path());
    let build = dir.path().join("build");
    let run = || {
        run_ok(
            Command::new(&program)
                .current_dir(deploy_dir().join("ansible"))
                .args(["-i", "inventory.example.yml", "init.yml", "-e"])
                .arg(format!("roster_build_dir={}", build.display()))
                .arg("-e")
                .arg(format!("roster_binary={}", roster_bin().display()))
                .arg("-e")
                .arg(format!(
                    "roster_users_file={}",
                    dir.path().join("users.toml").display()
                )),
        )
    };
    let first = run();
    assert!(first.contains("failed=0"), "{first}");
    let topology = std::fs::read_to_string(build.join("topology.toml")).expect("topology");
    let topology: toml::Value = toml::from_str(&topology).expect("topology TOML");
    let count = |key: &str| topology[key].as_array().map_or(0, Vec::len);
    assert_eq!(
        (count("site"), count("pool"), count("pair"), count("node")),
        (2, 2, 1, 6),
        "{topology:#?}"
    );
    for id in 1..=6 {
        let config = build.join(format!("pool/node-{id}/roster.toml"));
        let checked = run_ok(
            Command::new(roster_bin())
                .args(["start", "--check-config", "--config"])
                .arg(&config),
        );
        assert!(checked.contains("the node can start"), "{checked}");
    }
    let again = run();
    assert!(
        again.contains("changed=0"),
        "a second run changed something: {again}"
    );
}
